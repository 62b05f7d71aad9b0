package loop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// upConn is a connection to a backend. It belongs to one exchange at a time,
// or to its backend's idle pool.
type upConn struct {
	c      upSocket
	raw    syscall.RawConn
	b      *balancer.Backend
	idleAt time.Time // when it entered the idle pool
	// deadline is what armDeadline last set for reads and writes (others
	// may have moved the read deadline later since, never earlier).
	deadline time.Time
	reused   bool // came from the idle pool (it may have gone stale)

	// peek is check's system call, bound once per connection so that a
	// check allocates nothing; peekN, peekErr and peekBuf are its results
	// and buffer, used only by the exchange that owns uc.
	peek    func(fd uintptr)
	peekN   int
	peekErr error
	peekBuf [1]byte

	// reply is roundTrip's callback, bound once per connection like peek;
	// the reply fields are its arguments and results.
	reply     func(fd uintptr) bool
	replyReq  []byte // still to write; nil once written
	replySent int
	replyBuf  []byte
	replyN    int
	replyErr  error // of the write while replyReq is set, else of the read
}

// upSocket is a connection to a backend: an *os.File from dialRaw, or a
// *net.TCPConn where the address is not an IP literal.
type upSocket interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	Close() error
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// upstreams holds an idle keep-alive pool per backend.
type upstreams struct {
	maxIdle int            // immutable
	m       *serverMetrics // immutable
	idleFor time.Duration  // immutable
	dialer  net.Dialer     // immutable after init

	mu    sync.Mutex // guards pools
	pools map[*balancer.Backend][]*upConn

	owned atomic.Int64 // idle connections clients own (keepOwn), all together
}

func (u *upstreams) init(maxIdle int, idleFor time.Duration, m *serverMetrics) {
	u.maxIdle, u.idleFor, u.m = maxIdle, idleFor, m
	// No TCP keep-alive probes to backends (four setsockopt calls on every
	// dial): a pooled connection is checked before use, and a tunnel has
	// its own idle timeout.
	u.dialer.KeepAlive = -1
	u.pools = make(map[*balancer.Backend][]*upConn)
}

// get returns a pooled connection to b that is still open and silent
// (usable), or dials one.
//
// Every pooled connection is checked before it is reused, however briefly
// it was idle: a byte a backend sent unasked (a second response, the answer
// to a request smuggled in a body the backend parsed differently) would
// otherwise be read as the answer to the next request, from any client.
// The check is one recvfrom(MSG_PEEK); BENCHMARKS.md has its cost.
//
// With tunnels set (a WebSocket handshake whose socket may become a
// tunnel), a new connection is dialed onto the engine's loop (pending.go),
// and first is sent with its connect (dial).
func (u *upstreams) get(b *balancer.Backend, connectTimeout time.Duration, tunnels *tunnel.Engine, first []byte) (*upConn, error) {
	now := time.Now()
	for {
		u.mu.Lock()
		idle := u.pools[b]
		n := len(idle)
		if n == 0 {
			u.mu.Unlock()
			break
		}
		uc := idle[n-1] // LIFO: the most recently used is the least likely stale
		idle[n-1] = nil
		u.pools[b] = idle[:n-1]
		u.mu.Unlock()
		if uc.reusable(now, u.idleFor, u.m) {
			return uc, nil
		}
		uc.c.Close()
	}
	return u.dial(b, connectTimeout, tunnels, first)
}

// reusable reports whether an idle connection may carry another request:
// idle for less than idleFor, still open, and with nothing unread. It marks
// a connection it accepts as reused; one it refuses is counted (bytes sent
// unasked are an upstream error) and must be closed.
func (uc *upConn) reusable(now time.Time, idleFor time.Duration, m *serverMetrics) bool {
	if now.Sub(uc.idleAt) >= idleFor {
		return false
	}
	switch uc.check() {
	case idleSilent:
		uc.reused = true
		return true
	case idleUnsolicited:
		m.upstreamError(upUnsolicited)
	default:
		m.idleClosed.Inc()
	}
	return false
}

// dial opens a new connection to b: dialPending (with tunnels) or dialRaw
// for an IP address, net.Dialer for a name.
//
// first, when set, is a bodiless request's complete head: dialPending
// sends it right after the connect, in place of a system call that would
// only ask whether the connect is done, and uc.headSent says how much of
// it went. The other dials leave it to the exchange (headSent 0).
func (u *upstreams) dial(b *balancer.Backend, connectTimeout time.Duration, tunnels *tunnel.Engine, first []byte) (*upConn, error) {
	var c upSocket
	if ap, err := netip.ParseAddrPort(b.Addr()); err == nil && ap.Addr().Zone() == "" {
		if tunnels != nil {
			ps, err := dialPending(tunnels, ap, b.Addr(), connectTimeout, first)
			if err != nil {
				return nil, err
			}
			uc, err := newUpConn(ps, b)
			if err != nil {
				ps.Close()
			}
			return uc, err
		}
		f, err := dialRaw(ap, b.Addr(), connectTimeout)
		if err != nil {
			return nil, err
		}
		c = f
	} else {
		d := u.dialer
		d.Timeout = connectTimeout
		nc, err := d.Dial("tcp", b.Addr())
		if err != nil {
			return nil, err
		}
		c = nc.(*net.TCPConn)
	}
	uc, err := newUpConn(c, b)
	if err != nil {
		c.Close()
		return nil, err
	}
	return uc, nil
}

// headSent returns how much of the request head dial sent with the connect.
func (uc *upConn) headSent() int {
	if ps := uc.pendingOf(); ps != nil {
		return ps.sent
	}
	return 0
}

// newUpConn wraps a connection to b.
func newUpConn(c upSocket, b *balancer.Backend) (*upConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	uc := &upConn{c: c, raw: raw, b: b}
	uc.peek = func(fd uintptr) {
		uc.peekN, uc.peekErr = rawsys.PeekN(int(fd), uc.peekBuf[:])
	}
	uc.reply = func(fd uintptr) bool {
		if req := uc.replyReq; req != nil {
			n, err := rawsys.Write(int(fd), req) // an empty req: no system call, the wait comes first
			uc.replySent = n
			if err != nil || n < len(req) {
				uc.replyErr = err
				return true // roundTrip finishes the write the ordinary way
			}
			uc.replyReq = nil
			return false // sent: wait for the answer
		}
		n, err := rawsys.Read(int(fd), uc.replyBuf)
		if err == unix.EAGAIN {
			return false
		}
		uc.replyN, uc.replyErr = n, err
		return true
	}
	return uc, nil
}

// roundTrip writes req and reads the first bytes of the answer into b.
// Unlike Write then Read, it waits for input before it reads: the answer
// cannot be there yet (a backend on loopback takes tens of microseconds),
// and Read's first attempt would be a read(2) that finds nothing, a system
// call per request. The write happens inside RawRead, after the runtime
// poller's readiness was reset for the wait, so the answer's edge, which
// comes after the write, is never lost (a wait begun after a separate
// Write could lose it: RawRead's reset drops an edge seen in between).
//
// What a pooled connection received while idle is not seen before the
// wait: the request's own effect wakes it. A backend that closed the
// connection answers the write with a reset (TestStalePooledConnection);
// one that answers the request is read as before. Only a backend that shut
// down its sending side and then ignores the request leaves it waiting,
// until the backend closes or the response timeout runs out (a 504 where
// Read would have seen the FIN at once and replayed the request); HTTP
// servers close idle keep-alive connections outright.
//
// An empty req (not nil) is a head already sent with the connect
// (dialPending): roundTrip only waits for the answer, and then reads it.
// A pendSock's wait ends for an answer that came before it too (the
// Pending keeps the event: tunnel.Pending.Wait), so none is lost; only a
// pendSock is ever given an empty req.
//
// Deadlines hold as for Read and Write. sendErr is the write's error;
// 0 bytes read is io.EOF.
func (uc *upConn) roundTrip(req, b []byte) (n int, sendErr, err error) {
	uc.replyReq, uc.replySent, uc.replyBuf, uc.replyN, uc.replyErr = req, 0, b, 0, nil
	err = uc.raw.Read(uc.reply)
	uc.replyBuf = nil
	if uc.replyReq != nil { // not all written: the rest, then an ordinary read
		uc.replyReq = nil
		if err == nil && (uc.replyErr == nil || uc.replyErr == unix.EAGAIN) {
			_, err = uc.c.Write(req[uc.replySent:])
		} else if err == nil {
			err = os.NewSyscallError("write", uc.replyErr)
		}
		if err != nil {
			return 0, err, nil
		}
		n, err = uc.c.Read(b)
		return n, nil, err
	}
	switch {
	case err != nil:
		return 0, nil, err
	case uc.replyErr != nil:
		return 0, nil, os.NewSyscallError("read", uc.replyErr)
	case uc.replyN == 0:
		return 0, nil, io.EOF
	}
	return uc.replyN, nil, nil
}

// put returns uc to its backend's idle pool, or closes it when the pool is
// full. Its deadline stays as the last exchange set it: nothing reads or
// writes a pooled connection before the next exchange sets a new one
// (alive peeks through Control, which ignores deadlines), and leaving it
// saves a timer operation per request.
func (u *upstreams) put(uc *upConn) {
	if uc.pendingOf() != nil { // a handshake's socket on the engine's loop is not pooled (pending.go)
		uc.c.Close()
		return
	}
	uc.idleAt = time.Now()
	u.mu.Lock()
	if u.pools != nil && len(u.pools[uc.b]) < u.maxIdle {
		u.pools[uc.b] = append(u.pools[uc.b], uc)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	uc.c.Close()
}

func (u *upstreams) closeAll() {
	u.mu.Lock()
	pools := u.pools
	u.pools = nil
	u.mu.Unlock()
	for _, idle := range pools {
		for _, uc := range idle {
			uc.c.Close()
		}
	}
}

// What check finds on an idle connection.
const (
	idleSilent      = iota // open, nothing to read: usable
	idleUnsolicited        // the backend sent bytes nobody asked for
	idleClosed             // the backend closed it (FIN) or it failed
)

// check looks at an idle connection without waiting and without taking
// anything: one non-blocking peek.
func (uc *upConn) check() int {
	uc.peekN, uc.peekErr = 0, nil
	if err := uc.raw.Control(uc.peek); err != nil {
		return idleClosed
	}
	switch {
	case uc.peekErr == unix.EAGAIN:
		return idleSilent
	case uc.peekErr == nil && uc.peekN > 0:
		return idleUnsolicited
	}
	return idleClosed
}

// takeFd returns a duplicate of uc's socket (non-blocking, close-on-exec) and
// closes uc; the duplicate keeps the connection open for the tunnel engine.
func (uc *upConn) takeFd() (int, error) {
	fd := -1
	var derr error
	err := uc.raw.Control(func(s uintptr) {
		fd, derr = rawsys.Dup(int(s))
	})
	uc.c.Close()
	if err == nil {
		err = derr
	}
	return fd, err
}

// outOfFiles reports whether err is this process (or the system) running
// out of file descriptors: a local condition that must not count against
// a backend's health, nor be retried on the next backend.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func (s *Server) logOutOfFiles(what string, err error) {
	now := time.Now().UnixNano()
	last := s.outOfFiles.last.Load()
	if now-last < int64(time.Second) || !s.outOfFiles.last.CompareAndSwap(last, now) {
		s.outOfFiles.suppressed.Add(1)
		return
	}
	more := ""
	if n := s.outOfFiles.suppressed.Swap(0); n > 0 {
		more = fmt.Sprintf(" (and %d more since the last line)", n)
	}
	s.cfg.Logf("out of file descriptors %s: %v: new connections get 503 until tunnels close; raise the open-file limit (ulimit -n) or run more wsgate processes%s", what, err, more)
}

// logTunnelErr logs a failed hand-over to the tunnel engine.
func (s *Server) logTunnelErr(err error) {
	if outOfFiles(err) {
		s.logOutOfFiles("handing a connection to the tunnel engine", err)
		return
	}
	s.cfg.Logf("tunnel: %v", err)
}

// Upstream failure kinds, for metrics and logs.
const (
	upRefused  = "connect_refused"
	upConnTO   = "connect_timeout"
	upConnErr  = "connect_error"
	upReset    = "reset"
	upTimeout  = "timeout"
	upBadResp  = "bad_response"
	upSendFail = "send_error"
	// upUnsolicited: a backend sent bytes beyond a complete response, or on
	// an idle pooled connection; the connection is closed, never reused.
	upUnsolicited = "unsolicited"
)

func dialErrKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return upRefused
	case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		return upConnTO
	}
	return upConnErr
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) { // a deadline on a net.Conn or an *os.File
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
