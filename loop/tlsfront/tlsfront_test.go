package tlsfront

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/wsgate/wsgate/loop/proxyproto"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and "a.test".
func writeCert(t testing.TB) CertFiles {
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
	f := CertFiles{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}
	os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return f
}

// testFront is a Front without the hooks, whose inner listener this test
// serves.
type testFront struct {
	f                              *Front
	inner                          chan net.Conn
	tls12, tls13front, tls13engine *metrics.Counter
	fails                          *metrics.Counter
}

func startFront(t *testing.T) *testFront {
	t.Helper()
	cert := writeCert(t)
	set := metrics.NewSet()
	tf := &testFront{inner: make(chan net.Conn, 16),
		tls12: set.NewCounter("tls12"), tls13front: set.NewCounter("tls13front"), tls13engine: set.NewCounter("tls13engine"),
		fails: set.NewCounter("fails")}
	f, err := Open(Config{
		Listen: []string{"127.0.0.1:0"}, Certs: []CertFiles{cert},
		HeaderTimeout: 5 * time.Second, ResponseTimeout: 5 * time.Second,
		Secret: []byte("0123456789abcdef"), Logf: t.Logf,
		TLS12: tf.tls12, TLS13Front: tf.tls13front, TLS13Engine: tf.tls13engine, TakeoverFails: tf.fails,
	})
	if err != nil {
		t.Fatal(err)
	}
	tf.f = f
	go func() {
		for {
			c, err := f.Inner().Accept()
			if err != nil {
				return
			}
			tf.inner <- c
		}
	}()
	f.Start()
	t.Cleanup(f.Close)
	return tf
}

// accept takes the next inner connection and its PROXY header.
func (tf *testFront) accept(t *testing.T) (*net.UnixConn, *bufio.Reader, proxyproto.Header) {
	t.Helper()
	var c net.Conn
	select {
	case c = <-tf.inner:
	case <-time.After(5 * time.Second):
		t.Fatal("no inner connection")
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr, _ := br.Peek(proxyproto.V2HeaderLen)
	if len(hdr) < proxyproto.V2HeaderLen {
		t.Fatal("no PROXY header")
	}
	full, _ := br.Peek(proxyproto.V2HeaderLen + (int(hdr[14])<<8 | int(hdr[15])))
	h, err := proxyproto.Parse(full)
	if err != nil {
		t.Fatal(err)
	}
	br.Discard(h.N)
	c.SetReadDeadline(time.Time{})
	return c.(*net.UnixConn), br, h
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("read %d: %v (%q)", n, err, p)
	}
	return string(p)
}

// fileConn reads f as a net.Conn (deadlines and all).
func fileConn(t *testing.T, f *os.File) net.Conn {
	t.Helper()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Without the hooks, TLS 1.2 and TLS 1.3 alike are relayed over the inner
// socket by crypto/tls: the PROXY header (TLS, no connection id), a
// request in, a response out, close_notify each way ending each
// direction; none can be taken over.
func TestRelay(t *testing.T) {
	tf := startFront(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tf.f.Addrs()[0].String(),
			&tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		ic, br, h := tf.accept(t)
		ic.SetDeadline(time.Now().Add(5 * time.Second))
		if !h.TLS || h.ConnID != 0 || string(h.Secret) != "0123456789abcdef" {
			t.Fatalf("TLS %x: PROXY header %+v", v, h)
		}
		tc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if got := readN(t, br, 18); got != "GET / HTTP/1.1\r\n\r\n" {
			t.Fatalf("TLS %x: inner got %q", v, got)
		}
		ic.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		if got := readN(t, tc, 19); got != "HTTP/1.1 200 OK\r\n\r\n" {
			t.Fatalf("TLS %x: client got %q", v, got)
		}
		tc.CloseWrite() // close_notify: the inner side reads EOF, and can still answer
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("TLS %x: inner after close_notify: %d %v, want EOF", v, n, err)
		}
		ic.Write([]byte("last"))
		ic.CloseWrite()
		if got, err := io.ReadAll(tc); string(got) != "last" || err != nil {
			t.Fatalf("TLS %x: client read %q, %v; want last and close_notify", v, got, err)
		}
	}
	if tf.tls12.Get() != 1 || tf.tls13front.Get() != 1 || tf.tls13engine.Get() != 0 {
		t.Fatalf("counted TLS 1.2 %d, TLS 1.3 by crypto/tls %d, by tlsrec %d; want 1, 1, 0", tf.tls12.Get(), tf.tls13front.Get(), tf.tls13engine.Get())
	}
}
