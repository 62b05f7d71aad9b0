package tunnel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

var tlsSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// recClient is the test's own TLS 1.3 client side over a raw socket: it
// seals with the client's secret and opens with the server's, so any suite
// can be driven (crypto/tls does not let a client choose a TLS 1.3 suite).
type recClient struct {
	c      *net.TCPConn
	wr, rd *tlsrec.Half
	in     []byte // ciphertext read, not yet opened
}

func newSecrets(suite uint16) (client, server []byte) {
	n := 32
	if suite == tls.TLS_AES_256_GCM_SHA384 {
		n = 48
	}
	client, server = make([]byte, n), make([]byte, n)
	rand.Read(client)
	rand.Read(server)
	return
}

func mustHalf(tb testing.TB, suite uint16, secret []byte) *tlsrec.Half {
	tb.Helper()
	h, err := tlsrec.NewHalf(suite, secret, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// newTLSPair makes a tunnel whose client side is TLS 1.3 with fresh keys of
// suite, protected by the engine; pending is ciphertext handed over with it.
func (r *rig) newTLSPair(tb testing.TB, e *Engine, suite uint16, toBackend, toClient []byte, pending func(rc *recClient) []byte) (*pair, *recClient) {
	tb.Helper()
	p, cfd, bfd := r.conns(tb)
	cs, ss := newSecrets(suite)
	rc := &recClient{c: p.client, wr: mustHalf(tb, suite, cs), rd: mustHalf(tb, suite, ss)}
	t := &TLS{Read: mustHalf(tb, suite, cs), Write: mustHalf(tb, suite, ss)}
	if pending != nil {
		t.Pending = pending(rc)
	}
	if err := e.AddTLS(0, cfd, bfd, toBackend, toClient, t, p.done); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.close)
	return p, rc
}

func (rc *recClient) send(tb testing.TB, typ uint8, content []byte) {
	tb.Helper()
	if _, err := rc.c.Write(rc.seal(nil, typ, content)); err != nil {
		tb.Fatal(err)
	}
}

func (rc *recClient) seal(dst []byte, typ uint8, content []byte) []byte {
	for {
		n := min(len(content), tlsrec.MaxPlain)
		dst = rc.wr.Seal(dst, typ, content[:n])
		content = content[n:]
		if len(content) == 0 {
			return dst
		}
	}
}

// next returns the next record's type and content.
func (rc *recClient) next(tb testing.TB) (uint8, []byte, error) {
	tb.Helper()
	buf := make([]byte, 32<<10)
	for {
		if n, ok, err := tlsrec.RecordLen(rc.in); err != nil {
			return 0, nil, err
		} else if ok && n <= len(rc.in) {
			rec := rc.in[:n:n]
			rc.in = rc.in[n:]
			typ, content, err := rc.rd.Open(rec)
			return typ, content, err
		}
		rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := rc.c.Read(buf)
		rc.in = append(rc.in, buf[:m]...)
		if err != nil {
			return 0, nil, err
		}
	}
}

// readData reads application data until it has n bytes (other records fail).
func (rc *recClient) readData(tb testing.TB, n int) []byte {
	tb.Helper()
	var got []byte
	for len(got) < n {
		typ, content, err := rc.next(tb)
		if err != nil {
			tb.Fatalf("after %d of %d bytes: %v", len(got), n, err)
		}
		if typ != tlsrec.TypeApplicationData {
			tb.Fatalf("record type %d, want application data", typ)
		}
		got = append(got, content...)
	}
	return got
}

func TestTLSTunnelEcho(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	for _, suite := range tlsSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			hello := []byte("HTTP/1.1 101 Switching Protocols\r\n\r\nfirst-frame")
			p, rc := r.newTLSPair(t, e, suite, []byte("early;"), hello, func(rc *recClient) []byte {
				// A whole record and half of the next one were read before the handover.
				b := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("pending;"))
				next := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("split;"))
				b = append(b, next[:7]...)
				go func() { time.Sleep(20 * time.Millisecond); rc.c.Write(next[7:]) }()
				return b
			})
			go echo(p.backend)
			if got := rc.readData(t, len(hello)); !bytes.Equal(got, hello) {
				t.Fatalf("client got %q first, want the sealed 101 %q", got, hello)
			}
			// The backend echoes what it got: toBackend, then the pending records, in order.
			want := "early;pending;split;"
			if got := rc.readData(t, len(want)); string(got) != want {
				t.Fatalf("echo of the handover: %q, want %q", got, want)
			}
			for _, size := range []int{1, 64, 1000, tlsrec.MaxPlain, 3*tlsrec.MaxPlain + 17, 1 << 20} {
				msg := make([]byte, size)
				rand.Read(msg)
				go func() { rc.c.Write(rc.seal(nil, tlsrec.TypeApplicationData, msg)) }()
				if got := rc.readData(t, size); !bytes.Equal(got, msg) {
					t.Fatalf("%d bytes: echo differs", size)
				}
			}
			// A zero-length application record is valid and forwards nothing.
			rc.send(t, tlsrec.TypeApplicationData, nil)
			rc.send(t, tlsrec.TypeApplicationData, []byte("after-empty"))
			if got := rc.readData(t, 11); string(got) != "after-empty" {
				t.Fatalf("got %q", got)
			}
			// close_notify from the client: the backend sees EOF, echoes
			// FIN back, and the client gets close_notify.
			rc.send(t, tlsrec.TypeAlert, tlsrec.AppendAlert(nil, 1, tlsrec.AlertCloseNotify))
			typ, content, err := rc.next(t)
			if err != nil || typ != tlsrec.TypeAlert || len(content) != 2 || content[1] != tlsrec.AlertCloseNotify {
				t.Fatalf("after close_notify: type %d %x %v, want a close_notify alert", typ, content, err)
			}
			st := p.wait(t, 10*time.Second)
			if st.Reason != ClientClosed {
				t.Fatalf("reason %v (%v), want client_closed", st.Reason, st.Err)
			}
			total := int64(len("early;pending;split;after-empty")) + 1 + 64 + 1000 + tlsrec.MaxPlain + 3*tlsrec.MaxPlain + 17 + 1<<20
			if st.ClientToBackend != total || st.BackendToClient != total+int64(len(hello)) {
				t.Fatalf("stats %d/%d, want plaintext %d/%d", st.ClientToBackend, st.BackendToClient, total, total+int64(len(hello)))
			}
		})
	}
}

// A KeyUpdate from the client with update_requested: the engine opens the
// next records with the new keys, answers with a KeyUpdate of its own, and
// seals what follows with its new keys.
func TestTLSTunnelKeyUpdate(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	for _, suite := range tlsSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			p, rc := r.newTLSPair(t, e, suite, nil, nil, nil)
			go echo(p.backend)
			rc.send(t, tlsrec.TypeApplicationData, []byte("before"))
			if got := rc.readData(t, 6); string(got) != "before" {
				t.Fatalf("got %q", got)
			}
			rc.send(t, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, true))
			rc.wr.Update()
			rc.send(t, tlsrec.TypeApplicationData, []byte("after"))
			typ, content, err := rc.next(t)
			if err != nil || typ != tlsrec.TypeHandshake {
				t.Fatalf("want the engine's KeyUpdate first, got type %d %v", typ, err)
			}
			mt, body, _, err := tlsrec.NextHandshake(content)
			if err != nil || mt != tlsrec.HandshakeKeyUpdate || len(body) != 1 || body[0] != 0 {
				t.Fatalf("KeyUpdate %d %x %v, want update_not_requested", mt, body, err)
			}
			rc.rd.Update()
			if got := rc.readData(t, 5); string(got) != "after" {
				t.Fatalf("got %q", got)
			}
			// update_not_requested: no answer, keys move on the read side only.
			rc.send(t, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, false))
			rc.wr.Update()
			rc.send(t, tlsrec.TypeApplicationData, []byte("again"))
			if got := rc.readData(t, 5); string(got) != "again" {
				t.Fatalf("got %q", got)
			}
			p.notClosed(t)
		})
	}
}

// A record that fails authentication closes the tunnel; nothing of it, or
// of what came after it, reaches the backend, and the client gets
// bad_record_mac.
func TestTLSTunnelBadRecord(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	for _, where := range []string{"header", "body", "tag"} {
		t.Run(where, func(t *testing.T) {
			p, rc := r.newTLSPair(t, e, tls.TLS_AES_128_GCM_SHA256, nil, nil, nil)
			good := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("good;"))
			bad := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("secret"))
			switch where {
			case "header":
				bad[2] ^= 1 // legacy version
			case "body":
				bad[tlsrec.HeaderLen+1] ^= 0x40
			case "tag":
				bad[len(bad)-1] ^= 0x80
			}
			after := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("after"))
			rc.c.Write(append(append(good, bad...), after...))
			got, _ := io.ReadAll(p.backend)
			if string(got) != "good;" {
				t.Fatalf("backend got %q, want only the record before the bad one", got)
			}
			st := p.wait(t, 10*time.Second)
			var oe *OpError
			if st.Reason != Error || !errors.As(st.Err, &oe) || oe.Op != "tls" || oe.Side != SideClient {
				t.Fatalf("reason %v err %v, want error with a tls OpError on the client", st.Reason, st.Err)
			}
			typ, content, err := rc.next(t)
			if where != "header" && (err != nil || typ != tlsrec.TypeAlert || len(content) != 2 || content[1] != tlsrec.AlertBadRecordMAC) {
				t.Fatalf("client got type %d %x %v, want a bad_record_mac alert", typ, content, err)
			}
		})
	}
}

// Records split at every byte boundary arrive whole at the backend.
func TestTLSTunnelSplitRecords(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	p, rc := r.newTLSPair(t, e, tls.TLS_CHACHA20_POLY1305_SHA256, nil, nil, nil)
	p.client.SetNoDelay(true)
	go echo(p.backend)
	rec := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("one"))
	n := len(rec) + rc.wr.SealedLen(3)
	for i := 1; i < n; i++ {
		stream := rc.wr.Seal(nil, tlsrec.TypeApplicationData, []byte(fmt.Sprintf("%03d", i)))
		stream = rc.wr.Seal(stream, tlsrec.TypeApplicationData, []byte("abc"))
		if i == 1 {
			stream = append(rec, stream...) // the first round also carries "one"
			rc.c.Write(stream[:i])
			time.Sleep(2 * time.Millisecond)
			rc.c.Write(stream[i:])
			if got := rc.readData(t, 9); string(got) != "one001abc" {
				t.Fatalf("split 1: %q", got)
			}
			continue
		}
		rc.c.Write(stream[:i%len(stream)])
		time.Sleep(2 * time.Millisecond)
		rc.c.Write(stream[i%len(stream):])
		want := fmt.Sprintf("%03dabc", i)
		if got := rc.readData(t, 6); string(got) != want {
			t.Fatalf("split %d: %q, want %q", i, got, want)
		}
	}
	p.notClosed(t)
}

// The backend's FIN becomes close_notify then FIN toward the client, and
// an idle timeout sends close_notify before closing.
func TestTLSTunnelBackendClose(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	p, rc := r.newTLSPair(t, e, tls.TLS_AES_256_GCM_SHA384, nil, nil, nil)
	p.backend.Write([]byte("bye"))
	p.backend.CloseWrite()
	if got := rc.readData(t, 3); string(got) != "bye" {
		t.Fatalf("got %q", got)
	}
	typ, content, err := rc.next(t)
	if err != nil || typ != tlsrec.TypeAlert || content[1] != tlsrec.AlertCloseNotify {
		t.Fatalf("type %d %x %v, want close_notify", typ, content, err)
	}
	if _, _, err := rc.next(t); err != io.EOF {
		t.Fatalf("after close_notify: %v, want EOF", err)
	}
	// The client's direction still flows (half-close).
	rc.send(t, tlsrec.TypeApplicationData, []byte("still"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(p.backend, buf); err != nil || string(buf) != "still" {
		t.Fatalf("backend got %q %v", buf, err)
	}
	rc.c.CloseWrite()
	if st := p.wait(t, 10*time.Second); st.Reason != BackendClosed {
		t.Fatalf("reason %v %v", st.Reason, st.Err)
	}
}

// A real crypto/tls client and a crypto/tls server handshake; the server's
// socket then goes to the engine with the traffic secrets from the key log
// (the route loop/tlsfront takes), and the client talks to the backend
// through it, both ways, and closes with close_notify.
func TestTLSTunnelCryptoTLSClient(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	cert := selfSigned(t)
	client, err := net.Dial("tcp", r.front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	proxyClient, err := r.front.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var klog bytes.Buffer
	srv := tls.Server(&recordReader{Conn: proxyClient}, &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		SessionTicketsDisabled: true, // so the server wrote no application record: its seq is 0
		KeyLogWriter:           &klog,
	})
	cl := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cl.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	secrets := map[string][]byte{}
	for _, line := range strings.Split(klog.String(), "\n") {
		if label, _, secret, err := tlsrec.ParseKeyLogLine([]byte(line)); err == nil {
			secrets[label] = secret
		}
	}
	suite := srv.ConnectionState().CipherSuite
	rd := mustHalf(t, suite, secrets["CLIENT_TRAFFIC_SECRET_0"])
	wr := mustHalf(t, suite, secrets["SERVER_TRAFFIC_SECRET_0"])
	proxyBackend, err := net.Dial("tcp", r.back.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	backend, err := r.back.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	p := &pair{client: client.(*net.TCPConn), backend: backend.(*net.TCPConn), stats: make(chan Stats, 2)}
	if err := e.AddTLS(0, dupFd(t, proxyClient), dupFd(t, proxyBackend), nil, []byte("101;"), &TLS{Read: rd, Write: wr}, p.done); err != nil {
		t.Fatal(err)
	}
	go echo(p.backend)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cl, buf); err != nil || string(buf) != "101;" {
		t.Fatalf("client got %q %v", buf, err)
	}
	msg := make([]byte, 200_000)
	rand.Read(msg)
	go cl.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cl, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through crypto/tls: %v", err)
	}
	cl.CloseWrite() // close_notify
	if n, err := cl.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after close_notify both ways: %d %v, want EOF", n, err)
	}
	if st := p.wait(t, 10*time.Second); st.Reason != ClientClosed {
		t.Fatalf("reason %v %v", st.Reason, st.Err)
	}
}

// recordReader hands crypto/tls at most one record per Read, so that it
// never holds bytes behind the handshake.
type recordReader struct {
	net.Conn
	hdr  [tlsrec.HeaderLen]byte
	left int
}

func (r *recordReader) Read(b []byte) (int, error) {
	if r.left == 0 {
		if _, err := io.ReadFull(r.Conn, r.hdr[:]); err != nil {
			return 0, err
		}
		r.left = int(r.hdr[3])<<8 | int(r.hdr[4])
		if len(b) < tlsrec.HeaderLen {
			return 0, io.ErrShortBuffer
		}
		n := copy(b, r.hdr[:])
		m, err := io.ReadFull(r.Conn, b[n:n+min(r.left, len(b)-n)])
		r.left -= m
		return n + m, err
	}
	m, err := io.ReadFull(r.Conn, b[:min(r.left, len(b))])
	r.left -= m
	return m, err
}

func selfSigned(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A TLS tunnel quiet for a whole tick lets its AEADs go, and the next
// bytes build them again: both ways still work.
func TestTLSTunnelRestsWhenIdle(t *testing.T) {
	r := newRig(t)
	clk := newFakeClock()
	e := newEngine(t, Config{Now: clk.Now, Loops: 1})
	p, rc := r.newTLSPair(t, e, tls.TLS_AES_128_GCM_SHA256, nil, nil, nil)
	go echo(p.backend)
	rc.send(t, tlsrec.TypeApplicationData, []byte("warm"))
	if got := rc.readData(t, 4); string(got) != "warm" {
		t.Fatalf("got %q", got)
	}
	resting := func() (rd, wr bool) {
		e.run(func(l *loop) {
			for ci := range l.chunks {
				for j := range l.chunks[ci] {
					if tt := &l.chunks[ci][j]; tt.open && tt.tls != nil {
						rd, wr = tt.tls.rd.Resting(), tt.tls.wr.Resting()
					}
				}
			}
		})
		return
	}
	if rd, wr := resting(); rd || wr {
		t.Fatal("AEADs at rest right after traffic")
	}
	for range 3 {
		clk.Advance(time.Second)
		e.tick()
	}
	eventually(t, 5*time.Second, "AEADs at rest", func() bool { rd, wr := resting(); return rd && wr })
	rc.send(t, tlsrec.TypeApplicationData, []byte("again"))
	if got := rc.readData(t, 5); string(got) != "again" {
		t.Fatalf("after rest: %q", got)
	}
	if rd, wr := resting(); rd || wr {
		t.Fatal("AEADs still at rest after traffic")
	}
	p.notClosed(t)
}

// Before the AES-GCM usage limit the engine sends a KeyUpdate of its own
// (update_not_requested) and seals what follows with the next keys.
func TestTLSTunnelOwnKeyUpdateAtLimit(t *testing.T) {
	r := newRig(t)
	e := newEngine(t, Config{})
	p, cfd, bfd := r.conns(t)
	defer p.close()
	const suite = tls.TLS_AES_128_GCM_SHA256
	cs, ss := newSecrets(suite)
	start := uint64(tlsrec.LimitAESGCM - 2)
	wr, _ := tlsrec.NewHalf(suite, ss, start)
	rd, _ := tlsrec.NewHalf(suite, ss, start)
	rc := &recClient{c: p.client, wr: mustHalf(t, suite, cs), rd: rd}
	if err := e.AddTLS(0, cfd, bfd, nil, nil, &TLS{Read: mustHalf(t, suite, cs), Write: wr}, p.done); err != nil {
		t.Fatal(err)
	}
	updates := 0
	for i := range 4 {
		msg := fmt.Sprintf("m%d", i)
		p.backend.Write([]byte(msg))
		for {
			typ, content, err := rc.next(t)
			if err != nil {
				t.Fatalf("message %d: %v (after %d KeyUpdates)", i, err, updates)
			}
			if typ == tlsrec.TypeHandshake {
				mt, body, _, err := tlsrec.NextHandshake(content)
				if err != nil || mt != tlsrec.HandshakeKeyUpdate || len(body) != 1 || body[0] != 0 {
					t.Fatalf("handshake message %d %x %v, want KeyUpdate(update_not_requested)", mt, body, err)
				}
				rc.rd.Update()
				updates++
				continue
			}
			if typ != tlsrec.TypeApplicationData || string(content) != msg {
				t.Fatalf("type %d %q, want %q", typ, content, msg)
			}
			break
		}
	}
	if updates != 1 || rc.rd.Seq() != 2 {
		t.Fatalf("%d KeyUpdates, client at seq %d: want exactly one, at the limit", updates, rc.rd.Seq())
	}
	p.notClosed(t)
}
