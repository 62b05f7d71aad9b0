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
		mention string // what the one stderr line must name
	}{
		{"connect-timeout not a duration", []string{"-b", good, "--connect-timeout", "abc"}, "connect-timeout"},
		{"connect-timeout negative", []string{"-b", good, "--connect-timeout", "-1s"}, "connect-timeout"},
		{"connect-timeout zero", []string{"-b", good, "--connect-timeout", "0s"}, "connect-timeout"},
		{"header-timeout without unit", []string{"-b", good, "--header-timeout", "10"}, "header-timeout"},
		{"drain-timeout missing value", []string{"-b", good, "--drain-timeout"}, "drain-timeout"},
		{"max-body-bytes unknown unit", []string{"-b", good, "--max-body-bytes", "12XB"}, "max-body-bytes"},
		{"max-body-bytes negative", []string{"-b", good, "--max-body-bytes", "-1"}, "max-body-bytes"},
		{"max-header-bytes too small", []string{"-b", good, "--max-header-bytes", "100"}, "max-header-bytes"},
		{"backend without port", []string{"-b", "127.0.0.1"}, "backend"},
		{"backend port out of range", []string{"-b", "127.0.0.1:70000"}, "backend"},
		{"backend weight zero", []string{"-b", "127.0.0.1:1,weight=0"}, "backend"},
		{"backend unknown option", []string{"-b", "127.0.0.1:1,speed=3"}, "backend"},
		{"no backend", nil, "backend"},
		{"unknown balance policy", []string{"-b", good, "--balance", "fastest"}, "balance"},
		{"route without prefix or pool", []string{"-b", good, "--route", "nonsense"}, "route"},
		{"trusted-proxies not a CIDR", []string{"-b", good, "--trusted-proxies", "10.0.0.0/99"}, "trusted-proxies"},
		{"unknown flag", []string{"-b", good, "--frobnicate"}, "frobnicate"},
		{"stray argument", []string{"-b", good, "stray"}, "stray"},
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
			if !strings.Contains(stderr, tc.mention) {
				t.Errorf("wsgate %s: stderr %q does not name %q", strings.Join(args, " "), stderr, tc.mention)
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
