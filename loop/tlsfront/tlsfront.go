// Package tlsfront terminates TLS in front of wsgate's plain path.
//
// netpoll has no TLS, and the tunnel engine relays raw sockets. Kernel TLS
// (crypto/tls handshake, then the negotiated keys installed with
// setsockopt(SOL_TLS) so that the socket carries plaintext for netpoll and
// the engine) would keep tunnels on the engine, but it is not available
// here: the kernel has no "tls" ULP (setsockopt(TCP_ULP, "tls") fails
// with ENOENT, /proc/net/tls_stat is absent, no modules to load), and
// crypto/tls exports no traffic keys (they would have to be rebuilt from
// the key log, and TLS 1.3 post-handshake messages and KeyUpdate handled
// by hand). A goroutine-per-connection copy of the whole exchange and
// tunnel logic would be a second proxy to keep in step.
//
// So TLS is terminated in front of the plain path, by a goroutine per TLS
// connection that does the handshake with crypto/tls and then feeds the
// plain path's own code, in one of two ways:
//
//   - TLS 1.3 (whose records are ours, below): the front's goroutine runs
//     the reactor's own handlers (Config.Prepare and Config.Request, what
//     netpoll calls for a plain connection) on Conn13 (conn13.go), a
//     netpoll.Connection over the client's socket and wsgate's record
//     layer (tunnel/tlsrec): records are opened when the exchange wants
//     more input and sealed on Flush. Same exchange code, no inner socket,
//     one goroutine: https keep-alive requests cost 0.61× HAProxy's CPU.
//   - TLS 1.2 (and TLS 1.3 whose keys are not known, or a front without
//     the hooks): the goroutine dials a private plain listener (a Unix
//     socket in the abstract namespace, served by netpoll exactly like
//     --listen) and relays plaintext both ways through crypto/tls
//     (frontConn), a goroutine per direction.
//
// Either stream starts with a PROXY v2 header (loop/proxyproto) naming the
// real client, with the PP2_TYPE_SSL TLV (so X-Forwarded-Proto is https and
// --redirect-https leaves it alone) and a random per-process secret TLV, so
// that no other local process can pose as the front (on the inner socket),
// and, for a Conn13, its connection id. Every feature of the plain path
// (limits, origins, stickiness, access log, verified upgrades, the tunnel
// engine) works unchanged.
//
// On the relay every message crosses the inner socket, so it is built to
// cost little per message: the inner socket is a Unix one, not TCP on
// 127.0.0.1 (no loopback TCP stack per write, no handshake or TIME_WAIT
// per connection), and reads and writes are raw system calls made inside
// the runtime poller's wait (sysconn.go); BENCHMARKS.md has what each
// step saved. The relay buffers are pooled and held only while bytes are
// in flight.
//
// TLS 1.3 records are wsgate's own (tunnel/tlsrec), not crypto/tls's,
// once the handshake is done, so that a connection that becomes a wss
// tunnel can be handed to the tunnel engine with its exact record state
// (Conn13.Takeover, from the close callback of a verified upgrade): the
// tunnel then holds the client's socket and the backend's (2 files) and
// no goroutine, like a plain one. The route to the state, without a fork
// of crypto/tls:
//
//   - The traffic secrets come from tls.Config.KeyLogWriter (one keyLog per
//     Front): CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0 lines,
//     filed under the client random, which the connection reads from its
//     own ClientHello and registers first (two connections with one random
//     both fall back to crypto/tls). The entry is removed after the
//     handshake, failed or not. The suite is ConnectionState's.
//   - The client's direction starts at sequence 0: crypto/tls has opened
//     no application record when a server's Handshake returns, since the
//     server's handshake ends at the client's Finished, and crypto/tls
//     has no byte past that record: the socket it reads (recConn) never
//     returns bytes beyond the end of the current record. What the client
//     sent behind its Finished stays in recConn's buffer, and Conn13
//     starts with it.
//   - Our direction starts after the records crypto/tls wrote under the
//     application key (its session tickets, in the server's flight):
//     recConn keeps a copy of each protected record written during the
//     handshake, and those that authenticate under the server's
//     application secret are counted (records under the handshake key
//     fail). The count is by authentication, not by guess. Session tickets
//     stay on: resumption works.
//
// Relayed connections (TLS 1.2 and the rest) keep crypto/tls for their
// records, and their tunnels go through the inner socket (4 files, two
// goroutines). (An earlier relay of TLS 1.3 records by tlsrec over the
// inner socket, whose connections could be handed over too, went with
// Conn13: wsgate always sets the hooks.)
//
// The front knows nothing of the reactor that serves its inner listener:
// Config gives it the timeouts, the PROXY header's secret, the admission
// check and where to log and count.
package tlsfront

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/netpoll"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/proxyproto"
	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// Config is what a Front needs from its owner.
type Config struct {
	Listen []string    // TLS listener addresses
	Certs  []CertFiles // the first is the default, others chosen by SNI

	// ListenFunc opens a listener (the owner's: SO_REUSEPORT and the like).
	ListenFunc func(addr string) (net.Listener, error)
	// HeaderTimeout bounds a handshake; ResponseTimeout a record that
	// trickles in and a write that waits.
	HeaderTimeout, ResponseTimeout time.Duration
	// Secret goes in the PROXY v2 header's TypeWsgate TLV of every inner
	// connection, so that the inner listener can tell the front from
	// anyone else.
	Secret []byte
	// Admit says whether one more connection may be taken, given how many
	// are still in their handshake; false closes it at once.
	Admit func(handshaking int64) bool
	// Logf logs; OutOfFiles logs running out of files (rate-limited by the owner).
	Logf       func(format string, args ...any)
	OutOfFiles func(what string, err error)
	// Counters, each optional.
	Refused, Handshakes, HandshakeErrs *metrics.Counter
	// Connections by version and by whose code handles their records
	// after the handshake (crypto/tls: "front"; tunnel/tlsrec: "engine").
	TLS12, TLS13Front, TLS13Engine *metrics.Counter
	// Takeovers and takeovers refused (Takeover's ok).
	Takeovers, TakeoverFails *metrics.Counter

	// Prepare and Request, when set, serve the HTTP phase of TLS 1.3
	// connections whose records are ours in the front's goroutine, with
	// no inner socket (Conn13): they are what netpoll would call for a
	// connection of the inner listener (its OnPrepare and OnRequest).
	Prepare func(conn netpoll.Connection) context.Context
	Request func(ctx context.Context, conn netpoll.Connection) error
}

// CertFiles is one --tls-cert/--tls-key pair of PEM files.
type CertFiles struct{ Cert, Key string }

// certSet is the certificates in use, replaced as a whole on reload.
type certSet struct {
	byName map[string]*tls.Certificate // lower-case DNS name (or "*.suffix") → certificate
	def    *tls.Certificate
}

func loadCerts(files []CertFiles) (*certSet, error) {
	set := &certSet{byName: map[string]*tls.Certificate{}}
	for _, f := range files {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s --tls-key %s: %w", f.Cert, f.Key, err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s: %w", f.Cert, err)
		}
		c.Leaf = leaf
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := set.byName[n]; !dup { // the first pair naming a host wins
				set.byName[n] = &c
			}
		}
		if set.def == nil {
			set.def = &c
		}
	}
	if set.def == nil {
		return nil, errors.New("--tls-listen needs at least one --tls-cert/--tls-key pair")
	}
	return set, nil
}

// pick chooses by SNI: the exact name, then a wildcard for its parent, then
// the default (first) certificate.
func (cs *certSet) pick(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c := cs.byName[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := cs.byName["*"+name[i:]]; c != nil {
			return c
		}
	}
	return cs.def
}

// LoadCerts loads and checks every pair as Open does, without keeping them
// (for --check).
func LoadCerts(files []CertFiles) error {
	_, err := loadCerts(files)
	return err
}

// Front accepts TLS connections and relays them to the inner listener.
type Front struct {
	cfg    Config         // immutable
	lns    []net.Listener // immutable after openFront
	inner  net.Listener   // a Unix socket in the abstract namespace, served by netpoll; immutable
	innerA *net.UnixAddr  // immutable
	files  []CertFiles    // immutable
	conf   *tls.Config    // immutable; reads certs

	keys   keyLog   // the tls.Config's KeyLogWriter (recconn.go)
	live   sync.Map // connection id → *Conn13, until it is closed
	nextID atomic.Uint64

	certs       atomic.Pointer[certSet]
	handshaking atomic.Int64 // connections accepted and not yet relayed
	relaying    atomic.Int64 // connections being relayed (or served: Conn13)
	closed      atomic.Bool
	draining    atomic.Bool // Drain: Conn13s close once idle
}

// Open sets up a front for cfg: its certificates, its listeners and the
// inner listener its plaintext is to be served on (Inner).
func Open(cfg Config) (*Front, error) {
	f := &Front{cfg: cfg, files: cfg.Certs}
	set, err := loadCerts(cfg.Certs)
	if err != nil {
		return nil, err
	}
	f.certs.Store(set)
	f.conf = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return f.certs.Load().pick(h.ServerName), nil
		},
		KeyLogWriter: &f.keys,
	}
	// Private to this process: an abstract name (no file to clean up) that
	// other processes cannot guess, and the PROXY header's secret TLV.
	var nonce [8]byte
	rand.Read(nonce[:])
	f.innerA = &net.UnixAddr{Net: "unix", Name: fmt.Sprintf("@wsgate-tls-inner-%d-%x", os.Getpid(), nonce)}
	inner, err := net.ListenUnix("unix", f.innerA)
	if err != nil {
		return nil, fmt.Errorf("tls: inner listener: %w", err)
	}
	f.inner = inner
	listen := cfg.ListenFunc
	if listen == nil {
		listen = func(a string) (net.Listener, error) { return net.Listen("tcp", a) }
	}
	for _, addr := range cfg.Listen {
		ln, err := listen(addr)
		if err != nil {
			f.closeListeners()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		f.lns = append(f.lns, ln)
	}
	return f, nil
}

// Inner is the listener the front's plaintext arrives on, for the owner to serve.
func (f *Front) Inner() net.Listener { return f.inner }

// IsInner reports whether a is the inner listener's address (a connection
// accepted there came through the front).
func (f *Front) IsInner(a net.Addr) bool {
	u, ok := a.(*net.UnixAddr)
	return ok && u.Name == f.innerA.Name
}

// Listeners are the TLS listeners, in Config order.
func (f *Front) Listeners() []net.Listener { return f.lns }

// Addrs are the TLS listeners' addresses, in Config order.
func (f *Front) Addrs() []net.Addr {
	a := make([]net.Addr, len(f.lns))
	for i, ln := range f.lns {
		a[i] = ln.Addr()
	}
	return a
}

// Start starts accepting on the TLS listeners.
func (f *Front) Start() {
	for _, ln := range f.lns {
		go f.acceptLoop(ln)
	}
}

// Reload re-reads every certificate pair. New handshakes use the new set at
// once; connections already up keep theirs. On any error the running set
// stays.
func (f *Front) Reload() error {
	set, err := loadCerts(f.files)
	if err != nil {
		return err
	}
	f.certs.Store(set)
	return nil
}

// Close stops accepting and closes the listeners (the inner one too).
// Relays in progress go on until their inner connections end.
func (f *Front) Close() {
	f.closed.Store(true)
	f.closeListeners()
}

func (f *Front) closeListeners() {
	for _, ln := range f.lns {
		ln.Close()
	}
	f.inner.Close()
}

// acceptLoop accepts TLS connections. Out of files (EMFILE/ENFILE) or
// another temporary error, it backs off (5 ms doubling to 1 s) instead of
// spinning; past --max-conns a connection is closed at once and counted.
func (f *Front) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if outOfFiles(err) {
				f.outOfFiles("accepting a TLS connection", err)
			} else {
				f.logf("tls listener %s: %v", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if f.cfg.Admit != nil && !f.cfg.Admit(f.handshaking.Load()) {
			inc(f.cfg.Refused)
			c.Close()
			continue
		}
		f.handshaking.Add(1)
		go f.serve(c.(*net.TCPConn))
	}
}

// serve runs one TLS connection: handshake (bounded by HeaderTimeout),
// then, for TLS 1.3 whose records can be ours and a front with the hooks,
// Conn13 (serve13); else the relay to the inner listener by crypto/tls
// (frontConn).
func (f *Front) serve(c *net.TCPConn) {
	cs, err := newSysConn(c)
	if err != nil {
		f.handshaking.Add(-1)
		c.Close()
		return
	}
	rc := newRecConn(cs, &f.keys)
	tc := tls.Server(rc, f.conf)
	c.SetDeadline(time.Now().Add(f.cfg.HeaderTimeout))
	err = tc.Handshake()
	c.SetDeadline(time.Time{})
	if err != nil {
		rc.forget()
		rc.release()
		f.handshaking.Add(-1)
		inc(f.cfg.HandshakeErrs)
		c.Close()
		return
	}
	inc(f.cfg.Handshakes)
	st := tc.ConnectionState()
	var rd, wr *tlsrec.Half
	ok13 := false
	if f.cfg.Request != nil {
		rd, wr, ok13 = rc.handover13(st)
	} else {
		rc.forget() // crypto/tls keeps the records
	}
	switch {
	case ok13:
		inc(f.cfg.TLS13Engine)
	case st.Version == tls.VersionTLS13:
		inc(f.cfg.TLS13Front)
	default:
		inc(f.cfg.TLS12)
	}
	if ok13 {
		f.serve13(c, cs, rd, wr, rc)
		return
	}
	rc.passthrough = true // crypto/tls reads on, through what is buffered
	ic, err := dialInner(f.innerA)
	f.handshaking.Add(-1)
	if err != nil {
		if outOfFiles(err) {
			f.outOfFiles("relaying a TLS connection", err)
			f.answer503(tc)
		} else {
			f.logf("tls: inner connection: %v", err)
		}
		rc.release()
		c.Close()
		return
	}
	is, err := newSysConn(ic)
	if err != nil {
		rc.release()
		ic.Close()
		c.Close()
		return
	}
	hdr := make([]byte, 0, 80)
	hdr = proxyproto.AppendV2Conn(hdr, c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort(), true, f.cfg.Secret, 0)
	if _, err := is.Write(hdr); err != nil {
		rc.release()
		ic.Close()
		c.Close()
		return
	}
	fc := newFrontConn(f, tc, c, cs, ic, is)
	f.relaying.Add(1)
	// The relay runs on fresh goroutines, not on this one, whose stack grew
	// during the handshake (crypto).
	go func() {
		defer f.relaying.Add(-1)
		fc.relay()
	}()
}

// serve13 serves a TLS 1.3 connection whose records are ours in this
// process's reactor code directly (Conn13), on a fresh goroutine.
func (f *Front) serve13(c *net.TCPConn, cs *sysConn, rd, wr *tlsrec.Half, rc *recConn) {
	id := f.nextID.Add(1)
	var hb [80]byte
	hdr := proxyproto.AppendV2Conn(hb[:0], c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort(), true, f.cfg.Secret, id)
	a := newConn13(f, id, c, cs, rd, wr, rc, hdr)
	f.live.Store(id, a)
	f.relaying.Add(1)
	a.ctx = f.cfg.Prepare(a) // counted as the reactor's before it stops counting as handshaking
	f.handshaking.Add(-1)
	// A fresh goroutine, not this one, whose stack grew during the
	// handshake (crypto).
	go func() {
		defer f.relaying.Add(-1)
		a.serve()
	}()
}

// Drain closes the Conn13s that are idle, and the others once their
// exchange ends, until none is left or ctx is done.
func (f *Front) Drain(ctx context.Context) {
	f.draining.Store(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		left := 0
		f.live.Range(func(_, v any) bool {
			a := v.(*Conn13)
			left++
			if !a.busy.Load() {
				a.Close()
			}
			return true
		})
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dialInner connects to the inner listener; testDialInner replaces it in
// tests that make it run out of files.
func dialInner(a *net.UnixAddr) (*net.UnixConn, error) {
	if d := testDialInner.Load(); d != nil {
		return (*d)(a)
	}
	return net.DialUnix("unix", nil, a)
}

var testDialInner atomic.Pointer[func(*net.UnixAddr) (*net.UnixConn, error)]

// answer503 tells a client that got through the handshake that this
// process is out of files.
func (f *Front) answer503(tc *tls.Conn) {
	tc.SetWriteDeadline(time.Now().Add(time.Second))
	b := bytebufferpool.Get()
	b.B = http1.AppendRetryAfter(b.B, 503, 1, true)
	tc.Write(b.B)
	bytebufferpool.Put(b)
	tc.Close()
}

// frontFinTimeout bounds how long one direction of a relay stays open after
// the other has ended cleanly (the tunnel engine's --tunnel-fin-timeout
// default).
const frontFinTimeout = 30 * time.Second

// relayBufs hold plaintext while it is in flight: 16 KiB is a TLS record's
// largest plaintext, so one Read empties a record.
var relayBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// frontConn is one relayed TLS connection.
type frontConn struct {
	f     *Front
	tc    *tls.Conn     // over a sysConn of c
	c     *net.TCPConn  // the client's socket
	cs    *sysConn      // c's raw reads and writes, under tc
	ic    *net.UnixConn // the inner connection
	is    *sysConn      // ic's raw reads and writes
	finAt atomic.Int64  // unix nanoseconds: read deadline of c once the inner side ended; 0 until then
	once  sync.Once

	// Bound once, so that waiting and reading allocate nothing:
	// peek finds whether c has input without reading it; innerRead reads ic into a
	// pooled buffer taken only once there is input (ibuf, in, ierr).
	peek      func(fd uintptr) bool
	peekB     [1]byte
	innerRead func(fd uintptr) bool
	ibuf      *[]byte
	in        int
	ierr      error
}

func newFrontConn(f *Front, tc *tls.Conn, c *net.TCPConn, cs *sysConn, ic *net.UnixConn, is *sysConn) *frontConn {
	fc := &frontConn{f: f, tc: tc, c: c, cs: cs, ic: ic, is: is}
	fc.peek = func(fd uintptr) bool { return rawsys.Peek(int(fd), fc.peekB[:]) }
	fc.innerRead = func(fd uintptr) bool {
		bp := relayBufs.Get().(*[]byte)
		n, err := rawsys.Read(int(fd), *bp)
		if err == unix.EAGAIN {
			relayBufs.Put(bp) // no buffer held while waiting
			return false
		}
		fc.ibuf, fc.in, fc.ierr = bp, n, err
		return true
	}
	return fc
}

// relay copies plaintext both ways until both directions end or one
// fails; then it closes both connections.
func (fc *frontConn) relay() {
	done := make(chan struct{})
	go func() { // inner → client
		defer close(done)
		if fc.innerToClient() {
			fc.tc.CloseWrite() // close_notify
			fc.c.CloseWrite()
			at := time.Now().Add(frontFinTimeout)
			fc.finAt.Store(at.UnixNano())
			fc.c.SetReadDeadline(at)
		} else {
			fc.closeBoth()
		}
	}()
	if fc.clientToInner() {
		fc.ic.CloseWrite()
		fc.ic.SetReadDeadline(time.Now().Add(frontFinTimeout))
	} else {
		fc.closeBoth()
	}
	<-done
	fc.closeBoth()
}

func (fc *frontConn) closeBoth() {
	fc.once.Do(func() {
		fc.ic.Close()
		fc.c.SetWriteDeadline(time.Now().Add(time.Second))
		fc.tc.Close()
	})
}

// innerToClient relays until the inner connection ends; true when it ended
// cleanly (EOF). It waits for input with no buffer held: the buffer is
// taken inside the wait, once a read finds bytes.
func (fc *frontConn) innerToClient() bool {
	for {
		if err := fc.is.rc.Read(fc.innerRead); err != nil {
			return false
		}
		bp, n, err := fc.ibuf, fc.in, fc.ierr
		fc.ibuf = nil
		if err == nil && n == 0 {
			err = io.EOF
		}
		if n > 0 {
			fc.tc.SetWriteDeadline(time.Now().Add(fc.f.cfg.ResponseTimeout))
			if _, werr := fc.tc.Write((*bp)[:n]); werr != nil {
				relayBufs.Put(bp)
				return false
			}
		}
		relayBufs.Put(bp)
		if err != nil {
			return err == io.EOF
		}
	}
}

// clientToInner relays until the client ends; true when it ended cleanly
// (close_notify or EOF). Between records it holds no buffer: it waits for
// the socket to turn readable, reads a record (a record that trickles in
// is bounded by ResponseTimeout), and then empties what crypto/tls has
// already buffered with reads that may not wait (a deadline in the past;
// crypto/tls keeps a partial record across such a timeout).
func (fc *frontConn) clientToInner() bool {
	c, rc := fc.c, fc.cs.rc
	// The handshake may have read records behind the client's Finished (a
	// request sent at once): empty crypto/tls's buffer before the first wait.
	past := true
	c.SetReadDeadline(aLongTimeAgo)
	for {
		bp := relayBufs.Get().(*[]byte)
		for {
			n, err := fc.tc.Read(*bp)
			if n > 0 {
				fc.ic.SetWriteDeadline(time.Now().Add(fc.f.cfg.ResponseTimeout))
				if _, werr := fc.is.Write((*bp)[:n]); werr != nil {
					relayBufs.Put(bp)
					return false
				}
			}
			if err != nil {
				if past && isTimeout(err) {
					break // nothing more buffered: wait for the socket again
				}
				relayBufs.Put(bp)
				return err == io.EOF
			}
			if !past {
				c.SetReadDeadline(aLongTimeAgo)
				past = true
			}
		}
		c.SetReadDeadline(fc.deadline(time.Time{}))
		relayBufs.Put(bp)
		if err := rc.Read(fc.peek); err != nil { // waits with no buffer
			return false
		}
		c.SetReadDeadline(fc.deadline(time.Now().Add(fc.f.cfg.ResponseTimeout)))
		past = false
	}
}

// deadline is d, or the fin deadline once the inner side has ended.
func (fc *frontConn) deadline(d time.Time) time.Time {
	if at := fc.finAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return d
}

var aLongTimeAgo = time.Unix(1, 0)

func (f *Front) logf(format string, args ...any) {
	if f.cfg.Logf != nil {
		f.cfg.Logf(format, args...)
	}
}

func (f *Front) outOfFiles(what string, err error) {
	if f.cfg.OutOfFiles != nil {
		f.cfg.OutOfFiles(what, err)
		return
	}
	f.logf("out of file descriptors %s: %v", what, err)
}

func inc(c *metrics.Counter) {
	if c != nil {
		c.Inc()
	}
}

// outOfFiles reports whether err is this process (or the system) running
// out of file descriptors.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
