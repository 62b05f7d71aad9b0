package tlsfront

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
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/loop/proxyproto"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
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

// tcpPair is a connected loopback TCP pair.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func record(typ byte, body string) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// A ClientHello and the records behind it arrive in one segment: Read
// hands out one record at a time, and what follows stays buffered.
func TestRecConnStopsAtRecordEnd(t *testing.T) {
	c, s := tcpPair(t)
	sc, err := newSysConn(s)
	if err != nil {
		t.Fatal(err)
	}
	var kl keyLog
	rc := newRecConn(sc, &kl)
	hello := make([]byte, 4+2+32+10)
	hello[0] = 1 // client_hello
	for i := range 32 {
		hello[6+i] = byte(i + 1)
	}
	in := append(append(record(22, string(hello)), record(23, "abc")...), record(23, "defgh")[:7]...)
	c.Write(in)
	p := make([]byte, 4096)
	n, err := rc.Read(p)
	if err != nil || !bytes.Equal(p[:n], record(22, string(hello))) {
		t.Fatalf("first read: %d %v, want exactly the ClientHello record", n, err)
	}
	if rc.secrets == nil || rc.random[0] != 1 || rc.random[31] != 32 {
		t.Fatalf("client random not registered: %x", rc.random)
	}
	if got := rc.bytes(); !bytes.Equal(got, in[len(hello)+5:]) {
		t.Fatalf("buffered %q", got)
	}
	n, err = rc.Read(p)
	if err != nil || !bytes.Equal(p[:n], record(23, "abc")) {
		t.Fatalf("second read: %q %v", p[:n], err)
	}
	// A partial record: what there is, then the rest once it arrives.
	n, _ = rc.Read(p)
	if !bytes.Equal(p[:n], record(23, "defgh")[:7]) {
		t.Fatalf("third read: %q", p[:n])
	}
	c.Write(append(record(23, "defgh")[7:], record(23, "x")...))
	n, _ = rc.Read(p)
	if !bytes.Equal(p[:n], record(23, "defgh")[7:]) {
		t.Fatalf("fourth read: %q", p[:n])
	}
	rc.forget()
	if _, ok := kl.m.Load(rc.random); ok {
		t.Fatal("key log entry kept after forget")
	}
}

// keyLines captures a client's key log.
type keyLines struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *keyLines) Write(b []byte) (int, error) {
	label, _, secret, err := tlsrec.ParseKeyLogLine(b)
	if err == nil {
		k.mu.Lock()
		if k.m == nil {
			k.m = map[string][]byte{}
		}
		k.m[label] = secret
		k.mu.Unlock()
	}
	return len(b), nil
}

// handshake13 runs a crypto/tls server over a recConn against a crypto/tls
// client and returns the record state the server derives.
func handshake13(t *testing.T, conf *tls.Config, cconf *tls.Config) (client *tls.Conn, rd, wr *tlsrec.Half, rc *recConn, st tls.ConnectionState) {
	t.Helper()
	c, s := tcpPair(t)
	sc, _ := newSysConn(s)
	var kl keyLog
	conf = conf.Clone()
	conf.KeyLogWriter = &kl
	rc = newRecConn(sc, &kl)
	client = tls.Client(c, cconf)
	errc := make(chan error, 1)
	go func() {
		err := client.Handshake()
		if err == nil {
			_, err = client.Write([]byte("hello")) // likely in the Finished's segment
		}
		errc <- err
	}()
	srv := tls.Server(rc, conf)
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	st = srv.ConnectionState()
	var ok bool
	rd, wr, ok = rc.handover13(st)
	if !ok {
		t.Fatal("no record state after a TLS 1.3 handshake")
	}
	if _, found := kl.m.Load(rc.random); found {
		t.Fatal("key log entry kept after the handshake")
	}
	return client, rd, wr, rc, st
}

// readRecord reads one whole record: from buffered bytes first, then s.
func readRecord(t *testing.T, buf *[]byte, s net.Conn) []byte {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if n, ok, err := tlsrec.RecordLen(*buf); err != nil {
			t.Fatal(err)
		} else if ok && len(*buf) >= n {
			r := (*buf)[:n:n]
			*buf = (*buf)[n:]
			return r
		}
		p := make([]byte, 32<<10)
		n, err := s.Read(p)
		if err != nil {
			t.Fatalf("reading a record: %v", err)
		}
		*buf = append(*buf, p[:n]...)
	}
}

func TestHandoverKeys(t *testing.T) {
	cert := writeCert(t)
	pair, err := tls.LoadX509KeyPair(cert.Cert, cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	base := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}
	base.SetSessionTicketKeys([][32]byte{{1, 2, 3}}) // kept by Clone: the second connection can resume
	cache := tls.NewLRUClientSessionCache(4)
	cconf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, ServerName: "a.test"}
	for _, tc := range []struct {
		name    string
		noTick  bool
		resumed bool
	}{{"tickets", false, false}, {"resumed", false, true}, {"no tickets", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			conf := base.Clone()
			conf.SessionTicketsDisabled = tc.noTick
			client, rd, wr, rc, st := handshake13(t, conf, cconf)
			if st.DidResume != tc.resumed {
				t.Fatalf("DidResume %v, want %v", st.DidResume, tc.resumed)
			}
			if tc.noTick && wr.Seq() != 0 || !tc.noTick && wr.Seq() == 0 {
				t.Fatalf("our sequence number starts at %d (tickets off: %v)", wr.Seq(), tc.noTick)
			}
			// The client's "hello": our Read half opens it, from what the
			// handshake left buffered or from the socket.
			var pend []byte
			if rc.buf != nil {
				pend = append(pend, rc.bytes()...)
			}
			rec := readRecord(t, &pend, rc.sysConn.Conn)
			typ, content, err := rd.Open(rec)
			if err != nil || typ != tlsrec.TypeApplicationData || string(content) != "hello" {
				t.Fatalf("opened %d %q %v", typ, content, err)
			}
			// Records we seal: the client reads them (after the tickets).
			out := wr.Seal(nil, tlsrec.TypeApplicationData, []byte("world"))
			if _, err := rc.sysConn.Write(out); err != nil {
				t.Fatal(err)
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			p := make([]byte, 16)
			n, err := client.Read(p)
			if err != nil || string(p[:n]) != "world" {
				t.Fatalf("client read %q %v", p[:n], err)
			}
			rc.release()
		})
	}
}

// testFront is a Front whose inner listener this test serves.
type testFront struct {
	f     *Front
	inner chan net.Conn
}

func startFront(t *testing.T) *testFront {
	t.Helper()
	cert := writeCert(t)
	f, err := Open(Config{
		Listen: []string{"127.0.0.1:0"}, Certs: []CertFiles{cert},
		HeaderTimeout: 5 * time.Second, ResponseTimeout: 5 * time.Second,
		Secret: []byte("0123456789abcdef"), Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFront{f: f, inner: make(chan net.Conn, 16)}
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

// rawClient is a TLS 1.3 client whose records after the handshake are
// this test's (tlsrec), so that it can send what crypto/tls would not: a
// KeyUpdate when asked, a tampered record, a bare close_notify.
type rawClient struct {
	t      *testing.T
	c      *net.TCPConn
	rd, wr *tlsrec.Half
	buf    []byte

	suite        uint16
	serverSecret []byte // SERVER_TRAFFIC_SECRET_0
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, _ := newSysConn(c.(*net.TCPConn))
	rc := newRecConn(sc, &keyLog{}) // bounded reads: the tickets stay for us
	var kl keyLines
	tc := tls.Client(rc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, KeyLogWriter: &kl})
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	rd, _ := tlsrec.NewHalf(st.CipherSuite, kl.m["SERVER_TRAFFIC_SECRET_0"], 0)
	wr, _ := tlsrec.NewHalf(st.CipherSuite, kl.m["CLIENT_TRAFFIC_SECRET_0"], 0)
	rcl := &rawClient{t: t, c: c.(*net.TCPConn), rd: rd, wr: wr, suite: st.CipherSuite, serverSecret: kl.m["SERVER_TRAFFIC_SECRET_0"]}
	if rc.buf != nil {
		rcl.buf = append(rcl.buf, rc.bytes()...)
	}
	return rcl
}

func (r *rawClient) send(typ uint8, content []byte) {
	r.t.Helper()
	if _, err := r.c.Write(r.wr.Seal(nil, typ, content)); err != nil {
		r.t.Fatal(err)
	}
}

// recv opens the next record that is not a session ticket.
func (r *rawClient) recv() (uint8, []byte) {
	r.t.Helper()
	for {
		typ, content, err := r.rd.Open(readRecord(r.t, &r.buf, r.c))
		if err != nil {
			r.t.Fatalf("client: %v", err)
		}
		if typ == tlsrec.TypeHandshake && content[0] == tlsrec.HandshakeNewSessionTicket {
			continue
		}
		return typ, content
	}
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("read %d: %v (%q)", n, err, p)
	}
	return string(p)
}

func TestFront13Relay(t *testing.T) {
	tf := startFront(t)
	cl := dialRaw(t, tf.f.Addrs()[0].String())
	ic, br, h := tf.accept(t)
	if h.ConnID == 0 || !h.TLS {
		t.Fatalf("PROXY header %+v: want a connection id and the TLS bit", h)
	}
	ic.SetDeadline(time.Now().Add(5 * time.Second))

	cl.send(tlsrec.TypeApplicationData, []byte("GET / HTTP/1.1\r\n\r\n"))
	if got := readN(t, br, 18); got != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("inner got %q", got)
	}
	ic.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	if typ, got := cl.recv(); typ != tlsrec.TypeApplicationData || string(got) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("client got %d %q", typ, got)
	}

	// KeyUpdate asking for ours: the front answers with its own, and
	// everything after is under the new keys both ways.
	cl.send(tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, true))
	cl.wr.Update()
	typ, got := cl.recv()
	if typ != tlsrec.TypeHandshake || !bytes.Equal(got, tlsrec.AppendKeyUpdate(nil, false)) {
		t.Fatalf("after a requested KeyUpdate, the client got %d %x", typ, got)
	}
	cl.rd.Update()
	cl.send(tlsrec.TypeApplicationData, []byte("after"))
	if got := readN(t, br, 5); got != "after" {
		t.Fatalf("inner got %q", got)
	}
	ic.Write([]byte("reply"))
	if _, got := cl.recv(); string(got) != "reply" {
		t.Fatalf("client got %q", got)
	}
	// A KeyUpdate not asking for ours: no answer, the client's key moves on.
	cl.send(tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, false))
	cl.wr.Update()
	cl.send(tlsrec.TypeApplicationData, []byte("again"))
	if got := readN(t, br, 5); got != "again" {
		t.Fatalf("inner got %q", got)
	}

	// close_notify ends the client's direction: the inner side reads EOF,
	// and can still answer.
	cl.send(tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelWarning, tlsrec.AlertCloseNotify))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("inner after close_notify: %d %v, want EOF", n, err)
	}
	ic.Write([]byte("last"))
	ic.CloseWrite()
	if _, got := cl.recv(); string(got) != "last" {
		t.Fatalf("client got %q", got)
	}
	if typ, got := cl.recv(); typ != tlsrec.TypeAlert || got[1] != tlsrec.AlertCloseNotify {
		t.Fatalf("client got %d %x, want close_notify", typ, got)
	}
}

// A record that fails authentication is not forwarded: the client gets
// bad_record_mac and the connection closes.
func TestFront13TamperedRecord(t *testing.T) {
	tf := startFront(t)
	cl := dialRaw(t, tf.f.Addrs()[0].String())
	ic, br, _ := tf.accept(t)
	ic.SetDeadline(time.Now().Add(5 * time.Second))
	rec := cl.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("GET /evil HTTP/1.1\r\n\r\n"))
	rec[len(rec)-20] ^= 1
	cl.c.Write(rec)
	if n, err := br.Read(make([]byte, 64)); err == nil {
		t.Fatalf("inner got %d bytes of a tampered record", n)
	}
	if typ, got := cl.recv(); typ != tlsrec.TypeAlert || got[1] != tlsrec.AlertBadRecordMAC {
		t.Fatalf("client got %d %x, want bad_record_mac", typ, got)
	}
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cl.c.Read(make([]byte, 64)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client socket after the alert: %v, want closed", err)
	}
}

// Takeover: what the reactor wrote reaches the client first, the client's
// plaintext the reactor did not read comes back as ToBackend, and the
// record state goes on exactly where the front left it.
func TestTakeover(t *testing.T) {
	tf := startFront(t)
	cl := dialRaw(t, tf.f.Addrs()[0].String())
	ic, br, h := tf.accept(t)
	ic.SetDeadline(time.Now().Add(5 * time.Second))
	cl.send(tlsrec.TypeApplicationData, []byte("upgrade"))
	if got := readN(t, br, 7); got != "upgrade" {
		t.Fatalf("inner got %q", got)
	}
	ic.Write([]byte("earlier response"))
	// Pipelined behind: two records the reactor never reads, and a partial one.
	cl.send(tlsrec.TypeApplicationData, []byte("frame1"))
	cl.send(tlsrec.TypeApplicationData, []byte("frame2"))
	part := cl.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("frame3"))
	cl.c.Write(part[:9])
	// Wait until the front has relayed the two whole records (the partial
	// one it may or may not have read by the takeover: both must work).
	deadline := time.Now().Add(5 * time.Second)
	for inq := 0; inq < 12; {
		if time.Now().After(deadline) {
			t.Fatalf("the front relayed %d bytes of 12", inq)
		}
		time.Sleep(5 * time.Millisecond)
		irc, _ := ic.SyscallConn()
		irc.Control(func(s uintptr) { inq, _ = unix.IoctlGetInt(int(s), unix.SIOCINQ) })
		inq -= br.Buffered()
	}

	if _, ok := tf.f.Takeover(h.ConnID+1000, -1); ok {
		t.Fatal("Takeover of an unknown id")
	}
	var fd int
	rc, _ := ic.SyscallConn()
	var ho Handover
	var ok bool
	rc.Control(func(s uintptr) { fd = int(s); ho, ok = tf.f.Takeover(h.ConnID, fd) })
	if !ok {
		t.Fatal("Takeover refused")
	}
	if _, ok := tf.f.Takeover(h.ConnID, fd); ok {
		t.Fatal("a second Takeover of the same connection")
	}
	client := os.NewFile(uintptr(ho.Fd), "client")
	defer client.Close()
	if got := string(ho.ToBackend); got != "frame1frame2" {
		t.Fatalf("ToBackend %q", got)
	}
	if len(ho.Pending) != 0 && !bytes.Equal(ho.Pending, part[:9]) {
		t.Fatalf("Pending %x, want the partial record %x (or nothing, if the front had not read it)", ho.Pending, part[:9])
	}
	if _, got := cl.recv(); string(got) != "earlier response" {
		t.Fatalf("client got %q", got)
	}
	// The rest of the partial record, then a new one, through the handed-over socket.
	cl.c.Write(part[9:])
	cl.send(tlsrec.TypeApplicationData, []byte("frame4"))
	pend := append([]byte(nil), ho.Pending...)
	cc := fileConn(t, client)
	for _, want := range []string{"frame3", "frame4"} {
		typ, got, err := ho.Read.Open(readRecord(t, &pend, cc))
		if err != nil || typ != tlsrec.TypeApplicationData || string(got) != want {
			t.Fatalf("engine side opened %d %q %v, want %q", typ, got, err, want)
		}
	}
	client.Write(ho.Write.Seal(nil, tlsrec.TypeApplicationData, []byte("101 and more")))
	if _, got := cl.recv(); string(got) != "101 and more" {
		t.Fatalf("client got %q", got)
	}
	// The front sent no close_notify and no FIN: nothing else arrives.
	cl.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := cl.c.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client got %d bytes / %v after the takeover", n, err)
	}
	// The inner connection is over for the reactor.
	if _, err := br.Read(make([]byte, 1)); err == nil {
		t.Fatal("inner connection still open")
	}
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
