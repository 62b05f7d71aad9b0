package tlsfront

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/loop/proxyproto"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// These tests serve Conn13s with hooks of their own: Request runs the
// test's steps in the connection's goroutine (drv.do), so that each
// netpoll.Connection call is made where the reactor makes it, while the
// test drives a real TLS 1.3 client on the other end: crypto/tls, or
// rawClient (crypto/tls's handshake, then records of the test's own) where
// the test must send what crypto/tls would not (a KeyUpdate, a tampered or
// split record, a bare alert).

const waitLong = 10 * time.Second

// front13 is a Front with the hooks: its Conn13s come out of conns.
type front13 struct {
	f                *Front
	conns            chan *drv
	takeovers, fails *metrics.Counter
}

// drv drives one Conn13: its Request runs the steps sent on ops until one
// returns true (Request returns) or the test ends (quit: Close).
type drv struct {
	a      *Conn13
	ops    chan func(*Conn13) bool
	quit   chan struct{}
	closed chan struct{} // closed by the first close callback added (so: the last to run)
	hdr    proxyproto.Header
}

type drvKey struct{}

func startFront13(t *testing.T) *front13 {
	t.Helper()
	cert := writeCert(t)
	set := metrics.NewSet()
	ff := &front13{conns: make(chan *drv, 16), takeovers: set.NewCounter("takeovers"), fails: set.NewCounter("takeover_fails")}
	quit := make(chan struct{})
	f, err := Open(Config{
		Listen: []string{"127.0.0.1:0"}, Certs: []CertFiles{cert},
		HeaderTimeout: 5 * time.Second, ResponseTimeout: 5 * time.Second,
		Secret: []byte("0123456789abcdef"), Logf: t.Logf,
		Takeovers: ff.takeovers, TakeoverFails: ff.fails,
		Prepare: func(c netpoll.Connection) context.Context {
			d := &drv{a: c.(*Conn13), ops: make(chan func(*Conn13) bool), quit: quit, closed: make(chan struct{})}
			c.AddCloseCallback(func(netpoll.Connection) error { close(d.closed); return nil })
			ff.conns <- d
			return context.WithValue(context.Background(), drvKey{}, d)
		},
		Request: func(ctx context.Context, c netpoll.Connection) error {
			d := ctx.Value(drvKey{}).(*drv)
			for {
				select {
				case op := <-d.ops:
					if op(d.a) {
						return nil
					}
				case <-d.quit:
					c.Close()
					return nil
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	ff.f = f
	t.Cleanup(func() {
		close(quit)
		f.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		f.Drain(ctx)
	})
	return ff
}

func (ff *front13) addr() string { return ff.f.Addrs()[0].String() }

// accept takes the next Conn13 and reads its PROXY header (the first
// bytes of its plaintext).
func (ff *front13) accept(t *testing.T) *drv {
	t.Helper()
	var d *drv
	select {
	case d = <-ff.conns:
	case <-time.After(waitLong):
		t.Fatal("no Conn13")
	}
	var err error
	d.do(t, func(a *Conn13) {
		var p []byte
		if p, err = a.Peek(proxyproto.V2HeaderLen); err != nil {
			return
		}
		n := proxyproto.V2HeaderLen + (int(p[14])<<8 | int(p[15]))
		if p, err = a.Peek(n); err != nil {
			return
		}
		if d.hdr, err = proxyproto.Parse(p); err == nil {
			err = a.Skip(d.hdr.N)
		}
		a.Release()
	})
	if err != nil {
		t.Fatalf("PROXY header: %v", err)
	}
	if d.hdr.ConnID != d.a.id || d.hdr.ConnID == 0 || !d.hdr.TLS || string(d.hdr.Secret) != "0123456789abcdef" {
		t.Fatalf("PROXY header %+v (connection %d)", d.hdr, d.a.id)
	}
	return d
}

// start runs f in the connection's goroutine; the channel is closed once
// it has run. f returning true makes Request return.
func (d *drv) start(t *testing.T, f func(a *Conn13) bool) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	op := func(a *Conn13) bool { defer close(done); return f(a) }
	select {
	case d.ops <- op:
	case <-time.After(waitLong):
		t.Fatal("the connection runs no handler")
	}
	return done
}

// do runs f in the connection's goroutine and waits for it.
func (d *drv) do(t *testing.T, f func(a *Conn13)) {
	t.Helper()
	wait(t, d.start(t, func(a *Conn13) bool { f(a); return false }), "a step")
}

// ret makes Request return.
func (d *drv) ret(t *testing.T) {
	t.Helper()
	wait(t, d.start(t, func(*Conn13) bool { return true }), "Request's return")
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLong):
		t.Fatalf("waited %v for %s", waitLong, what)
	}
}

// dialTLS is a crypto/tls TLS 1.3 client; wrap, if set, wraps its socket.
func dialTLS(t *testing.T, addr string, wrap func(net.Conn) net.Conn) *tls.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if wrap != nil {
		c = wrap(c)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, DynamicRecordSizingDisabled: true})
	tc.SetDeadline(time.Now().Add(waitLong))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// tapConn lets a test rewrite what a crypto/tls client writes: edit, when
// set, returns the bytes to send now of those written (Write reports them
// all written).
type tapConn struct {
	net.Conn
	mu   sync.Mutex
	edit func(p []byte) []byte
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	edit := c.edit
	c.edit = nil // once
	c.mu.Unlock()
	if edit == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(edit(append([]byte(nil), p...))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *tapConn) next(edit func(p []byte) []byte) {
	c.mu.Lock()
	c.edit = edit
	c.mu.Unlock()
}

// readTLS reads exactly n bytes of plaintext from a crypto/tls client.
func readTLS(t *testing.T, tc *tls.Conn, n int) string {
	t.Helper()
	tc.SetReadDeadline(time.Now().Add(waitLong))
	defer tc.SetReadDeadline(time.Time{})
	return readN(t, tc, n)
}

// readToEnd reads a crypto/tls client to close_notify (io.ReadAll then
// gives no error; a TCP EOF without it gives io.ErrUnexpectedEOF).
func readToEnd(t *testing.T, tc *tls.Conn) (string, error) {
	t.Helper()
	tc.SetReadDeadline(time.Now().Add(waitLong))
	b, err := io.ReadAll(tc)
	return string(b), err
}

// peekStr is a.Peek(n) as a string (for steps that report back).
func peekStr(a *Conn13, n int) (string, error) {
	p, err := a.Peek(n)
	return string(p), err
}

// socketEnds reads the client's raw socket: it must end (EOF or reset)
// with no more bytes.
func socketEnds(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLong))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client socket: %d bytes, %v; want it closed", n, err)
	}
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

// A request in, a response out, through crypto/tls on the client's side.
func TestConn13Exchange(t *testing.T) {
	ff := startFront13(t)
	tc := dialTLS(t, ff.addr(), nil)
	d := ff.accept(t)
	tc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	var got string
	var err error
	d.do(t, func(a *Conn13) {
		if got, err = peekStr(a, 18); err == nil {
			a.Skip(18)
			a.Release()
			a.WriteString("HTTP/1.1 200 OK\r\n\r\n")
			err = a.Flush()
		}
	})
	if err != nil || got != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("the handler read %q, %v", got, err)
	}
	if got := readTLS(t, tc, 19); got != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("client got %q", got)
	}
	if d.a.LocalAddr().String() != ff.f.innerA.String() || d.a.RemoteAddr().String() != tc.LocalAddr().String() {
		t.Fatalf("addresses %v %v", d.a.LocalAddr(), d.a.RemoteAddr())
	}
}

// A KeyUpdate from the client: its key moves on; when it asks for ours, our
// KeyUpdate goes out behind the records already laid out (a response being
// written when the KeyUpdate is read) and everything after is under our new
// key; when it does not ask, we send none.
func TestConn13KeyUpdateFromClient(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)

	cl.send(tlsrec.TypeApplicationData, []byte("req1"))
	var got string
	var err error
	d.do(t, func(a *Conn13) {
		got, err = peekStr(a, 4)
		a.Skip(4)
		a.WriteString("resp1") // laid out, not flushed
	})
	if err != nil || got != "req1" {
		t.Fatalf("the handler read %q, %v", got, err)
	}
	// The KeyUpdate asking for ours and a record under the client's new
	// key, in one segment.
	seg := cl.wr.Seal(nil, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, true))
	cl.wr.Update()
	seg = cl.wr.Seal(seg, tlsrec.TypeApplicationData, []byte("req2"))
	cl.c.Write(seg)
	var ferr error
	d.do(t, func(a *Conn13) {
		got, err = peekStr(a, 4) // reads the KeyUpdate: the answer goes out behind resp1
		a.Skip(4)
		a.WriteString("resp2")
		ferr = a.Flush()
	})
	if err != nil || got != "req2" || ferr != nil {
		t.Fatalf("the handler read %q, %v; Flush: %v", got, err, ferr)
	}
	if typ, got := cl.recv(); typ != tlsrec.TypeApplicationData || string(got) != "resp1" {
		t.Fatalf("client got %d %q, want resp1 (under our old key)", typ, got)
	}
	if typ, got := cl.recv(); typ != tlsrec.TypeHandshake || !bytes.Equal(got, tlsrec.AppendKeyUpdate(nil, false)) {
		t.Fatalf("client got %d %x, want our KeyUpdate (not requesting)", typ, got)
	}
	cl.rd.Update()
	if typ, got := cl.recv(); typ != tlsrec.TypeApplicationData || string(got) != "resp2" {
		t.Fatalf("client got %d %q, want resp2 (under our new key)", typ, got)
	}

	// A KeyUpdate not asking for ours: no answer.
	seg = cl.wr.Seal(nil, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, false))
	cl.wr.Update()
	seg = cl.wr.Seal(seg, tlsrec.TypeApplicationData, []byte("req3"))
	cl.c.Write(seg)
	d.do(t, func(a *Conn13) {
		got, err = peekStr(a, 4)
		a.Skip(4)
		a.WriteString("resp3")
		ferr = a.Flush()
	})
	if err != nil || got != "req3" || ferr != nil {
		t.Fatalf("the handler read %q, %v; Flush: %v", got, err, ferr)
	}
	if typ, got := cl.recv(); typ != tlsrec.TypeApplicationData || string(got) != "resp3" {
		t.Fatalf("client got %d %q, want resp3 and no KeyUpdate", typ, got)
	}

	// A KeyUpdate while the connection waits between requests (no
	// handler): answered at once.
	d.ret(t)
	cl.send(tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, true))
	cl.wr.Update()
	if typ, got := cl.recv(); typ != tlsrec.TypeHandshake || !bytes.Equal(got, tlsrec.AppendKeyUpdate(nil, false)) {
		t.Fatalf("client got %d %x, want our KeyUpdate", typ, got)
	}
	cl.rd.Update()
	cl.send(tlsrec.TypeApplicationData, []byte("req4"))
	d.do(t, func(a *Conn13) {
		got, err = peekStr(a, 4)
		a.Skip(4)
		a.WriteString("resp4")
		ferr = a.Flush()
	})
	if err != nil || got != "req4" || ferr != nil {
		t.Fatalf("the handler read %q, %v; Flush: %v", got, err, ferr)
	}
	if _, got := cl.recv(); string(got) != "resp4" {
		t.Fatalf("client got %q", got)
	}
}

// Our own KeyUpdate: once our key has sealed as many records as it may
// (NeedsUpdate), the next record goes out behind a KeyUpdate, under the
// next key, also in the middle of one Flush's records.
func TestConn13KeyUpdateAtLimit(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)
	// A first response, so that the client has read the session tickets
	// sealed before it under our first key.
	d.do(t, func(a *Conn13) { a.WriteString("hi"); a.Flush() })
	if _, got := cl.recv(); string(got) != "hi" {
		t.Fatalf("client got %q", got)
	}
	limit := uint64(tlsrec.LimitAESGCM)
	if cl.suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		limit = tlsrec.LimitChaCha20
	}
	// Both ends of our direction jump to two records short of the limit.
	var err error
	d.do(t, func(a *Conn13) {
		a.wr, err = tlsrec.NewHalf(cl.suite, cl.serverSecret, limit-2)
	})
	if err != nil {
		t.Fatal(err)
	}
	cl.rd, _ = tlsrec.NewHalf(cl.suite, cl.serverSecret, limit-2)

	// One Flush of three full records and a short one: two go out under
	// the old key, then a KeyUpdate, then the rest under the new one.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*tlsrec.MaxPlain/16)
	big = append(big, "tail"...)
	d.do(t, func(a *Conn13) { a.WriteBinary(big); err = a.Flush() })
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i, want := range []int{tlsrec.MaxPlain, tlsrec.MaxPlain, -1, tlsrec.MaxPlain, 4} {
		typ, content := cl.recv()
		if want < 0 {
			if typ != tlsrec.TypeHandshake || !bytes.Equal(content, tlsrec.AppendKeyUpdate(nil, false)) {
				t.Fatalf("record %d: %d %x, want our KeyUpdate at the limit", i, typ, content)
			}
			cl.rd.Update()
			continue
		}
		if typ != tlsrec.TypeApplicationData || len(content) != want {
			t.Fatalf("record %d: type %d, %d bytes, want %d bytes of data", i, typ, len(content), want)
		}
		got = append(got, content...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the client read other bytes than written")
	}
}

// close_notify from the client ends the input: a reader waiting for more
// gets netpoll.ErrEOF (what follows close_notify is ignored), and our
// writes still go; once the handler returns, the connection closes with
// our close_notify.
func TestConn13CloseNotifyFromClient(t *testing.T) {
	t.Run("crypto/tls", func(t *testing.T) {
		ff := startFront13(t)
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		var err error
		done := d.start(t, func(a *Conn13) bool { _, err = a.Peek(1); return false })
		tc.CloseWrite() // close_notify
		wait(t, done, "the reader")
		if err != netpoll.ErrEOF {
			t.Fatalf("a reader waiting at close_notify got %v, want netpoll.ErrEOF", err)
		}
		d.do(t, func(a *Conn13) { a.WriteString("still"); err = a.Flush() })
		if err != nil {
			t.Fatalf("Flush after close_notify: %v", err)
		}
		if got := readTLS(t, tc, 5); got != "still" {
			t.Fatalf("client got %q", got)
		}
		d.ret(t)
		wait(t, d.closed, "the close callbacks")
		if got, err := readToEnd(t, tc); got != "" || err != nil {
			t.Fatalf("client read %q, %v; want close_notify", got, err)
		}
	})
	t.Run("data after it", func(t *testing.T) {
		ff := startFront13(t)
		cl := dialRaw(t, ff.addr())
		d := ff.accept(t)
		var seg []byte
		seg = cl.wr.Seal(seg, tlsrec.TypeApplicationData, []byte("last"))
		seg = cl.wr.Seal(seg, tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelWarning, tlsrec.AlertCloseNotify))
		seg = cl.wr.Seal(seg, tlsrec.TypeApplicationData, []byte("ignored"))
		cl.c.Write(seg)
		var got string
		var err, err2 error
		d.do(t, func(a *Conn13) {
			got, err = peekStr(a, 4)
			a.Skip(4)
			_, err2 = a.Peek(1)
		})
		if got != "last" || err != nil || err2 != netpoll.ErrEOF {
			t.Fatalf("the handler read %q, %v, then %v; want last, then netpoll.ErrEOF", got, err, err2)
		}
	})
	t.Run("EOF", func(t *testing.T) { // a TCP EOF without close_notify ends the input too
		ff := startFront13(t)
		cl := dialRaw(t, ff.addr())
		d := ff.accept(t)
		var err error
		done := d.start(t, func(a *Conn13) bool { _, err = a.Peek(1); return false })
		cl.c.CloseWrite()
		wait(t, done, "the reader")
		if err != netpoll.ErrEOF {
			t.Fatalf("a reader waiting at EOF got %v, want netpoll.ErrEOF", err)
		}
		d.do(t, func(a *Conn13) { a.WriteString("still"); err = a.Flush() })
		if _, got := cl.recv(); err != nil || string(got) != "still" {
			t.Fatalf("client got %q (Flush: %v)", got, err)
		}
	})
	t.Run("EOF in a record", func(t *testing.T) { // a cut record is an error, not an end
		ff := startFront13(t)
		cl := dialRaw(t, ff.addr())
		d := ff.accept(t)
		rec := cl.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("cut"))
		cl.c.Write(rec[:10])
		cl.c.CloseWrite()
		var err error
		d.do(t, func(a *Conn13) { _, err = a.Peek(1) })
		if err == nil || err == netpoll.ErrEOF {
			t.Fatalf("EOF in the middle of a record: %v, want an error other than EOF", err)
		}
	})
}

// A record that fails authentication gets a fatal bad_record_mac alert;
// nothing of it reaches the reader (the records before it do), nothing
// more is written, and the socket closes.
func TestConn13TamperedRecord(t *testing.T) {
	t.Run("crypto/tls", func(t *testing.T) {
		ff := startFront13(t)
		var tap *tapConn
		tc := dialTLS(t, ff.addr(), func(c net.Conn) net.Conn { tap = &tapConn{Conn: c}; return tap })
		d := ff.accept(t)
		var err, ferr error
		n := -1
		done := d.start(t, func(a *Conn13) bool {
			_, err = a.Peek(1)
			n = a.Len()
			a.WriteString("no")
			ferr = a.Flush()
			return true
		})
		tap.next(func(p []byte) []byte { p[len(p)-20] ^= 1; return p })
		tc.Write([]byte("GET /evil HTTP/1.1\r\n\r\n"))
		wait(t, done, "the reader")
		if !errors.Is(err, tlsrec.ErrBadRecordMAC) || n != 0 || ferr == nil {
			t.Fatalf("the reader got %v with %d bytes buffered, Flush %v; want ErrBadRecordMAC, 0, an error", err, n, ferr)
		}
		tc.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := tc.Read(make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("client: %v, want bad_record_mac from the server", err)
		}
		wait(t, d.closed, "the close callbacks")
		socketEnds(t, tap.Conn)
	})
	t.Run("behind a good one", func(t *testing.T) {
		ff := startFront13(t)
		cl := dialRaw(t, ff.addr())
		d := ff.accept(t)
		seg := cl.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("good"))
		bad := cl.wr.Seal(nil, tlsrec.TypeApplicationData, []byte("GET /evil HTTP/1.1\r\n\r\n"))
		bad[len(bad)-20] ^= 1
		cl.c.Write(append(seg, bad...))
		var got string
		var err, err2 error
		d.do(t, func(a *Conn13) {
			got, err = peekStr(a, 4)
			a.Skip(4)
			_, err2 = a.Peek(1)
			if a.Len() != 0 {
				err2 = errors.New("bytes of the tampered record buffered")
			}
		})
		if got != "good" || err != nil || !errors.Is(err2, tlsrec.ErrBadRecordMAC) {
			t.Fatalf("the reader got %q, %v, then %v; want good, then ErrBadRecordMAC", got, err, err2)
		}
		typ, alert := cl.recv()
		if typ != tlsrec.TypeAlert || !bytes.Equal(alert, []byte{tlsrec.AlertLevelFatal, tlsrec.AlertBadRecordMAC}) {
			t.Fatalf("client got %d %x, want a fatal bad_record_mac", typ, alert)
		}
		d.ret(t)
		wait(t, d.closed, "the close callbacks")
		socketEnds(t, cl.c) // no close_notify after the fatal alert
	})
}

// An alert from the client (other than close_notify) ends the connection:
// a waiting reader gets an error, and the socket closes with no
// close_notify of ours.
func TestConn13AlertFromClient(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)
	var err error
	done := d.start(t, func(a *Conn13) bool { _, err = a.Peek(1); return true })
	cl.send(tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelFatal, tlsrec.AlertInternalError))
	wait(t, done, "the reader")
	if err == nil || err == netpoll.ErrEOF {
		t.Fatalf("a reader waiting at an alert got %v, want an error", err)
	}
	wait(t, d.closed, "the close callbacks")
	if d.a.IsActive() {
		t.Fatal("still active")
	}
	socketEnds(t, cl.c)
}

// Close sends what was written (Flushed or not) and close_notify, after
// the close callbacks (newest first); CloseWrite sends close_notify at once
// and the input goes on.
func TestConn13Close(t *testing.T) {
	t.Run("Close", func(t *testing.T) {
		ff := startFront13(t)
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		var order []int
		d.do(t, func(a *Conn13) {
			a.AddCloseCallback(func(netpoll.Connection) error { order = append(order, 1); return nil })
			a.AddCloseCallback(func(netpoll.Connection) error { order = append(order, 2); return nil })
			a.WriteString("bye")
			b, _ := a.Malloc(2)
			copy(b, "!!")
			a.Close()
		})
		d.ret(t)
		wait(t, d.closed, "the close callbacks")
		if len(order) != 2 || order[0] != 2 || order[1] != 1 {
			t.Fatalf("close callbacks ran in order %v, want [2 1]", order)
		}
		if got, err := readToEnd(t, tc); got != "bye!!" || err != nil {
			t.Fatalf("client read %q, %v; want bye!! and close_notify", got, err)
		}
	})
	t.Run("CloseWrite", func(t *testing.T) {
		ff := startFront13(t)
		var tap *tapConn
		tc := dialTLS(t, ff.addr(), func(c net.Conn) net.Conn { tap = &tapConn{Conn: c}; return tap })
		d := ff.accept(t)
		var err, werr error
		d.do(t, func(a *Conn13) { a.WriteString("bye"); err = a.CloseWrite() })
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readToEnd(t, tc); got != "bye" || err != nil {
			t.Fatalf("client read %q, %v; want bye and close_notify", got, err)
		}
		socketEnds(t, tap.Conn) // and a FIN
		tc.Write([]byte("more"))
		var got string
		d.do(t, func(a *Conn13) {
			got, err = peekStr(a, 4)
			_, werr = a.Write([]byte("x"))
		})
		if got != "more" || err != nil || werr == nil {
			t.Fatalf("after CloseWrite the handler read %q, %v, and Write gave %v; want more, and an error", got, err, werr)
		}
	})
}

// Records split at every byte boundary: the connection reads exactly the
// bytes sent so far (checked), opens the whole records, keeps the partial
// one, and the reader gets the plaintext once the rest arrives. The stream
// holds a KeyUpdate (the record behind it is under the next key) and a
// zero-length record.
func TestConn13SplitRecords(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)
	type step struct {
		n     int    // record length
		plain int    // its plaintext
		ku    bool   // a KeyUpdate
		seq   uint64 // the reader's sequence number behind it
	}
	for round := 0; ; round++ {
		seq0 := cl.wr.Seq()
		var stream []byte
		stream = cl.wr.Seal(stream, tlsrec.TypeApplicationData, []byte("hello"))
		n1 := len(stream)
		stream = cl.wr.Seal(stream, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, false))
		cl.wr.Update()
		n2 := len(stream)
		stream = cl.wr.Seal(stream, tlsrec.TypeApplicationData, []byte("world"))
		n3 := len(stream)
		stream = cl.wr.Seal(stream, tlsrec.TypeApplicationData, nil)
		steps := []step{{n1, 5, false, seq0 + 1}, {n2 - n1, 0, true, 0}, {n3 - n2, 5, false, 1}, {len(stream) - n3, 0, false, 2}}
		i := round + 1
		if i >= len(stream) {
			break
		}
		// What the connection holds once it has read stream[:i].
		type state struct {
			seq          uint64
			plain, cpart int
		}
		want := state{seq0, 0, i}
		off := 0
		for _, s := range steps {
			if off+s.n > i {
				break
			}
			off += s.n
			want = state{s.seq, want.plain + s.plain, i - off}
		}
		final := state{2, 10, 0}
		var err error
		var got, at string
		var st state
		d.do(t, func(a *Conn13) {
			cur := func() state { return state{a.rd.Seq(), a.w - a.r, a.cw - a.w} }
			dl := time.Now().Add(waitLong)
			if _, err = cl.c.Write(stream[:i]); err != nil {
				return
			}
			for st = cur(); st != want && err == nil; st = cur() {
				err = a.readMore(dl)
			}
			if err != nil {
				at = "reading the first part"
				return
			}
			if _, err = cl.c.Write(stream[i:]); err != nil {
				return
			}
			for st = cur(); st != final && err == nil; st = cur() {
				err = a.readMore(dl)
			}
			if err != nil {
				at = "reading the rest"
				return
			}
			got, err = peekStr(a, 10)
			a.Skip(10)
			a.Release()
		})
		if err != nil || got != "helloworld" {
			t.Fatalf("split at %d of %d: %s: state %+v (want %+v), read %q, %v", i, len(stream), at, st, want, got, err)
		}
	}
}

// A zero-length application record is no input: a waiting reader goes on
// waiting (here until its deadline) and is not handed an empty read.
func TestConn13ZeroLengthRecord(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)
	var err, err2 error
	var got string
	done := d.start(t, func(a *Conn13) bool {
		a.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = a.Peek(1)
		a.SetReadDeadline(time.Time{})
		got, err2 = peekStr(a, 1)
		return false
	})
	cl.send(tlsrec.TypeApplicationData, nil)
	cl.send(tlsrec.TypeApplicationData, nil)
	select {
	case <-done:
		t.Fatalf("the reader returned at a zero-length record: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	time.Sleep(300 * time.Millisecond)
	cl.send(tlsrec.TypeApplicationData, []byte("x"))
	wait(t, done, "the reader")
	if err != netpoll.ErrReadTimeout || got != "x" || err2 != nil {
		t.Fatalf("the reader got %v, then %q %v; want a timeout, then x", err, got, err2)
	}
	// Between requests too: no Request for a zero-length record.
	d.do(t, func(a *Conn13) { a.Skip(1); a.Release() })
	d.ret(t)
	cl.send(tlsrec.TypeApplicationData, nil)
	cl.send(tlsrec.TypeApplicationData, []byte("y"))
	d.do(t, func(a *Conn13) { got, err = peekStr(a, a.Len()) })
	if got != "y" || err != nil {
		t.Fatalf("next request: %q %v", got, err)
	}
}

// Max-size records both ways, and the reader's view across records: Peek
// and Next hand out slices that stay valid (and unchanged) until Release,
// even when the buffer has to grow under them; Release lets them go.
func TestConn13RecordsAndReader(t *testing.T) {
	ff := startFront13(t)
	cl := dialRaw(t, ff.addr())
	d := ff.accept(t)

	// Five max-size records in one segment (more than a pooled buffer).
	data := make([]byte, 5*tlsrec.MaxPlain)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	var seg []byte
	for i := 0; i < len(data); i += tlsrec.MaxPlain {
		seg = cl.wr.Seal(seg, tlsrec.TypeApplicationData, data[i:i+tlsrec.MaxPlain])
	}
	cl.c.Write(seg)
	var errs []error
	var bad []string
	d.do(t, func(a *Conn13) {
		check := func(what string, p []byte, at int) {
			if !bytes.Equal(p, data[at:at+len(p)]) {
				bad = append(bad, what)
			}
		}
		p1, err := a.Peek(100)
		errs = append(errs, err)
		n1, err := a.Next(tlsrec.MaxPlain + 10) // across the first record's end
		errs = append(errs, err)
		p2, err := a.Peek(3*tlsrec.MaxPlain + 5) // waits for more: the buffer grows
		errs = append(errs, err)
		check("Peek(100)", p1, 0)
		check("Next", n1, 0)
		check("Peek after Next", p2, tlsrec.MaxPlain+10)
		s, err := a.ReadString(3)
		errs = append(errs, err)
		check("ReadString", []byte(s), tlsrec.MaxPlain+10)
		b, err := a.ReadByte()
		errs = append(errs, err)
		check("ReadByte", []byte{b}, tlsrec.MaxPlain+13)
		rb, err := a.ReadBinary(10)
		errs = append(errs, err)
		errs = append(errs, a.Skip(2))
		q := make([]byte, 5)
		n, err := a.Read(q)
		errs = append(errs, err)
		check("ReadBinary", rb, tlsrec.MaxPlain+14)
		check("Read", q[:n], tlsrec.MaxPlain+26)
		at := tlsrec.MaxPlain + 26 + n
		sl, err := a.Slice(7)
		errs = append(errs, err)
		sp, _ := sl.Next(7)
		check("Slice", sp, at)
		at += 7
		rest, err := a.Next(len(data) - at)
		errs = append(errs, err)
		check("the rest", rest, at)
		check("Peek(100), still", p1, 0)
		check("Next, still", n1, 0)
		if a.Len() != 0 {
			bad = append(bad, "Len after all")
		}
		a.Release()
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("wrong bytes from %v", bad)
	}

	// Until across records, and a slice handed out, kept by Release's
	// absence while more is read into the same buffer.
	cl.send(tlsrec.TypeApplicationData, []byte("GET /a"))
	cl.send(tlsrec.TypeApplicationData, []byte("bc HTTP/1.1\r\n"))
	var line string
	var err error
	d.do(t, func(a *Conn13) {
		var p []byte
		if p, err = a.Until('\n'); err == nil {
			line = string(p)
		}
	})
	if err != nil || line != "GET /abc HTTP/1.1\r\n" {
		t.Fatalf("Until: %q %v", line, err)
	}
	// A slice handed out by Peek or Next stays as it was until Release,
	// while much more is read (and skipped) behind it.
	for _, how := range []string{"Peek", "Next"} {
		var held []byte
		d.do(t, func(a *Conn13) {
			a.Release()
			cl.send(tlsrec.TypeApplicationData, []byte("skip"+how))
			if err = a.Skip(4); err != nil {
				return
			}
			if how == "Peek" {
				held, err = a.Peek(len(how))
				a.Skip(len(how))
			} else {
				held, err = a.Next(len(how))
			}
		})
		for i := 0; i < 100 && err == nil; i++ {
			cl.send(tlsrec.TypeApplicationData, bytes.Repeat([]byte{byte('a' + i%26)}, 4000))
			d.do(t, func(a *Conn13) {
				var p []byte
				if i%2 == 0 {
					p, err = a.ReadBinary(4000)
				} else if err = a.Skip(3999); err == nil {
					var b byte
					b, err = a.ReadByte()
					p = []byte{b}
				}
				if err == nil && p[0] != byte('a'+i%26) {
					err = errors.New("wrong bytes")
				}
				if string(held) != how {
					err = fmt.Errorf("a slice handed out by %s changed before Release: %q", how, held)
				}
			})
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// Our max-size records: many small writes and one large, one Flush;
	// the records are full but for the last.
	var out []byte
	d.do(t, func(a *Conn13) {
		a.Release()
		for i := range 1000 {
			p := bytes.Repeat([]byte{byte(i)}, 37)
			a.WriteBinary(p)
			out = append(out, p...)
		}
		big := bytes.Repeat([]byte("z"), 2*tlsrec.MaxPlain+3)
		a.WriteBinary(big)
		out = append(out, big...)
		err = a.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	var in []byte
	for len(in) < len(out) {
		typ, content := cl.recv()
		if typ != tlsrec.TypeApplicationData || len(content) != min(tlsrec.MaxPlain, len(out)-len(in)) {
			t.Fatalf("record of type %d, %d bytes after %d of %d", typ, len(content), len(in), len(out))
		}
		in = append(in, content...)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("the client read other bytes than written")
	}
}

// Flush seals everything written since the last one (WriteBinary,
// WriteString, WriteByte, Malloc'd bytes, MallocAck's cut) into records the
// client reads exactly: small writes share a record.
func TestConn13Flush(t *testing.T) {
	ff := startFront13(t)
	t.Run("crypto/tls", func(t *testing.T) {
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		var want []byte
		var err error
		var ml int
		d.do(t, func(a *Conn13) {
			a.WriteBinary([]byte("a"))
			a.WriteString("bc")
			a.WriteByte('d')
			b, _ := a.Malloc(3)
			copy(b, "efg")
			b, _ = a.Malloc(4)
			copy(b, "hijk")
			a.MallocAck(5) // "efghi"
			ml = a.MallocLen()
			big := bytes.Repeat([]byte("0123456789"), 4000)
			a.WriteBinary(big)
			want = append([]byte("abcdefghi"), big...)
			if err = a.Flush(); err != nil {
				return
			}
			a.WriteString("second")
			_, err = a.Write([]byte(" and third"))
			want = append(want, "second and third"...)
		})
		if err != nil || ml != 5 {
			t.Fatalf("Flush: %v (MallocLen %d)", err, ml)
		}
		if got := readTLS(t, tc, len(want)); got != string(want) {
			t.Fatalf("client read %d bytes, not those written", len(got))
		}
		d.do(t, func(a *Conn13) { err = a.Flush() }) // nothing to send
		d.do(t, func(a *Conn13) { a.WriteString("end"); a.Close() })
		d.ret(t)
		if got, err := readToEnd(t, tc); got != "end" || err != nil {
			t.Fatalf("client read %q, %v", got, err)
		}
	})
	t.Run("Malloc", func(t *testing.T) { // slices filled late, after other Mallocs and writes
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		var err error
		var ml int
		d.do(t, func(a *Conn13) {
			a.WriteString("<")
			b1, _ := a.Malloc(3)
			b2, _ := a.Malloc(4)
			a.WriteString("-")
			b3, _ := a.Malloc(2)
			a.WriteString("dropped")
			copy(b3, "hi")
			copy(b2, "defg")
			copy(b1, "abc")
			ml = a.MallocLen()
			a.MallocAck(ml - len("dropped"))
			a.WriteString(">")
			err = a.Flush()
		})
		if err != nil || ml != 17 {
			t.Fatalf("Flush: %v (MallocLen %d, want 17)", err, ml)
		}
		if got := readTLS(t, tc, 12); got != "<abcdefg-hi>" {
			t.Fatalf("client read %q, want <abcdefg-hi>", got)
		}
	})
	t.Run("records", func(t *testing.T) {
		cl := dialRaw(t, ff.addr())
		d := ff.accept(t)
		var err error
		d.do(t, func(a *Conn13) {
			a.WriteBinary([]byte("a"))
			a.WriteString("bc")
			a.WriteByte('d')
			b, _ := a.Malloc(2)
			copy(b, "ef")
			if err = a.Flush(); err == nil {
				a.WriteString("g")
				err = a.Flush()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"abcdef", "g"} {
			if typ, got := cl.recv(); typ != tlsrec.TypeApplicationData || string(got) != want {
				t.Fatalf("client got %d %q, want one record %q", typ, got, want)
			}
		}
	})
}

// A read deadline counts only when a read has to wait: buffered bytes are
// read past it; with none it times out (netpoll.ErrReadTimeout) and the
// connection goes on. The wait between requests does not use it.
func TestConn13ReadDeadline(t *testing.T) {
	ff := startFront13(t)
	tc := dialTLS(t, ff.addr(), nil)
	d := ff.accept(t)
	tc.Write([]byte("abc"))
	var got string
	var err, err2 error
	d.do(t, func(a *Conn13) { got, err = peekStr(a, 3) })
	if got != "abc" || err != nil {
		t.Fatalf("%q %v", got, err)
	}
	var took time.Duration
	d.do(t, func(a *Conn13) {
		a.SetReadDeadline(aLongTimeAgo)
		got, err = peekStr(a, 3)
		if err == nil {
			a.Skip(3)
			start := time.Now()
			_, err2 = a.Peek(1)
			took = time.Since(start)
		}
	})
	if got != "abc" || err != nil || err2 != netpoll.ErrReadTimeout {
		t.Fatalf("past the deadline: %q %v, then %v; want abc, then netpoll.ErrReadTimeout", got, err, err2)
	}
	d.do(t, func(a *Conn13) {
		a.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		start := time.Now()
		_, err = a.Peek(1)
		took = time.Since(start)
	})
	if err != netpoll.ErrReadTimeout || took < 150*time.Millisecond {
		t.Fatalf("with a deadline 200 ms away: %v after %v; want netpoll.ErrReadTimeout after it", err, took)
	}
	// A deadline for the first bytes, that arrive in time.
	done := d.start(t, func(a *Conn13) bool {
		a.SetDeadline(time.Now().Add(waitLong))
		got, err = peekStr(a, 1)
		a.Skip(1)
		a.Release()
		a.SetReadDeadline(aLongTimeAgo) // left in the past: the wait for the next request ignores it
		return true
	})
	tc.Write([]byte("d"))
	wait(t, done, "the reader")
	if got != "d" || err != nil {
		t.Fatalf("%q %v", got, err)
	}
	time.Sleep(100 * time.Millisecond)
	tc.Write([]byte("e"))
	d.do(t, func(a *Conn13) { got, err = peekStr(a, 1) })
	if got != "e" || err != nil {
		t.Fatalf("next request: %q %v", got, err)
	}
}

// Close from another goroutine (the idle wheel, a drain) wakes a reader
// blocked in the handler, and closes a connection waiting between
// requests; the client gets close_notify either way.
func TestConn13CloseFromElsewhere(t *testing.T) {
	ff := startFront13(t)
	t.Run("reading", func(t *testing.T) {
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		var err error
		done := d.start(t, func(a *Conn13) bool { _, err = a.Peek(1); return true })
		time.Sleep(50 * time.Millisecond) // most likely in its wait by now (either way it must end)
		d.a.Close()
		wait(t, done, "the reader")
		if err != netpoll.ErrConnClosed {
			t.Fatalf("the reader got %v, want netpoll.ErrConnClosed", err)
		}
		wait(t, d.closed, "the close callbacks")
		if got, err := readToEnd(t, tc); got != "" || err != nil {
			t.Fatalf("client read %q, %v; want close_notify", got, err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		tc := dialTLS(t, ff.addr(), nil)
		d := ff.accept(t)
		d.ret(t)
		time.Sleep(50 * time.Millisecond)
		d.a.Close()
		wait(t, d.closed, "the close callbacks")
		if d.a.IsActive() {
			t.Fatal("still active")
		}
		if got, err := readToEnd(t, tc); got != "" || err != nil {
			t.Fatalf("client read %q, %v; want close_notify", got, err)
		}
	})
}

// Takeover, from the close callback: what the handler wrote reaches the
// client first; the client's plaintext not yet read comes back as
// ToBackend and its ciphertext not yet opened as Pending; the record state
// carries on, both ways and through a KeyUpdate each way, on the
// duplicated socket with the same crypto/tls client; the front sends no
// close_notify and no FIN.
func TestConn13Takeover(t *testing.T) {
	ff := startFront13(t)
	var tap *tapConn
	tc := dialTLS(t, ff.addr(), func(c net.Conn) net.Conn { tap = &tapConn{Conn: c}; return tap })
	d := ff.accept(t)
	tc.Write([]byte("upgrade"))
	tc.Write([]byte("frame1"))
	tc.Write([]byte("frame2"))
	var rest []byte
	tap.next(func(p []byte) []byte { rest = p[9:]; return p[:9] }) // frame3: 9 bytes now, the rest later
	tc.Write([]byte("frame3"))

	hc := make(chan Handover, 1)
	var got string
	var err error
	var second bool
	d.do(t, func(a *Conn13) {
		got, err = peekStr(a, 7)
		if err != nil {
			return
		}
		a.Skip(7)
		// Everything sent read: two records opened and not read, a partial one.
		dl := time.Now().Add(waitLong)
		for (a.w-a.r != 12 || a.cw-a.w != 9) && err == nil {
			err = a.readMore(dl)
		}
		a.WriteString("earlier response") // not flushed: Takeover sends it
		a.AddCloseCallback(func(netpoll.Connection) error {
			h, ok := a.Takeover()
			if ok {
				_, second = a.Takeover()
				hc <- h
			}
			return nil
		})
		a.Close()
	})
	if err != nil || got != "upgrade" {
		t.Fatalf("the handler read %q, %v", got, err)
	}
	d.ret(t)
	var ho Handover
	select {
	case ho = <-hc:
	case <-time.After(waitLong):
		t.Fatal("Takeover refused")
	}
	if second {
		t.Fatal("a second Takeover")
	}
	wait(t, d.closed, "the close callbacks")
	client := os.NewFile(uintptr(ho.Fd), "client")
	defer client.Close()
	if string(ho.ToBackend) != "frame1frame2" || len(ho.Pending) != 9 {
		t.Fatalf("ToBackend %q, Pending %d bytes; want frame1frame2 and 9", ho.ToBackend, len(ho.Pending))
	}
	if ff.takeovers.Get() != 1 || ff.fails.Get() != 1 { // the second one refused
		t.Fatalf("counted %d takeovers, %d refused; want 1 and 1", ff.takeovers.Get(), ff.fails.Get())
	}
	if got := readTLS(t, tc, 16); got != "earlier response" {
		t.Fatalf("client got %q", got)
	}

	// The engine's side: the rest of frame3 and a new record open with
	// ho.Read, starting from Pending.
	tap.Conn.Write(rest)
	tc.Write([]byte("frame4"))
	cc := fileConn(t, client)
	pend := append([]byte(nil), ho.Pending...)
	open := func(want string) {
		t.Helper()
		typ, got, err := ho.Read.Open(readRecord(t, &pend, cc))
		if err != nil || typ != tlsrec.TypeApplicationData || string(got) != want {
			t.Fatalf("engine side opened %d %q %v, want %q", typ, got, err, want)
		}
	}
	open("frame3")
	open("frame4")
	// Ours: a record, then a KeyUpdate asking for the client's, then a
	// record under our next key.
	out := ho.Write.Seal(nil, tlsrec.TypeApplicationData, []byte("101 and more"))
	out = ho.Write.Seal(out, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, true))
	ho.Write.Update()
	out = ho.Write.Seal(out, tlsrec.TypeApplicationData, []byte("after ours"))
	if _, err := cc.Write(out); err != nil {
		t.Fatal(err)
	}
	if got := readTLS(t, tc, 22); got != "101 and moreafter ours" {
		t.Fatalf("client got %q", got)
	}
	// The client's KeyUpdate (crypto/tls answers ours), then its record
	// under its next key.
	tc.Write([]byte("frame5"))
	typ, content, err := ho.Read.Open(readRecord(t, &pend, cc))
	if err != nil || typ != tlsrec.TypeHandshake || !bytes.Equal(content, tlsrec.AppendKeyUpdate(nil, false)) {
		t.Fatalf("engine side opened %d %x %v, want the client's KeyUpdate", typ, content, err)
	}
	ho.Read.Update()
	open("frame5")
	// The front sent nothing more and did not close the socket.
	tap.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := tap.Conn.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client socket: %d bytes / %v after the takeover", n, err)
	}
}

// Takeover is refused once the input has ended or failed, or our side is
// closed; the client then gets the usual end.
func TestConn13TakeoverRefused(t *testing.T) {
	ff := startFront13(t)
	for _, tt := range []struct {
		name string
		end  func(t *testing.T, tc *tls.Conn, d *drv)
	}{
		{"close_notify", func(t *testing.T, tc *tls.Conn, d *drv) {
			tc.CloseWrite()
			d.do(t, func(a *Conn13) { a.Peek(1) })
		}},
		{"CloseWrite", func(t *testing.T, tc *tls.Conn, d *drv) {
			d.do(t, func(a *Conn13) { a.CloseWrite() })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := dialTLS(t, ff.addr(), nil)
			d := ff.accept(t)
			fails := ff.fails.Get()
			tt.end(t, tc, d)
			ok := true
			d.do(t, func(a *Conn13) {
				a.AddCloseCallback(func(netpoll.Connection) error { _, ok = a.Takeover(); return nil })
				a.Close()
			})
			d.ret(t)
			wait(t, d.closed, "the close callbacks")
			if ok || ff.fails.Get() != fails+1 {
				t.Fatalf("Takeover: %v (refusals counted: %d)", ok, ff.fails.Get()-fails)
			}
			if _, err := readToEnd(t, tc); err != nil {
				t.Fatalf("client: %v, want close_notify", err)
			}
		})
	}
}
