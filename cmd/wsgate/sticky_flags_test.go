package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad --sticky values: one line naming the flag, exit status 2.
func TestStickyFlagErrors(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("  0123456789abcdef0123456789  \n"), 0o600)
	emptyFile := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(emptyFile, []byte("\n"), 0o600)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--sticky", "bogus"}, "--sticky"},
		{[]string{"--sticky", ""}, "--sticky"},
		{[]string{"--sticky-secret", "short"}, "--sticky-secret"},
		{[]string{"--sticky-secret", "0123456789abcdef", "--sticky-secret-file", secretFile}, "--sticky-secret-file"},
		{[]string{"--sticky-secret-file", filepath.Join(t.TempDir(), "missing")}, "--sticky-secret-file"},
		{[]string{"--sticky-secret-file", emptyFile}, "--sticky-secret-file"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"-b", "127.0.0.1:1", "--admin", "off"}, tc.args...)
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", tc.args, code, stderr.String())
			continue
		}
		out := stderr.String()
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"`+tc.flag+`"`) {
			t.Errorf("%v: want one line naming %s, got %q", tc.args, tc.flag, out)
		}
	}
	var o stickyOptions
	o.mode, o.secretFile = "cookie", secretFile
	cfg, err := o.config()
	if err != nil || string(cfg.Secret) != "0123456789abcdef0123456789" || cfg.Mode.String() != "cookie" {
		t.Fatalf("config() = %+v, %v", cfg, err)
	}
}
