package loop

import (
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// A WebSocket handshake's backend socket on the tunnel engine's loop.
//
// A handshake dialed the ordinary way has its backend socket in Go's
// runtime poller (dialRaw's *os.File) until the 101, and then moves it:
// a dup for the engine, the runtime's EPOLL_CTL_DEL and a close (through
// entersyscall, which wakes the runtime's sysmon thread when the process
// was idle), the engine's F_GETFL and EPOLL_CTL_ADD. A socket dialed by
// dialPending is registered once, on the engine loop that will relay its
// tunnel (tunnel.Pending); the exchange reads and writes it with raw
// system calls and waits on the loop's events; after a verified 101 the
// registration becomes the tunnel's (startTunnel, addPendingTunnel).
//
// Only new connections for upgrade requests on plain or relayed
// connections go this way (pickSocket); requests that may reuse the
// socket (keep-alive) keep the pool's *os.File sockets, and so do TLS 1.3
// connections the engine takes over with their records (takeOverTLS
// wants a socket fd of its own).

// pendSock is an upSocket over a tunnel.Pending. Deadlines are kept here
// and honoured by Pending.Wait (a runtime timer only while it waits).
type pendSock struct {
	p      *tunnel.Pending
	fd     int
	rd, wd time.Time
	gone   bool // closed, or the engine owns the socket (addPendingTunnel): p is not ours any more
	output bool // the Pending wakes for output too (a write found the buffer full)
	sent   int  // bytes of the request head dialPending sent with the connect
}

// errEngine is a failure of the tunnel engine's, not of a backend's (an
// engine that has stopped, epoll out of memory): it is answered 503 and
// does not count against the backend's health (connectTo).
type errEngine struct{ err error }

func (e *errEngine) Error() string { return "tunnel engine: " + e.err.Error() }
func (e *errEngine) Unwrap() error { return e.err }

// dialPending connects to ap as dialRaw does, registering the socket on
// the engine's loop instead of Go's poller.
//
// first, when set, is a bodiless request's complete head, sent right
// after the connect instead of the zero-timeout poll (connectDone) that
// asks whether the connect is done: the send answers that question too,
// and a handshake makes one system call fewer (HAProxy sends the same
// way). A send on a non-blocking TCP socket whose connect is in progress
// (SYN_SENT) fails with EAGAIN (the kernel's wait for the connection,
// sk_stream_wait_connect, has no time to wait), one whose connect failed
// returns that error (ECONNREFUSED...), and one that is connected sends.
// So:
//   - sent, all of first or its start: the connection is up; the socket
//     is registered for input only, and the pendSock's sent says how much
//     went (the exchange sends the rest, if any, with its wait for the
//     answer).
//   - EAGAIN: still connecting (or, never seen on a new socket, no room):
//     nothing was sent; the socket waits for the connect as without first.
//   - any other error: the connect's, returned as a failed connect is.
//     Nothing reached the backend, so the next one may be tried.
//
// Should Attach fail after a send (the engine stopped), the backend sees
// a head and then the close, as from a client that went away.
func dialPending(e *tunnel.Engine, ap netip.AddrPort, name string, timeout time.Duration, first []byte) (*pendSock, error) {
	fd, err := startConnect(ap, name) // dial_linux.go
	if err != nil {
		return nil, err
	}
	var up bool
	var sent int
	if len(first) > 0 {
		sent, err = rawsys.Write(fd, first)
		up = err == nil
		if err == unix.EAGAIN {
			err = nil
		}
	} else {
		up, err = connectDone(fd) // on loopback or a LAN the connection is usually up already
	}
	if err != nil {
		rawsys.Close(fd)
		return nil, &os.PathError{Op: "connect", Path: name, Err: err}
	}
	p, err := e.Attach(fd, !up)
	if err != nil {
		rawsys.Close(fd)
		return nil, &errEngine{err}
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for !up {
		if err = p.Wait(deadline); err == nil {
			up, err = connectDone(fd)
		}
		if err != nil {
			p.Close()
			return nil, &os.PathError{Op: "connect", Path: name, Err: err}
		}
	}
	return &pendSock{p: p, fd: fd, sent: sent}, nil
}

func (c *pendSock) Read(b []byte) (int, error) {
	for {
		n, err := rawsys.Read(c.fd, b)
		switch {
		case err == nil && n == 0 && len(b) > 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err != unix.EAGAIN:
			return 0, os.NewSyscallError("read", err)
		}
		if err := c.p.Wait(c.rd); err != nil {
			return 0, err
		}
	}
}

func (c *pendSock) Write(b []byte) (int, error) {
	sent := 0
	for sent < len(b) {
		n, err := rawsys.Write(c.fd, b[sent:])
		sent += n
		if err == unix.EAGAIN {
			if err := c.waitOutput(); err != nil {
				return sent, err
			}
		} else if err != nil {
			return sent, os.NewSyscallError("write", err)
		}
	}
	return sent, nil
}

// Close closes the socket, unless the engine has it. A second Close does
// nothing: the Pending may already serve another handshake (they are
// pooled).
func (c *pendSock) Close() error {
	if !c.gone {
		c.gone = true
		c.p.Close()
	}
	return nil
}

func (c *pendSock) SetDeadline(t time.Time) error      { c.rd, c.wd = t, t; return nil }
func (c *pendSock) SetReadDeadline(t time.Time) error  { c.rd = t; return nil }
func (c *pendSock) SetWriteDeadline(t time.Time) error { c.wd = t; return nil }

// SyscallConn gives upConn's raw callbacks (check's peek, roundTrip) the
// socket, waiting on the loop's events between tries.
func (c *pendSock) SyscallConn() (syscall.RawConn, error) { return (*pendRaw)(c), nil }

type pendRaw pendSock

func (c *pendRaw) Control(f func(fd uintptr)) error {
	f(uintptr(c.fd))
	return nil
}

func (c *pendRaw) Read(f func(fd uintptr) bool) error {
	for !f(uintptr(c.fd)) {
		if err := c.p.Wait(c.rd); err != nil {
			return err
		}
	}
	return nil
}

func (c *pendRaw) Write(f func(fd uintptr) bool) error {
	for !f(uintptr(c.fd)) {
		if err := (*pendSock)(c).waitOutput(); err != nil {
			return err
		}
	}
	return nil
}

// waitOutput waits until the socket may take more, up to the write
// deadline; the first time, the Pending is told to wake for output.
func (c *pendSock) waitOutput() error {
	if !c.output {
		if err := c.p.WantOutput(); err != nil {
			return err
		}
		c.output = true
	}
	return c.p.Wait(c.wd)
}

// pendingOf returns uc's socket when it is on the engine's loop.
func (uc *upConn) pendingOf() *pendSock {
	ps, _ := uc.c.(*pendSock)
	return ps
}

// addPendingTunnel is addTunnel for a backend socket on the engine's loop.
func (s *Server) addPendingTunnel(b *balancer.Backend, clientFd int, ps *pendSock, toBackend, toClient []byte, done func(tunnel.Stats)) error {
	ps.gone = true
	b.TunnelStarted()
	if err := s.cfg.Tunnels.AddPending(backendTag(b), clientFd, ps.p, toBackend, toClient, done); err != nil {
		b.TunnelEnded()
		return err
	}
	return nil
}
