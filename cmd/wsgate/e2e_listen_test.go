package main

// Listener addresses, TLS pairs and --ready-file through the built binary:
// what a start refuses (exit 2, one line naming the flag), --check refuses
// too (exit 1, the same line after "check failed: "), and what a start
// binds it reports.

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// refusedAlike runs args as a start and with --check, and wants the start
// to exit 2 with one stderr line, --check to exit 1 with that line after
// "check failed: ", and both lines to contain every one of mention.
func refusedAlike(t *testing.T, args []string, mention ...string) {
	t.Helper()
	code, stdout, stderr := runGate(t, args...)
	line, ok := strings.CutPrefix(strings.TrimSuffix(stderr, "\n"), "wsgate: ")
	if code != 2 || !ok || strings.Count(stderr, "\n") != 1 || stdout != "" {
		t.Errorf("wsgate %s: exit %d, stdout %q, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, stdout, stderr)
		return
	}
	for _, m := range mention {
		if !strings.Contains(line, m) {
			t.Errorf("wsgate %s: %q does not name %s", strings.Join(args, " "), line, m)
		}
	}
	code, stdout, stderr = runGate(t, append([]string{"--check"}, args...)...)
	if code != 1 || !strings.Contains(stderr, "wsgate: check failed: "+line+"\n") {
		t.Errorf("wsgate --check %s: exit %d, stderr %q; want exit 1 and \"check failed: %s\"\nstdout: %s", strings.Join(args, " "), code, stderr, line, stdout)
	}
}

// Bad listener addresses, for each of --listen, --tls-listen and --admin.
func TestListenAddrErrors(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	crt, key := ca.issue(t, dir, "a", 1, "a.test")
	for _, flag := range []string{"listen", "tls-listen", "admin"} {
		for _, v := range []string{"127.0.0.1:notaport", "999.0.0.1:80", "127.0.0.1:65536", "bogus", "[::1", "::1:80", "-x.example:80"} {
			t.Run(flag+"="+v, func(t *testing.T) {
				t.Parallel()
				args := []string{"-b", "127.0.0.1:1", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0",
					"--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key}
				for i := range args { // the flag under test gets the bad value instead
					if args[i] == "--"+flag || flag == "listen" && args[i] == "-l" {
						args[i+1] = v
					}
				}
				refusedAlike(t, args, `"--`+flag+`"`, v)
			})
		}
	}
	t.Run("ready-file in a missing directory", func(t *testing.T) {
		t.Parallel()
		missing := filepath.Join(t.TempDir(), "no", "ready")
		refusedAlike(t, []string{"-b", "127.0.0.1:1", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--ready-file", missing}, `"--ready-file"`)
	})
	t.Run("ready-file a directory", func(t *testing.T) {
		t.Parallel()
		refusedAlike(t, []string{"-b", "127.0.0.1:1", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--ready-file", t.TempDir()}, `"--ready-file"`)
	})
}

// Two listeners of one process on one address are refused: a start exits 2
// naming the later flag and both addresses, and --check says the same.
func TestListenOverlapsRefused(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	crt, key := ca.issue(t, dir, "a", 1, "a.test")
	// A port nothing listens on and no one else can take, should a start
	// get as far as binding it.
	_, p, _ := net.SplitHostPort(reserveAddr(t))
	tlsPair := []string{"--tls-cert", crt, "--tls-key", key}
	for _, c := range []struct {
		name string
		args []string
		flag string // the flag named
	}{
		{"listen and admin, one address (the CI flake)", []string{"-l", "127.0.0.1:" + p, "--admin", "127.0.0.1:" + p}, "admin"},
		{"--listen twice", []string{"-l", "127.0.0.1:" + p, "-l", "127.0.0.1:" + p, "--admin", "off"}, "listen"},
		{"wildcard listen covers admin", []string{"-l", ":" + p, "--admin", "127.0.0.1:" + p}, "admin"},
		{"0.0.0.0 covers tls-listen", append([]string{"-l", "0.0.0.0:" + p, "--tls-listen", "127.0.0.1:" + p, "--admin", "off"}, tlsPair...), "tls-listen"},
		{"[::] covers a later --listen", []string{"-l", "[::]:" + p, "-l", "127.0.0.1:" + p, "--admin", "off"}, "listen"},
		{"admin wildcard covers tls-listen", append([]string{"-l", "127.0.0.1:0", "--tls-listen", "127.0.0.1:" + p, "--admin", "0.0.0.0:" + p}, tlsPair...), "admin"},
		{"the default --listen :8080", []string{"--admin", "127.0.0.1:8080"}, "admin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			refusedAlike(t, append([]string{"-b", "127.0.0.1:1"}, c.args...), `"--`+c.flag+`"`, "refused")
		})
	}
}

// TLS pairs that do not load are refused by a start and by --check alike,
// naming the file at fault; a good pair passes --check.
func TestTLSPairsCheckedLikeAStart(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	ac, ak := ca.issue(t, dir, "a", 1, "a.test")
	bc, bk := ca.issue(t, dir, "b", 2, "b.test")
	random := filepath.Join(dir, "random")
	os.WriteFile(random, []byte("\x8f\x03 not PEM at all \x00\xff\x17"+strings.Repeat("\xa5", 200)), 0o600)
	base := []string{"-b", "127.0.0.1:1", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"}
	for _, c := range []struct {
		name      string
		cert, key string
		mention   []string
	}{
		{"swapped", ak, ac, []string{`"--tls-cert"`, ak, "swapped"}},
		{"key of another certificate", ac, bk, []string{`"--tls-key"`, bk, "does not match"}},
		{"key file of random bytes", ac, random, []string{`"--tls-key"`, random}},
		{"certificate file of random bytes", random, ak, []string{`"--tls-cert"`, random}},
		{"certificate as the key", ac, bc, []string{`"--tls-key"`, bc}},
		{"second pair bad", bc, ak, []string{`"--tls-key"`, ak, "does not match"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{}, base...), "--tls-cert", ac, "--tls-key", ak)
			if c.name == "second pair bad" {
				args = append(args, "--tls-cert", c.cert, "--tls-key", c.key)
			} else {
				args = append(append([]string{}, base...), "--tls-cert", c.cert, "--tls-key", c.key)
			}
			refusedAlike(t, args, c.mention...)
		})
	}
	t.Run("--tls-listen bogus", func(t *testing.T) {
		t.Parallel()
		refusedAlike(t, []string{"-b", "127.0.0.1:1", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--tls-listen", "bogus", "--tls-cert", ac, "--tls-key", ak}, `"--tls-listen"`, "bogus")
	})
	t.Run("good pair", func(t *testing.T) {
		be := startBackend(t, "a", 0, nil) // answers 200 on /health
		code, out, errOut := runGate(t, "--check", "-b", be.addr, "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--tls-listen", "127.0.0.1:0", "--tls-cert", ac, "--tls-key", ak, "--tls-cert", bc, "--tls-key", bk)
		if code != 0 || !strings.Contains(out, "tls-pair          "+bc+" "+bk) {
			t.Errorf("--check with good pairs: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
}

// TestReadyFile: with port 0 everywhere, --ready-file lists every listener
// with the port the kernel chose (listen, tls, admin; atomically written, no
// temporary file left), each accepts, and stderr names the same addresses.
func TestReadyFile(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	crt, key := ca.issue(t, dir, "a", 1, "a.test")
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "-l", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key)
	b, err := os.ReadFile(g.ready)
	if err != nil {
		t.Fatal(err)
	}
	lineRE := regexp.MustCompile(`^(listen|tls|admin) 127\.0\.0\.1:[1-9][0-9]*$`)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var kinds []string
	seen := map[string]bool{}
	for _, l := range lines {
		if !lineRE.MatchString(l) {
			t.Errorf("ready-file line %q", l)
			continue
		}
		kind, addr, _ := strings.Cut(l, " ")
		kinds = append(kinds, kind)
		if seen[addr] {
			t.Errorf("address %s listed twice", addr)
		}
		seen[addr] = true
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Errorf("%s: %v", l, err)
			continue
		}
		c.Close()
	}
	if got := strings.Join(kinds, " "); got != "listen listen tls admin" {
		t.Errorf("ready-file lists %q, want listen listen tls admin:\n%s", got, b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(g.ready)); len(ents) != 1 {
		t.Errorf("the ready file's directory holds %d entries, want just the file (no temporary left)", len(ents))
	}
	log := g.stderr.String()
	for _, a := range g.listens {
		if !strings.Contains(log, "listening on "+a+"\n") {
			t.Errorf("stderr does not say \"listening on %s\"", a)
		}
	}
	if !strings.Contains(log, "listening on "+g.tlsAddrs[0]+" (TLS)") || !strings.Contains(log, "admin on http://"+g.admin+"/") {
		t.Errorf("stderr does not name the TLS and admin addresses %s, %s", g.tlsAddrs[0], g.admin)
	}
	if resp, body := httpGet(t, "http://"+g.listens[1]+"/"); resp.StatusCode != 200 || !strings.Contains(body, "ok from a") {
		t.Errorf("through the second listener: %s %q", resp.Status, body)
	}
}

// With the derived sticky key and a mode that issues node tokens, a start
// logs one line naming --sticky-secret; with a secret, or --sticky ip or
// none, it does not.
func TestStickyDerivedKeyLogged(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	for _, c := range []struct {
		args []string
		note bool
	}{
		{nil, true},
		{[]string{"--sticky", "cookie"}, true},
		{[]string{"--sticky-secret", "0123456789abcdef0123"}, false},
		{[]string{"--sticky", "ip"}, false},
		{[]string{"--sticky", "none"}, false},
	} {
		g := startGate(t, append([]string{"-b", be.addr}, c.args...)...)
		log := g.stderr.String()
		g.stop()
		if n := strings.Count(log, "--sticky-secret"); n != map[bool]int{true: 1, false: 0}[c.note] {
			t.Errorf("%q: %d log lines name --sticky-secret, want the note: %v\n%s", c.args, n, c.note, log)
		}
	}
}
