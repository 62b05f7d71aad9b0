package main

// End-to-end tests of the public edge (issue 9) against the built binary:
// file-descriptor exhaustion, --max-conns, TLS (wss, SNI, reload,
// redirect), PROXY protocol, rate limits and origins.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// openFiles is the number of files a process has open with a number
// below lim (RLIMIT_NOFILE bounds the numbers a new file may get, so an
// inherited descriptor numbered above it takes no room); lim 0: all.
func openFiles(t *testing.T, pid, lim int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && (lim == 0 || fd < lim) {
			n++
		}
	}
	return n
}

// cpuTime is a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// plainGet sends one GET on a new connection and returns the status, or 0
// when no answer came within d.
func plainGet(addr, path string, d time.Duration) (int, error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Running out of files (a child wsgate whose RLIMIT_NOFILE the test lowers
// to what it has open plus a few): tunnels fill it; then requests get 503
// (dial failed) or wait in the accept queue (netpoll backs off), the
// process does not spin, and once the tunnels close it serves again.
func TestEMFILEBacksOffAndRecovers(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--health-path", "")
	headroom := 9
	lim := uint64(openFiles(t, g.pid(), 1024) + headroom)
	if err := unix.Prlimit(g.pid(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim, Max: lim}, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	t.Logf("wsgate open-file limit lowered to %d (%d open)", lim, openFiles(t, g.pid(), int(lim)))

	var tunnels []*websocket.Conn
	defer func() {
		for _, c := range tunnels {
			c.Close()
		}
	}()
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	var failure error
	for range headroom {
		c, resp, err := d.Dial("ws://"+g.addr+"/ws", nil)
		if err != nil {
			failure = err
			if resp != nil {
				failure = fmt.Errorf("%v (HTTP %d)", err, resp.StatusCode)
			}
			break
		}
		tunnels = append(tunnels, c)
	}
	if failure == nil {
		t.Fatalf("%d tunnels opened within %d spare files", len(tunnels), headroom)
	}
	t.Logf("%d tunnels open; the next failed: %v", len(tunnels), failure)

	// Idle connections take the files left but one: the next request is
	// accepted into the last one, its dial fails with EMFILE, and it gets 503.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// fill brings wsgate to exactly free files left: idle connections take
	// files, closing one (or a tunnel, two files each since the client
	// socket is handed over without a duplicate) gives them back. Each step
	// waits for wsgate's count to move, so that a slow accept on a loaded
	// machine is not taken for none (which overshot: every file taken, and
	// no request found the one file its 503 needs).
	fill := func(free int) {
		t.Helper()
		time.Sleep(200 * time.Millisecond) // closes in progress settle
		for deadline := time.Now().Add(10 * time.Second); ; {
			n := openFiles(t, g.pid(), int(lim))
			if n == int(lim)-free {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d files open of %d, want %d free, after %d idle connections", n, lim, free, len(idle))
			}
			switch {
			case n < int(lim)-free:
				c, err := net.Dial("tcp", g.addr)
				if err != nil {
					t.Fatal(err)
				}
				idle = append(idle, c)
			case len(idle) > 0:
				idle[len(idle)-1].Close()
				idle = idle[:len(idle)-1]
			case len(tunnels) > 0:
				tunnels[len(tunnels)-1].Close()
				tunnels = tunnels[:len(tunnels)-1]
			default:
				t.Fatalf("%d files open of %d with nothing of the test's left to close", n, lim)
			}
			for end := time.Now().Add(5 * time.Second); openFiles(t, g.pid(), int(lim)) == n && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond) // until wsgate has accepted or closed it
			}
		}
	}
	fill(1)
	got503 := 0
	for i := range 3 {
		st, err := plainGet(g.addr, "/", 2*time.Second)
		switch {
		case st == 503:
			got503++
		case st != 0 || isTimeoutErr(err):
			t.Fatalf("request %d with one file left: %d %v, want 503 or closed at once", i+1, st, err)
		}
	}
	if got503 == 0 {
		t.Fatal("no request got 503 with one file left for it")
	}

	// No file left: new connections are accepted into the spare file and
	// closed at once (not left waiting in the queue); nothing spins.
	fill(0)
	cpu0, wall0 := cpuTime(t, g.pid()), time.Now()
	for i := range 10 {
		st, err := plainGet(g.addr, "/", 2*time.Second)
		if st != 0 || isTimeoutErr(err) {
			t.Fatalf("connection %d with no file left: %d %v, want closed at once", i+1, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cpu, wall := cpuTime(t, g.pid())-cpu0, time.Since(wall0)
	t.Logf("out of files, 10 connections refused: wsgate used %v CPU in %v", cpu, wall.Round(time.Millisecond))
	if cpu > wall/4 {
		t.Errorf("wsgate used %v of CPU in %v out of files: it spins", cpu, wall)
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil

	for _, c := range tunnels {
		c.Close()
	}
	tunnels = nil
	g.waitMetricEq(t, mTunnelsOpen, 0, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := plainGet(g.addr, "/", 2*time.Second)
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving again after the tunnels closed: %d %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, err := dialWS(g.addr, "/ws")
	if err != nil {
		t.Fatalf("a tunnel after recovery: %v", err)
	}
	c.Close()
	if m := g.metric(t, `wsgate_upstream_errors_total{kind="connect_error"}`); m < float64(got503) {
		t.Errorf("connect errors counted: %v, want at least the %d answered 503", m, got503)
	}
	if m := g.metric(t, `wsgate_connections_refused_total{reason="out_of_files"}`); m < 10 {
		t.Errorf("connections refused out of files: %v, want at least 10", m)
	}
}

// ---------------------------------------------------------------------------
// TLS

// testCA is a throwaway ECDSA CA that signs leaf certificates for tests;
// nothing here is used for anything real.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wsgate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a leaf certificate for names (and 127.0.0.1) with serial to
// dir/name.crt and dir/name.key and returns the two paths.
func (ca *testCA) issue(t *testing.T, dir, file string, serial int64, names ...string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, file+".crt"), filepath.Join(dir, file+".key")
	// Written next to each other and renamed into place, as a certificate
	// manager does, so a reload never sees half a file.
	for _, f := range []struct {
		path string
		pem  []byte
	}{
		{certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})},
	} {
		if err := os.WriteFile(f.path+".tmp", f.pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".tmp", f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath
}

// tlsGate is a wsgate with a TLS listener in front of a backend whose
// /hdr answers with the forwarding headers it got.
type tlsGate struct {
	*gate
	tlsAddr string
	ca      *testCA
	dir     string
	be      *testBackend
}

func startTLSGate(t *testing.T, extra ...string) *tlsGate {
	t.Helper()
	ca, dir := newTestCA(t), t.TempDir()
	ac, ak := ca.issue(t, dir, "a", 100, "a.test", "edge.test")
	bc, bk := ca.issue(t, dir, "b", 200, "b.test", "*.b.test")
	be := startBackend(t, "a", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/hdr", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "proto=%s for=%s", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"))
		})
	})
	args := append([]string{"-b", be.addr, "--tls-listen", "127.0.0.1:0", "--tls-cert", ac, "--tls-key", ak, "--tls-cert", bc, "--tls-key", bk}, extra...)
	g := startGate(t, args...)
	if len(g.tlsAddrs) != 1 {
		t.Fatalf("--ready-file lists TLS listeners %q, want one", g.tlsAddrs)
	}
	return &tlsGate{gate: g, tlsAddr: g.tlsAddrs[0], ca: ca, dir: dir, be: be}
}

func (g *tlsGate) tlsConfig(sni string, version uint16) *tls.Config {
	return &tls.Config{ServerName: sni, RootCAs: g.ca.pool, MinVersion: version, MaxVersion: version, NextProtos: []string{"http/1.1"}}
}

// httpsGet does one GET over a new TLS connection and returns the body
// and the connection state.
func (g *tlsGate) httpsGet(t *testing.T, sni string, version uint16, path string) (string, tls.ConnectionState) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.tlsAddr, g.tlsConfig(sni, version))
	if err != nil {
		t.Fatalf("TLS handshake (SNI %q): %v", sni, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s over TLS: %d %s", path, resp.StatusCode, body)
	}
	return string(body), c.ConnectionState()
}

func TestTLSTerminationAndSNI(t *testing.T) {
	g := startTLSGate(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		body, st := g.httpsGet(t, "a.test", v, "/hdr")
		if body != "proto=https for=127.0.0.1" {
			t.Errorf("TLS %x: backend got %q", v, body)
		}
		if st.NegotiatedProtocol != "http/1.1" || st.Version != v {
			t.Errorf("ALPN %q version %x, want http/1.1 %x", st.NegotiatedProtocol, st.Version, v)
		}
	}
	for sni, serial := range map[string]int64{"a.test": 100, "b.test": 200, "x.b.test": 200, "edge.test": 100} {
		_, st := g.httpsGet(t, sni, tls.VersionTLS13, "/")
		if got := st.PeerCertificates[0].SerialNumber.Int64(); got != serial {
			t.Errorf("SNI %s: certificate %d, want %d", sni, got, serial)
		}
	}
	// No SNI (an IP address): the first pair is the default.
	c, err := tls.Dial("tcp", g.tlsAddr, &tls.Config{RootCAs: g.ca.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 100 {
		t.Errorf("no SNI: certificate %d, want the first (100)", got)
	}
	c.Close()
	// Plain HTTP on the TLS port is a failed handshake, not a crash.
	if st, _ := plainGet(g.tlsAddr, "/", 2*time.Second); st != 0 {
		t.Errorf("plain HTTP on the TLS port got %d", st)
	}
	if _, st := g.httpsGet(t, "a.test", tls.VersionTLS13, "/hdr"); st.Version == 0 {
		t.Fatal("no longer serving")
	}
}

func TestWSSEcho(t *testing.T) {
	g := startTLSGate(t)
	d := websocket.Dialer{TLSClientConfig: g.tlsConfig("a.test", 0), HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+g.tlsAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if name, err := readHello(c); err != nil || name != "a" {
		t.Fatalf("hello: %q %v", name, err)
	}
	big := strings.Repeat("x", 200<<10) // spans many TLS records
	for _, m := range []string{"one", big, "three"} {
		c.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != m {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(m), len(got), err)
		}
	}
	g.waitMetricEq(t, mTunnelsOpen, 1, 5*time.Second)
	c.Close()
	g.waitMetricEq(t, mTunnelsOpen, 0, 10*time.Second)
}

// SIGHUP re-reads the certificates: new handshakes get the new one, and a
// wss tunnel opened before keeps working.
func TestTLSCertificateReload(t *testing.T) {
	g := startTLSGate(t)
	d := websocket.Dialer{TLSClientConfig: g.tlsConfig("a.test", 0), HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+g.tlsAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readHello(c)

	g.ca.issue(t, g.dir, "a", 101, "a.test", "edge.test")
	g.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, st := g.httpsGet(t, "a.test", tls.VersionTLS13, "/")
		if st.PeerCertificates[0].SerialNumber.Int64() == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new certificate is not served after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "still here" {
		t.Fatalf("tunnel across the reload: %q %v", m, err)
	}
	// A broken file is refused as a whole; the running set stays.
	os.WriteFile(filepath.Join(g.dir, "b.crt"), []byte("not a certificate"), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitMetric(t, `wsgate_tls_reloads_total{result="error"}`, ">= 1", 10*time.Second, func(v float64) bool { return v >= 1 })
	if _, st := g.httpsGet(t, "b.test", tls.VersionTLS13, "/"); st.PeerCertificates[0].SerialNumber.Int64() != 200 {
		t.Fatal("b.test's certificate changed after a failed reload")
	}
}

func TestRedirectHTTPSToTLSPort(t *testing.T) {
	g := startTLSGate(t, "--redirect-https")
	_, port, _ := net.SplitHostPort(g.tlsAddr)
	for _, req := range []string{
		"GET /x?y=1 HTTP/1.1\r\nHost: edge.test:8080\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: edge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	} {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		path := strings.Fields(req)[1]
		if want := "https://edge.test:" + port + path; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
			t.Errorf("%d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	// Over TLS: served, not redirected.
	if body, _ := g.httpsGet(t, "edge.test", tls.VersionTLS13, "/hdr"); !strings.HasPrefix(body, "proto=https") {
		t.Errorf("over TLS: %q", body)
	}
}

// Bad edge flags: one line naming the flag, exit status 2.
func TestEdgeFlagErrors(t *testing.T) {
	base := []string{"-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "-b", "127.0.0.1:1"}
	cases := []struct {
		args    []string
		mention []string
	}{
		{[]string{"--max-conns", "-1"}, []string{"max-conns", "-1"}},
		{[]string{"--max-conns-per-ip", "x"}, []string{"max-conns-per-ip", "x"}},
		{[]string{"--rate-limit", "/login=fast"}, []string{"rate-limit", "/login=fast"}},
		{[]string{"--rate-limit", "/login=5/s,burst=0"}, []string{"rate-limit", "burst"}},
		{[]string{"--allowed-origin", "/app=evil"}, []string{"allowed-origin", "/app=evil"}},
		{[]string{"--tls-listen", "127.0.0.1:0"}, []string{"tls-listen"}},
		{[]string{"--tls-listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"}, []string{"tls-cert", "/nonexistent.crt"}},
		{[]string{"--tls-listen", "127.0.0.1:0", "--tls-cert", "/a.crt"}, []string{"tls-key"}},
	}
	for _, c := range cases {
		code, _, stderr := runGate(t, append(base, c.args...)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", c.args, code, stderr)
			continue
		}
		for _, m := range c.mention {
			if !strings.Contains(lines[0], m) {
				t.Errorf("%q: %q does not mention %q", c.args, lines[0], m)
			}
		}
	}
}

// The flags reach the proxy: PROXY protocol, rate limit and origin on the
// built binary (the behaviours themselves are tested in loop/edge_*_test.go).
func TestEdgeFlagsEndToEnd(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--health-path", "", "--proxy-protocol", "--rate-limit", "/login=1/m",
		"--allowed-origin", "/ws=https://app.example", "--max-conns-per-ip", "5")
	send := func(ip, req string) int {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "PROXY TCP4 "+ip+" 10.0.0.1 1000 80\r\n"+req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		return resp.StatusCode
	}
	get := "GET /login HTTP/1.1\r\nHost: a\r\n\r\n"
	if st := send("192.0.2.1", get); st != 200 {
		t.Fatalf("first login: %d", st)
	}
	if st := send("192.0.2.1", get); st != 429 {
		t.Fatalf("second login: %d, want 429", st)
	}
	if st := send("192.0.2.2", get); st != 200 {
		t.Fatalf("another client's login: %d", st)
	}
	ws := "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: %s\r\n\r\n"
	if st := send("192.0.2.3", fmt.Sprintf(ws, "https://evil.example")); st != 403 {
		t.Fatalf("cross-site handshake: %d, want 403", st)
	}
	if st := send("192.0.2.3", fmt.Sprintf(ws, "https://app.example")); st != 101 {
		t.Fatalf("allowed handshake: %d, want 101", st)
	}
	if st, _ := plainGet(g.addr, "/", 2*time.Second); st != 0 {
		t.Fatalf("a connection without a PROXY header was answered %d", st)
	}
}

// TestMeasureWSS reports, for wss beside ws through the same wsgate,
// user-space memory and open files per idle tunnel and handshakes per
// second (20 clients in parallel, each handshake on a new connection, TLS
// 1.3 with ECDSA P-256, no session resumption). A measurement, run by
// `make bench` (WSGATE_MEASURE=1); WSGATE_TUNNELS sets the count (default
// 2,000). It asserts only the file count: 2 per ws tunnel, 4 per wss
// tunnel (the TLS socket and the inner pair).
func TestMeasureWSS(t *testing.T) {
	if os.Getenv("WSGATE_MEASURE") == "" {
		t.Skip("measurement: run with WSGATE_MEASURE=1 (make bench)")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("WSGATE_TUNNELS")); err == nil && v > 0 {
		n = v
	}
	g := startTLSGate(t)
	plain := websocket.Dialer{HandshakeTimeout: 15 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	secure := plain
	secure.TLSClientConfig = g.tlsConfig("a.test", 0)
	secure.TLSClientConfig.ClientSessionCache = nil
	kinds := []struct {
		name, url string
		d         *websocket.Dialer
		fds       int
	}{
		{"ws", "ws://" + g.addr + "/ws", &plain, 2},
		{"wss", "wss://" + g.tlsAddr + "/ws", &secure, 4},
	}
	for _, k := range kinds {
		// Handshakes per second.
		var done atomic.Int64
		stop := time.Now().Add(3 * time.Second)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					c, _, err := k.d.Dial(k.url, nil)
					if err != nil {
						t.Errorf("%s handshake: %v", k.name, err)
						return
					}
					c.Close()
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		rate := float64(done.Load()) / 3
		g.waitMetricEq(t, mTunnelsOpen, 0, 30*time.Second)

		// Memory and files per idle tunnel.
		time.Sleep(11 * time.Second) // handshake state of the burst released, memory trimmed
		anon0, fd0 := statusKiB(t, g.pid(), "RssAnon:"), countFds(t, g.pid())
		conns := make([]*websocket.Conn, 0, n)
		for len(conns) < n {
			c, _, err := k.d.Dial(k.url, nil)
			if err != nil {
				t.Fatalf("%s tunnel %d: %v", k.name, len(conns)+1, err)
			}
			conns = append(conns, c)
		}
		g.waitMetricEq(t, mTunnelsOpen, float64(n), 30*time.Second)
		time.Sleep(15 * time.Second)
		anon1, fd1 := statusKiB(t, g.pid(), "RssAnon:"), countFds(t, g.pid())
		per := float64(anon1-anon0) * 1024 / float64(n)
		fdsPer := float64(fd1-fd0) / float64(n)
		t.Logf("%s: %.0f handshakes/s; %d idle tunnels: %.0f B anonymous memory and %.2f files per tunnel", k.name, rate, n, per, fdsPer)
		fmt.Printf("edge-measure kind=%s handshakes_per_s=%.0f anon_per_tunnel_bytes=%.0f fds_per_tunnel=%.2f\n", k.name, rate, per, fdsPer)
		if fd1-fd0 != k.fds*n {
			t.Errorf("%s: %d files for %d tunnels, want %d each", k.name, fd1-fd0, n, k.fds)
		}
		for _, c := range conns {
			c.Close()
		}
		g.waitMetricEq(t, mTunnelsOpen, 0, 30*time.Second)
	}
}

// TestSlowHTTPClients runs slowhttptest (Debian's slowhttptest, bounded to
// a few seconds a mode, 400 connections each) against wsgate: slow headers
// (slowloris), slow bodies (R-U-Dead-Yet) and slow reads. Its own report
// must show the service available throughout, a probe of the test's own
// (a GET on a new connection every 100 ms) must be answered every time,
// --header-timeout must cut the slowloris connections, and wsgate's memory
// must stay bounded. Skipped when slowhttptest is not installed
// (.ci/run installs it).
func TestSlowHTTPClients(t *testing.T) {
	bin, err := exec.LookPath("slowhttptest")
	if err != nil {
		t.Skip("slowhttptest not installed (apt-get install slowhttptest)")
	}
	if testing.Short() {
		t.Skip("about 25 s")
	}
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--health-path", "", "--header-timeout", "3s", "--response-timeout", "5s")
	rss0, _ := rssKiB(g.pid())
	dir := t.TempDir()
	for _, m := range []struct {
		mode string
		args []string
	}{
		{"H", nil}, // slow headers
		{"B", nil}, // slow body
		{"X", []string{"-k", "2", "-n", "5", "-w", "10", "-y", "20", "-z", "32"}}, // slow read, small window
	} {
		t.Run(m.mode, func(t *testing.T) {
			stop := make(chan struct{})
			probeErr := make(chan error, 1)
			probes := 0
			go func() {
				defer close(probeErr)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					st, err := plainGet(g.addr, "/", 3*time.Second)
					if st != 200 {
						probeErr <- fmt.Errorf("probe %d: status %d, %v", probes+1, st, err)
						return
					}
					probes++
				}
			}()
			prefix := filepath.Join(dir, "slow"+m.mode)
			args := append([]string{"-" + m.mode, "-c", "400", "-r", "200", "-i", "1", "-l", "7", "-p", "2", "-g", "-o", prefix,
				"-u", "http://" + g.addr + "/"}, m.args...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			close(stop)
			if perr := <-probeErr; perr != nil {
				t.Error(perr)
			}
			if err != nil {
				t.Fatalf("slowhttptest: %v\n%s", err, out)
			}
			csv, err := os.ReadFile(prefix + ".csv")
			if err != nil {
				t.Fatal(err)
			}
			rows := strings.Split(strings.TrimSpace(string(csv)), "\n")
			maxConnected, closed := 0, 0
			for _, row := range rows[1:] { // Seconds,Closed,Pending,Connected,Service Available
				f := strings.Split(row, ",")
				if len(f) != 5 {
					t.Fatalf("report row %q", row)
				}
				if avail, _ := strconv.Atoi(f[4]); avail == 0 {
					t.Errorf("slowhttptest found the service unavailable at second %s", f[0])
				}
				c, _ := strconv.Atoi(f[3])
				maxConnected = max(maxConnected, c)
				closed, _ = strconv.Atoi(f[1])
			}
			rss, _ := rssKiB(g.pid())
			t.Logf("slowhttptest -%s: %d seconds, up to %d slow connections held, %d closed by wsgate; %d probes answered; wsgate RSS %d KiB (%d before)",
				m.mode, len(rows)-1, maxConnected, closed, probes, rss, rss0)
			if m.mode == "H" && closed == 0 {
				t.Error("no slowloris connection was closed by --header-timeout 3s")
			}
			if rss-rss0 > 64<<10 {
				t.Errorf("wsgate grew by %d KiB under %d slow connections", rss-rss0, maxConnected)
			}
		})
	}
}
