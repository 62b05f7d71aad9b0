package tlsrec

// Differential tests against real TLS 1.3 peers.
//
// The client is always crypto/tls (tls.Client) over a tap: a net.Conn
// wrapper that records every byte the client writes and reads, and that can
// later stop forwarding the socket and feed the client records we seal
// ourselves. The server is either crypto/tls (tls.Server) or
// `openssl s_server`.
//
// How the three suites are forced: Go does not let a Config choose TLS 1.3
// suites (CipherSuites is ignored for 1.3) and a Go client always offers all
// three, so a Go-Go pair negotiates AES-128-GCM on AES hardware (ChaCha20
// otherwise). The server picks the suite, so `openssl s_server
// -ciphersuites <one suite>` makes the Go client use exactly that suite; the
// test checks ConnectionState().CipherSuite. openssl also supplies what Go
// cannot: KeyUpdate on command (the "K" stdin command: update_requested, so
// crypto/tls answers with its own KeyUpdate) and padded records
// (-record_padding). The openssl cases are skipped only when no openssl
// binary is found.
//
// Each case:
//  1. handshake; the client's KeyLogWriter gives CLIENT_TRAFFIC_SECRET_0 and
//     SERVER_TRAFFIC_SECRET_0;
//  2. application data both ways (a full 16384-byte record from the client,
//     several writes of various sizes), a server KeyUpdate when the server
//     can send one;
//  3. every recorded record is re-opened with Half: per direction, the first
//     record that opens at seq 0 under the traffic secret starts the
//     application keys (earlier ones are handshake-key or plaintext records);
//     after it every record must open. Tickets count on the server's
//     direction; KeyUpdates trigger Update. The plaintext must equal what was
//     sent;
//  4. the tap switches the client's input to records sealed by our server
//     Half (continuing its seq): data, a zero-length record, a full record,
//     a KeyUpdate with update_requested (crypto/tls must answer with its own
//     KeyUpdate, which we open, and keep reading data sealed after our
//     Update), more data, and close_notify (the client's Read returns
//     io.EOF).

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const ioTimeout = 10 * time.Second

// tap records the client's traffic and can swap its input for injected bytes.
type tap struct {
	net.Conn
	feed chan []byte
	done chan struct{}
	rest []byte

	mu        sync.Mutex
	in, out   []byte // bytes read from / written to the socket (input only while forwarding)
	injecting bool
}

func newTap(c net.Conn) *tap {
	t := &tap{Conn: c, feed: make(chan []byte, 64), done: make(chan struct{})}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				t.mu.Lock()
				fwd := !t.injecting
				if fwd {
					t.in = append(t.in, buf[:n]...)
				}
				t.mu.Unlock()
				if fwd {
					select {
					case t.feed <- bytes.Clone(buf[:n]):
					case <-t.done:
						return
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return t
}

func (t *tap) Read(p []byte) (int, error) {
	if len(t.rest) == 0 {
		select {
		case b := <-t.feed:
			t.rest = b
		case <-t.done:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, t.rest)
	t.rest = t.rest[n:]
	return n, nil
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.out = append(t.out, p...)
	t.mu.Unlock()
	return t.Conn.Write(p)
}

func (t *tap) Close() error {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
	return t.Conn.Close()
}

func (t *tap) snapshot() (in, out []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.in), bytes.Clone(t.out)
}

// inject stops forwarding the socket and feeds b to the client in chunks.
func (t *tap) inject(b []byte, chunk int) {
	t.mu.Lock()
	t.injecting = true
	t.mu.Unlock()
	for len(b) > 0 {
		n := min(chunk, len(b))
		t.feed <- bytes.Clone(b[:n])
		b = b[n:]
	}
}

// waitFor polls cond until true or the timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// collector accumulates what a reader goroutine reads.
type collector struct {
	mu  sync.Mutex
	buf []byte
	err error
}

func (c *collector) run(r io.Reader) {
	b := make([]byte, 64<<10)
	for {
		n, err := r.Read(b)
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *collector) get() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf), c.err
}

func (c *collector) waitLen(t *testing.T, n int) []byte {
	t.Helper()
	var b []byte
	waitFor(t, fmt.Sprintf("%d bytes", n), func() bool {
		var err error
		b, err = c.get()
		if err != nil && len(b) < n {
			t.Fatalf("reader: %v after %d bytes", err, len(b))
		}
		return len(b) >= n
	})
	return b
}

// server is the peer under the Go client.
type server interface {
	addr() string
	send(t *testing.T, p []byte) // application data to the client
	keyUpdate(t *testing.T) bool // send KeyUpdate(update_requested); false if unsupported
	received() []byte            // application data read from the client so far
	close()
}

func selfSigned(t *testing.T) (tls.Certificate, []byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c, certPEM, keyPEM
}

// goServer is a crypto/tls server.
type goServer struct {
	ln   net.Listener
	conn chan *tls.Conn
	c    *tls.Conn
	rcv  collector
}

func startGoServer(t *testing.T) server {
	cert, _, _ := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &goServer{ln: ln, conn: make(chan *tls.Conn, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		if tc.Handshake() != nil {
			c.Close()
			return
		}
		go s.rcv.run(tc)
		s.conn <- tc
	}()
	return s
}

func (s *goServer) addr() string { return s.ln.Addr().String() }
func (s *goServer) conn1(t *testing.T) *tls.Conn {
	if s.c == nil {
		select {
		case s.c = <-s.conn:
		case <-time.After(ioTimeout):
			t.Fatal("server handshake")
		}
	}
	return s.c
}
func (s *goServer) send(t *testing.T, p []byte) {
	if _, err := s.conn1(t).Write(p); err != nil {
		t.Fatal(err)
	}
}
func (s *goServer) keyUpdate(*testing.T) bool { return false }
func (s *goServer) received() []byte          { b, _ := s.rcv.get(); return b }
func (s *goServer) close() {
	s.ln.Close()
	if s.c != nil {
		s.c.Close()
	}
}

// opensslServer is `openssl s_server`, driven through stdin (data and the
// K command) and stdout (received data, among its diagnostics).
type opensslServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   collector
	ad    string
}

func startOpenSSL(t *testing.T, suite string, padding int) server {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl binary")
	}
	_, certPEM, keyPEM := selfSigned(t)
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, certPEM, 0o600)
	os.WriteFile(kf, keyPEM, 0o600)
	args := []string{"s_server", "-accept", "127.0.0.1:0", "-cert", cf, "-key", kf,
		"-tls1_3", "-ciphersuites", suite, "-naccept", "1"}
	if padding > 0 {
		args = append(args, "-record_padding", fmt.Sprint(padding))
	}
	s := &opensslServer{cmd: exec.Command(bin, args...)}
	s.stdin, _ = s.cmd.StdinPipe()
	stdout, _ := s.cmd.StdoutPipe()
	s.cmd.Stderr = io.Discard
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.out.run(stdout)
	waitFor(t, "openssl ACCEPT line", func() bool {
		b, _ := s.out.get()
		for _, line := range strings.Split(string(b), "\n") {
			if a, ok := strings.CutPrefix(line, "ACCEPT "); ok {
				s.ad = strings.TrimSpace(a)
				return true
			}
		}
		return false
	})
	return s
}

func (s *opensslServer) addr() string { return s.ad }

// send writes p as one stdin chunk. s_server treats a chunk starting with
// Q, q, P or S (or r/R/k/K/c + newline) as a command, so the callers' data
// starts with '#'; chunks stay under PIPE_BUF so one read gets all of it.
func (s *opensslServer) send(t *testing.T, p []byte) {
	if len(p) > 4096 || p[0] != '#' {
		t.Fatal("bad openssl chunk")
	}
	if _, err := s.stdin.Write(p); err != nil {
		t.Fatal(err)
	}
}
func (s *opensslServer) keyUpdate(t *testing.T) bool {
	if _, err := s.stdin.Write([]byte("K\n")); err != nil {
		t.Fatal(err)
	}
	return true
}
func (s *opensslServer) received() []byte { b, _ := s.out.get(); return b }
func (s *opensslServer) close() {
	s.stdin.Close()
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// dirState re-opens one direction of recorded traffic.
type dirState struct {
	h          *Half
	started    bool
	data       []byte // application data content, concatenated
	nrec       int
	tickets    int
	keyUpdates []bool // request_update of each KeyUpdate seen
	maxContent int
	padded     int // records whose ciphertext was longer than needed
	pos        int // bytes of the stream consumed
}

// feed opens every complete record of stream[d.pos:].
func (d *dirState) feed(t *testing.T, stream []byte) {
	t.Helper()
	for {
		b := stream[d.pos:]
		n, ok, err := RecordLen(b)
		if !d.started && len(b) >= HeaderLen {
			// The initial ClientHello has legacy_record_version 0x0301,
			// which RecordLen (post-handshake only) refuses.
			n, ok, err = HeaderLen+(int(b[3])<<8|int(b[4])), true, nil
		}
		if err != nil {
			t.Fatalf("RecordLen at %d: %v", d.pos, err)
		}
		if !ok || len(b) < n {
			return
		}
		rec := bytes.Clone(b[:n])
		d.pos += n
		if !d.started && rec[0] != TypeApplicationData {
			continue // plaintext handshake record or change_cipher_spec
		}
		typ, c, err := d.h.Open(rec)
		if err != nil {
			if !d.started && err == ErrBadRecordMAC {
				// Before the application keys: a handshake-key record.
				continue
			}
			t.Fatalf("record %d (seq %d): %v", d.nrec, d.h.Seq(), err)
		}
		d.started = true
		d.nrec++
		if len(rec) > d.h.SealedLen(len(c)) {
			d.padded++
		}
		d.maxContent = max(d.maxContent, len(c))
		switch typ {
		case TypeApplicationData:
			d.data = append(d.data, c...)
		case TypeHandshake:
			for len(c) > 0 {
				mt, body, rest, err := NextHandshake(c)
				if err != nil {
					t.Fatalf("handshake message: %v", err)
				}
				switch mt {
				case HandshakeNewSessionTicket:
					d.tickets++
				case HandshakeKeyUpdate:
					req, err := ParseKeyUpdate(body)
					if err != nil {
						t.Fatal(err)
					}
					d.keyUpdates = append(d.keyUpdates, req)
					d.h.Update()
				default:
					t.Fatalf("unexpected handshake message %d", mt)
				}
				c = rest
			}
		case TypeAlert:
			t.Fatalf("unexpected alert %v", c)
		}
	}
}

func keyLogSecrets(t *testing.T, log []byte) (client, server []byte) {
	for _, line := range bytes.Split(log, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		label, _, secret, err := ParseKeyLogLine(line)
		if err != nil {
			t.Fatal(err)
		}
		switch label {
		case "CLIENT_TRAFFIC_SECRET_0":
			client = secret
		case "SERVER_TRAFFIC_SECRET_0":
			server = secret
		}
	}
	if client == nil || server == nil {
		t.Fatalf("key log without traffic secrets:\n%s", log)
	}
	return client, server
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) Bytes() []byte { s.mu.Lock(); defer s.mu.Unlock(); return bytes.Clone(s.b.Bytes()) }

func chunk(tag string, n int) []byte {
	b := randBytes(n)
	copy(b, "#"+tag)
	return b
}

func runInterop(t *testing.T, srv server, wantSuite uint16, wantPadded bool) {
	defer srv.close()
	raw, err := net.DialTimeout("tcp", srv.addr(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	tp := newTap(raw)
	var keylog syncBuf
	cl := tls.Client(tp, &tls.Config{
		InsecureSkipVerify:          true,
		MinVersion:                  tls.VersionTLS13,
		KeyLogWriter:                &keylog,
		DynamicRecordSizingDisabled: true,                            // a 16384-byte Write is one full record
		ClientSessionCache:          tls.NewLRUClientSessionCache(1), // else a Go server sends no tickets
	})
	defer cl.Close()
	cl.SetDeadline(time.Now().Add(4 * ioTimeout))
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	suite := cl.ConnectionState().CipherSuite
	if wantSuite != 0 && suite != wantSuite {
		t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(suite), tls.CipherSuiteName(wantSuite))
	}
	t.Logf("suite %s", tls.CipherSuiteName(suite))
	cs, ss := keyLogSecrets(t, keylog.Bytes())
	var rcv collector
	go rcv.run(cl)

	// Application data both ways.
	var sent, got []byte // client -> server, server -> client
	var writes [][]byte
	write := func(p []byte) {
		if _, err := cl.Write(p); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, p...)
		writes = append(writes, p)
	}
	serve := func(p []byte) {
		srv.send(t, p)
		got = append(got, p...)
		rcv.waitLen(t, len(got))
	}
	write([]byte("#hello"))
	serve(chunk("s1", 10))
	write(randBytes(MaxPlain))
	for _, n := range []int{1, 100, 5000, 20000} {
		write(randBytes(n))
	}
	serve(chunk("s2", 4000))
	serve(chunk("s3", 1))
	clientKU := false
	if n0, _ := tp.snapshot(); srv.keyUpdate(t) {
		// Wait for the KeyUpdate record to reach the client (which answers
		// with its own KeyUpdate) before more data, so that openssl reads
		// "K\n" alone.
		waitFor(t, "server KeyUpdate", func() bool { n1, _ := tp.snapshot(); return len(n1) > len(n0) })
		clientKU = true
		serve(chunk("after-ku", 300))
		write([]byte("#client-after-server-ku"))
	}
	// The server decrypted the same (openssl's stdout interleaves diagnostics
	// with the data, so compare write by write).
	waitFor(t, "server to read client data", func() bool {
		r := srv.received()
		for _, w := range writes {
			if !bytes.Contains(r, w) {
				return false
			}
		}
		return true
	})
	serve(chunk("marker", 7)) // the server is quiet from here

	// Re-open the recording.
	in, out := tp.snapshot()
	sd := &dirState{}
	cd := &dirState{}
	if sd.h, err = NewHalf(suite, ss, 0); err != nil {
		t.Fatal(err)
	}
	if cd.h, err = NewHalf(suite, cs, 0); err != nil {
		t.Fatal(err)
	}
	sd.feed(t, in)
	cd.feed(t, out)
	if sd.pos != len(in) || cd.pos != len(out) {
		t.Fatalf("partial records left: in %d/%d out %d/%d", sd.pos, len(in), cd.pos, len(out))
	}
	if !bytes.Equal(sd.data, got) {
		t.Fatalf("server->client plaintext differs (%d vs %d bytes)", len(sd.data), len(got))
	}
	if !bytes.Equal(cd.data, sent) {
		t.Fatalf("client->server plaintext differs (%d vs %d bytes)", len(cd.data), len(sent))
	}
	if sd.tickets == 0 {
		t.Error("no NewSessionTicket seen on the server's direction")
	}
	if wantPadded != (sd.padded > 0) {
		t.Errorf("%d padded server records, want padding %v", sd.padded, wantPadded)
	}
	if cd.maxContent != MaxPlain {
		t.Errorf("no full-size record from crypto/tls (max %d)", cd.maxContent)
	}
	wantKU := []bool(nil)
	if clientKU {
		wantKU = []bool{true}
		if len(cd.keyUpdates) != 1 || cd.keyUpdates[0] {
			t.Errorf("crypto/tls client KeyUpdates %v, want one answer with update_requested=0", cd.keyUpdates)
		}
	}
	if fmt.Sprint(sd.keyUpdates) != fmt.Sprint(wantKU) {
		t.Errorf("server KeyUpdates %v, want %v", sd.keyUpdates, wantKU)
	}
	t.Logf("server->client: %d records (%d tickets, %d padded, key updates %v); client->server: %d records (key updates %v)",
		sd.nrec, sd.tickets, sd.padded, sd.keyUpdates, cd.nrec, cd.keyUpdates)

	// Now seal server records ourselves, continuing the server's state, and
	// have crypto/tls read them.
	var inj []byte
	var want []byte
	add := func(typ uint8, p []byte) {
		inj = sd.h.Seal(inj, typ, p)
		if typ == TypeApplicationData {
			want = append(want, p...)
		}
	}
	add(TypeApplicationData, []byte("injected-1"))
	add(TypeApplicationData, nil) // zero-length application data
	add(TypeApplicationData, randBytes(MaxPlain))
	add(TypeHandshake, AppendKeyUpdate(nil, true))
	sd.h.Update()
	add(TypeApplicationData, []byte("injected-after-our-ku"))
	for i := 0; i < 3; i++ {
		add(TypeApplicationData, randBytes(1000+i))
	}
	base := len(got)
	tp.inject(inj, 777) // arbitrary chunking: records span reads
	b := rcv.waitLen(t, base+len(want))
	if !bytes.Equal(b[base:], want) {
		t.Fatal("crypto/tls read different data from our sealed records")
	}
	// crypto/tls answered our KeyUpdate with its own; its next data must open
	// after the Update.
	write([]byte("#client-after-our-ku"))
	waitFor(t, "client records after our KeyUpdate", func() bool {
		_, out := tp.snapshot()
		cd.feed(t, out)
		return bytes.Equal(cd.data, sent)
	})
	n := len(cd.keyUpdates)
	if n == 0 || cd.keyUpdates[n-1] {
		t.Fatalf("no KeyUpdate(update_not_requested) from crypto/tls after ours: %v", cd.keyUpdates)
	}
	// The real server also accepted the client's KeyUpdate and data.
	waitFor(t, "server to read data after the client's KeyUpdate", func() bool {
		return bytes.Contains(srv.received(), []byte("#client-after-our-ku"))
	})
	// close_notify ends the client's reads with io.EOF.
	tp.inject(sd.h.Seal(nil, TypeAlert, AppendAlert(nil, AlertLevelWarning, AlertCloseNotify)), 3)
	waitFor(t, "io.EOF", func() bool { _, err := rcv.get(); return err != nil })
	if _, err := rcv.get(); !errors.Is(err, io.EOF) {
		t.Fatalf("client read after close_notify: %v", err)
	}
}

func TestInteropGoServer(t *testing.T) {
	runInterop(t, startGoServer(t), 0, false)
}

func TestInteropOpenSSL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		suite   uint16
		padding int
	}{
		{"TLS_AES_128_GCM_SHA256", tls.TLS_AES_128_GCM_SHA256, 0},
		{"TLS_AES_256_GCM_SHA384", tls.TLS_AES_256_GCM_SHA384, 512},
		{"TLS_CHACHA20_POLY1305_SHA256", tls.TLS_CHACHA20_POLY1305_SHA256, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runInterop(t, startOpenSSL(t, tc.name, tc.padding), tc.suite, tc.padding > 0)
		})
	}
}
