package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runGate runs the binary to completion (at most 10 s) and returns its exit
// status, stdout and stderr. A process still running after 10 s is killed
// and reported as status -1.
func runGate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gateBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, out.String(), errb.String()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("running wsgate %q: %v", args, err)
	return
}

func TestFlagErrors(t *testing.T) {
	// Every case binds nothing public: if a bad value were accepted, the
	// process would listen on these loopback ports (and be killed after 10 s).
	base := []string{"-l", "127.0.0.1:0", "--admin", "127.0.0.1:0"}
	const good = "127.0.0.1:1"
	cases := []struct {
		name    string
		args    []string
		mention []string // what the one stderr line must name: the flag, and the bad value as given
	}{
		{"connect-timeout not a duration", []string{"-b", good, "--connect-timeout", "abc"}, []string{"connect-timeout", "abc"}},
		{"connect-timeout negative", []string{"-b", good, "--connect-timeout", "-1s"}, []string{"connect-timeout", "-1s"}},
		{"connect-timeout zero", []string{"-b", good, "--connect-timeout", "0s"}, []string{"connect-timeout", "0s"}},
		{"header-timeout without unit", []string{"-b", good, "--header-timeout", "10"}, []string{"header-timeout", "10"}},
		{"drain-timeout missing value", []string{"-b", good, "--drain-timeout"}, []string{"drain-timeout"}},
		{"max-body-bytes unknown unit", []string{"-b", good, "--max-body-bytes", "12XB"}, []string{"max-body-bytes", "12XB"}},
		{"max-body-bytes negative", []string{"-b", good, "--max-body-bytes", "-1"}, []string{"max-body-bytes", "-1"}},
		{"max-header-bytes too small", []string{"-b", good, "--max-header-bytes", "100"}, []string{"max-header-bytes", "100"}},
		{"max-header-bytes too large", []string{"-b", good, "--max-header-bytes", "2MiB"}, []string{"max-header-bytes", "2MiB"}},
		{"backend without port", []string{"-b", "127.0.0.1"}, []string{"backend", "127.0.0.1"}},
		{"backend port out of range", []string{"-b", "127.0.0.1:70000"}, []string{"backend", "70000"}},
		{"backend weight zero", []string{"-b", "127.0.0.1:1,weight=0"}, []string{"backend", "weight=0"}},
		{"backend unknown option", []string{"-b", "127.0.0.1:1,speed=3"}, []string{"backend", "speed"}},
		{"no backend", nil, []string{"backend"}},
		{"unknown balance policy", []string{"-b", good, "--balance", "fastest"}, []string{"balance", "fastest"}},
		{"route without prefix or pool", []string{"-b", good, "--route", "nonsense"}, []string{"route", "nonsense"}},
		{"trusted-proxies not a CIDR", []string{"-b", good, "--trusted-proxies", "10.0.0.0/99"}, []string{"trusted-proxies", "10.0.0.0/99"}},
		{"unknown flag", []string{"-b", good, "--frobnicate"}, []string{"frobnicate"}},
		{"stray argument", []string{"-b", good, "stray"}, []string{"stray"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{}, base...), tc.args...)
			code, stdout, stderr := runGate(t, args...)
			if code != 2 {
				t.Errorf("wsgate %s: exit status %d, want 2\nstderr: %q", strings.Join(args, " "), code, stderr)
			}
			if !strings.HasSuffix(stderr, "\n") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("wsgate %s: stderr is %q, want exactly one line", strings.Join(args, " "), stderr)
			}
			for _, m := range tc.mention {
				if !strings.Contains(stderr, m) {
					t.Errorf("wsgate %s: stderr %q does not name %s", strings.Join(args, " "), stderr, m)
				}
			}
			if stdout != "" {
				t.Errorf("wsgate %s: stdout is %q, want nothing", strings.Join(args, " "), stdout)
			}
		})
	}

	t.Run("version", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runGate(t, "--version")
		if code != 0 || !strings.HasPrefix(stdout, "wsgate ") || stderr != "" {
			t.Errorf("wsgate --version: status %d, stdout %q, stderr %q; want 0, \"wsgate …\", nothing", code, stdout, stderr)
		}
	})
	for _, h := range []string{"--help", "-h"} {
		t.Run("help"+h, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runGate(t, h)
			if code != 0 {
				t.Errorf("wsgate %s: exit status %d, want 0 (stderr %q)", h, code, stderr)
			}
			for _, f := range []string{"--listen", "--backend", "--connect-timeout", "--tunnel-idle-timeout"} {
				if !strings.Contains(stdout+stderr, f) {
					t.Errorf("wsgate %s does not list %s:\n%s%s", h, f, stdout, stderr)
				}
			}
		})
	}
}
