package loop

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/wsgate/wsgate/tunnel/rawsys"
	"golang.org/x/sys/unix"
)

// Accepting when out of files.
//
// netpoll's own accept loop does not survive EMFILE: measured with a child
// wsgate under a lowered RLIMIT_NOFILE (TestEMFILEBacksOffAndRecovers), one
// connection waiting in the accept queue made it burn 1.85 s of CPU in
// 1.5 s (both cores), logging ~4,700 failed accepts and starting a retry
// goroutine for each. So every listener is handed to netpoll wrapped in a
// shedListener, whose Accept never returns EMFILE to it:
//
//   - It keeps one spare descriptor (/dev/null). Out of files, it closes
//     the spare, accepts the waiting connection into the freed number,
//     closes it at once (the client sees FIN, not a hang in the queue),
//     and takes the spare again (libuv's and nginx's trick). The queue
//     drains at the rate clients arrive; nothing waits on a timer and no
//     event repeats for the same connection.
//   - Should another thread take the freed number first (the spare is
//     gone), it backs off (1 ms doubling to 64 ms) on the poller before
//     trying again, so a level-triggered listener cannot spin.
//
// Connections shed this way are counted in
// wsgate_connections_refused_total{reason="out_of_files"}.
type shedListener struct {
	net.Listener                  // the *net.TCPListener (or the TLS front's *net.UnixListener): Addr, Close
	file         *os.File         // a duplicate of its socket, non-blocking; netpoll polls it
	fd           int              // file's descriptor
	tcp          bool             // accepted sockets get TCP_NODELAY
	nodelay      atomic.Int32     // nodelayUnknown, nodelayInherited or nodelayPerSocket
	refused      *metrics.Counter // connections shed while out of files; nil: not counted

	mu      sync.Mutex // guards spare and backoff; taken only when out of files
	spare   int        // -1 when lost
	backoff time.Duration
}

// shedding wraps a listener for netpoll (EventLoop.Serve accepts any
// netpoll.Listener: a net.Listener with Fd).
func shedding(ln net.Listener, refused *metrics.Counter) (*shedListener, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, unix.ENOTSOCK
	}
	_, tcp := ln.(*net.TCPListener)
	f, err := fl.File()
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(int(f.Fd()), true); err != nil {
		f.Close()
		return nil, err
	}
	l := &shedListener{Listener: ln, file: f, fd: int(f.Fd()), tcp: tcp, refused: refused, spare: openSpare()}
	if tcp {
		rawsys.Nodelay(l.fd) // accepted sockets inherit it (checked at the first accept)
	}
	return l, nil
}

// TCP_NODELAY of accepted sockets. Linux copies the listener's TCP_NODELAY
// into every socket accepted from it, so the listener has it set and the
// first accepted socket is asked whether it came along: if so, no accepted
// socket needs a setsockopt of its own (a system call per connection, as
// HAProxy saves it); if not, each gets one.
const (
	nodelayUnknown int32 = iota
	nodelayInherited
	nodelayPerSocket
)

// setNodelay makes sure the accepted socket fd has TCP_NODELAY.
func (l *shedListener) setNodelay(fd int) {
	switch l.nodelay.Load() {
	case nodelayInherited:
		return
	case nodelayUnknown:
		if on, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err == nil && on != 0 {
			l.nodelay.Store(nodelayInherited)
			return
		}
		l.nodelay.Store(nodelayPerSocket)
	}
	rawsys.Nodelay(fd)
}

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// Fd is the socket netpoll polls.
func (l *shedListener) Fd() int { return l.fd }

// Close closes the duplicate, the listener and the spare.
func (l *shedListener) Close() error {
	l.file.Close()
	l.mu.Lock()
	if l.spare >= 0 {
		unix.Close(l.spare)
		l.spare = -1
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// Accept accepts one connection; (nil, nil) means none to take now.
func (l *shedListener) Accept() (net.Conn, error) {
	for {
		var rsa unix.RawSockaddrAny
		fd, err := accept(l.fd, &rsa)
		switch err {
		case 0:
			if l.tcp {
				l.setNodelay(fd)
			}
			c := &acceptedConn{fd: fd, laddr: l.Addr()}
			c.raddr = c.peerAddr(&rsa)
			return c, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ECONNABORTED:
			return nil, nil
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			l.shed()
			return nil, nil
		}
		return nil, err
	}
}

// shed refuses the connection at the head of the accept queue: see above.
func (l *shedListener) shed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare < 0 {
		l.spare = openSpare()
	}
	if l.spare < 0 {
		l.backoff = min(max(2*l.backoff, time.Millisecond), 64*time.Millisecond)
		time.Sleep(l.backoff)
		return
	}
	unix.Close(l.spare)
	fd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		if l.refused != nil {
			l.refused.Inc()
		}
	}
	l.spare = openSpare()
	l.backoff = 0
}

// accept takes a connection off the (non-blocking) listening socket lfd,
// itself non-blocking and close-on-exec from the start. It is accept4(2)
// called directly: unix.Accept4 asks the listener for SO_PROTOCOL on every
// accept to tell an L2TP socket from TCP, and netpoll would then make the
// socket non-blocking with two fcntl calls.
//
// The peer's address goes to rsa; syscall.RawSyscall6 (unlike
// unix.RawSyscall6) lets it stay on the caller's stack.
func accept(lfd int, rsa *unix.RawSockaddrAny) (int, unix.Errno) {
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := syscall.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, unix.Errno(errno)
	}
	return int(fd), 0
}

// peerAddr returns the peer's address, for TCP in c itself.
func (c *acceptedConn) peerAddr(rsa *unix.RawSockaddrAny) net.Addr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		c.ip[10], c.ip[11] = 0xff, 0xff // the 16-byte form of an IPv4 address, as net.IPv4 makes it
		copy(c.ip[12:], a.Addr[:])
		c.tcp = net.TCPAddr{IP: c.ip[:], Port: portOf(a.Port)}
		return &c.tcp
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		c.ip = a.Addr
		c.tcp = net.TCPAddr{IP: c.ip[:], Port: portOf(a.Port)}
		return &c.tcp
	case unix.AF_UNIX: // the TLS front's inner connections: the client is in their PROXY header
		return &net.UnixAddr{Net: "unix"}
	}
	return &c.tcp
}

// portOf converts a port in network byte order, as the kernel stores it.
func portOf(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// acceptedConn is an accepted socket as netpoll takes it over (it reads
// only Fd, LocalAddr and RemoteAddr, and does all I/O itself). A TCP
// peer's address lives in it: one allocation per accept, not four.
type acceptedConn struct {
	fd           int
	laddr, raddr net.Addr
	tcp          net.TCPAddr // raddr of a TCP peer
	ip           [16]byte    // tcp.IP
}

func (c *acceptedConn) Fd() int                            { return c.fd }
func (c *acceptedConn) Nonblocking() bool                  { return true } // accept4(SOCK_NONBLOCK): netpoll makes no fcntl (patch 8)
func (c *acceptedConn) LocalAddr() net.Addr                { return c.laddr }
func (c *acceptedConn) RemoteAddr() net.Addr               { return c.raddr }
func (c *acceptedConn) Read(b []byte) (int, error)         { return unix.Read(c.fd, b) }
func (c *acceptedConn) Write(b []byte) (int, error)        { return unix.Write(c.fd, b) }
func (c *acceptedConn) Close() error                       { return unix.Close(c.fd) }
func (c *acceptedConn) SetDeadline(t time.Time) error      { return nil }
func (c *acceptedConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *acceptedConn) SetWriteDeadline(t time.Time) error { return nil }
