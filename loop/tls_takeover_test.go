package loop_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// tlsCertFiles writes a self-signed certificate for 127.0.0.1.
func tlsCertFiles(t testing.TB) loop.CertFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.test"},
		DNSNames: []string{"a.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	f := loop.CertFiles{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}
	os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return f
}

// startTLSProxy is startProxy with a TLS listener; it returns its address.
func startTLSProxy(t testing.TB, backends []string) (*proxy, string) {
	t.Helper()
	cert := tlsCertFiles(t)
	p := startProxy(t, backends, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.TLS = loop.TLSConfig{Listen: []string{"127.0.0.1:0"}, Certs: []loop.CertFiles{cert}}
	})
	return p, p.srv.TLSAddrs()[0].String()
}

func metricValue(t testing.TB, p *proxy, name string) string {
	t.Helper()
	var b bytes.Buffer
	p.srv.Metrics().WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func dialTLS(t testing.TB, addr string, version uint16) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A wss tunnel through the TLS front: frames pipelined right behind the
// upgrade request and a backend frame right behind its 101 both arrive,
// and (TLS 1.3) the tunnel is the engine's own, taken over from the front.
func TestWSSTakeover(t *testing.T) {
	// A backend that sends its first frame in the same write as the 101,
	// then echoes the client's (masked) text frames unmasked.
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(testKey) + "\r\n\r\n\x81\x05first"))
		for {
			var h [6]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			p := make([]byte, h[1]&0x7f)
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			for i := range p {
				p[i] ^= h[2+i%4]
			}
			c.Write(append([]byte{0x81, byte(len(p))}, p...))
		}
	})
	p, addr := startTLSProxy(t, []string{be})
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c := dialTLS(t, addr, v)
		req := append([]byte(handshake("a.test", "/ws")), maskedFrame("one")...)
		req = append(req, maskedFrame("two")...)
		c.Write(req) // one record: the frames right behind the upgrade
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		head, err := readHead(br)
		if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
			t.Fatalf("TLS %x: %q %v", v, head, err)
		}
		for _, want := range []string{"first", "one", "two"} {
			if _, got, err := readFrame(br); err != nil || got != want {
				t.Fatalf("TLS %x: frame %q %v, want %q", v, got, err, want)
			}
		}
		for i := range 20 {
			msg := strings.Repeat("x", i*6)
			c.Write(maskedFrame(msg))
			if _, got, err := readFrame(br); err != nil || got != msg {
				t.Fatalf("TLS %x: echo %d: %q %v", v, i, got, err)
			}
		}
	}
	if got := metricValue(t, p, `wsgate_tls_takeovers_total{result="ok"}`); got != "1" {
		t.Errorf("takeovers %q, want 1 (the TLS 1.3 tunnel)", got)
	}
	if got := metricValue(t, p, `wsgate_tls_connections_total{version="1.3",path="engine"}`); got != "1" {
		t.Errorf("TLS 1.3 connections on the engine path: %q, want 1", got)
	}
	if got := metricValue(t, p, `wsgate_tls_connections_total{version="1.2",path="front"}`); got != "1" {
		t.Errorf("TLS 1.2 connections: %q, want 1", got)
	}
}

// A wss tunnel of a gorilla client, messages both ways, large ones included.
func TestWSSGorilla(t *testing.T) {
	p, addr := startTLSProxy(t, []string{wsEchoBackend(t, "a", true)})
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "hello from a" {
		t.Fatalf("%q %v", m, err)
	}
	for _, n := range []int{1, 100, 16 << 10, 100 << 10} {
		msg := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, m, err := c.ReadMessage(); err != nil || !bytes.Equal(m, msg) {
			t.Fatalf("echo of %d bytes: %d %v", n, len(m), err)
		}
	}
	if got := metricValue(t, p, `wsgate_tls_takeovers_total{result="ok"}`); got != "1" {
		t.Errorf("takeovers %q, want 1", got)
	}
}

func countFds(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// N wss tunnels cost 2 fds each in the proxy and no goroutine: with the
// client and the backend in this process, 4 fds per tunnel in all (the
// client's socket, the backend's accepted one, the proxy's two), and one
// goroutine (the backend's handler).
func TestWSSTunnelCost(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const n = 200
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(testKey) + "\r\n\r\n"))
		io.Copy(io.Discard, br)
	})
	p, addr := startTLSProxy(t, []string{be})
	open := func() *tls.Conn {
		c := dialTLS(t, addr, tls.VersionTLS13)
		c.Write([]byte(handshake("a.test", "/ws")))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if head, err := readHead(bufio.NewReader(c)); err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
			t.Fatalf("%q %v", head, err)
		}
		return c
	}
	open().Close() // warm up: engine loops, pools
	eventually(t, "warm-up tunnel gone", func() bool { return p.engine.Len() == 0 })
	time.Sleep(100 * time.Millisecond)
	fds0, g0 := countFds(t), runtime.NumGoroutine()
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = open()
	}
	eventually(t, "tunnels in the engine", func() bool { return p.engine.Len() == n })
	var fds, g int
	eventually(t, "fds and goroutines settle", func() bool {
		fds, g = countFds(t), runtime.NumGoroutine()
		return fds-fds0 <= 4*n+8 && g-g0 <= n+8
	})
	t.Logf("%d tunnels: %+d fds (%.2f per tunnel, 2 of them the client's and the backend's), %+d goroutines",
		n, fds-fds0, float64(fds-fds0)/n, g-g0)
	if got := metricValue(t, p, `wsgate_tls_takeovers_total{result="ok"}`); got != "201" {
		t.Errorf("takeovers %q, want 201", got)
	}
	for _, c := range conns {
		c.Close()
	}
}
