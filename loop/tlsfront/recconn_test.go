package tlsfront

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

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
