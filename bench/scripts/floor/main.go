//go:build linux

// Command floor is a measuring stick, not a proxy: the least a Go process
// can do to relay a WebSocket handshake and its tunnel, for comparing
// wsgate's CPU per handshake with what Go itself costs on the same
// machine. One goroutine on a locked thread, one epoll set, raw
// non-blocking system calls, no allocation per connection, and none of a
// proxy's work: the request head goes to the backend as it came, the
// answer back as it came (nothing parsed or checked: no 101 verified, no
// headers added), then bytes are copied both ways until each side has
// closed. Writes that would block count as errors (small messages never
// do on loopback). bench/scripts/handshake-ab.sh runs it in place of a
// wsgate build:
//
//	go build -o /tmp/floor ./bench/scripts/floor
//	bench/scripts/handshake-ab.sh /tmp/floor /tmp/wsgate-new
//
// It takes wsgate's -l and -b flags and ignores the others.
package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

const (
	stHead    = iota + 1 // client: reading the request head
	stConnect            // backend: connecting, head not sent yet
	stAnswer             // backend: waiting for the answer
	stTunnel             // both: copying
)

type conn struct {
	peer  int32
	state uint8
	eof   bool // this side sent its FIN (we shut the peer's write side)
	n     int  // head bytes buffered (client, stHead / backend, stConnect)
	buf   [4096]byte
}

var (
	conns   []*conn
	backend unix.SockaddrInet4
	ep      int
	errs    int
	scratch [16 << 10]byte
)

func main() {
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	listen, back := "127.0.0.1:8080", ""
	for i := 1; i+1 < len(os.Args); i++ {
		switch os.Args[i] {
		case "-l":
			listen = os.Args[i+1]
		case "-b":
			back = os.Args[i+1]
		}
	}
	la, err1 := netip.ParseAddrPort(listen)
	ba, err2 := netip.ParseAddrPort(back)
	if err1 != nil || err2 != nil || !la.Addr().Is4() || !ba.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "floor: -l IPv4:PORT -b IPv4:PORT")
		os.Exit(2)
	}
	backend = unix.SockaddrInet4{Port: int(ba.Port()), Addr: ba.Addr().As4()}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	check(err)
	check(unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	check(unix.Bind(lfd, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}))
	check(unix.Listen(lfd, 4096))
	ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	check(err)
	check(unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}))
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(ep, events, -1) // blocking: through entersyscall, as it must be
		if err == unix.EINTR {
			continue
		}
		check(err)
		for i := range events[:n] {
			fd := int(events[i].Fd)
			if fd == lfd {
				accept(lfd)
				continue
			}
			if fd < len(conns) && conns[fd] != nil {
				handle(fd, events[i].Events)
			}
		}
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func get(fd int) *conn {
	for fd >= len(conns) {
		conns = append(conns, nil)
	}
	if conns[fd] == nil {
		conns[fd] = new(conn) // once per fd number: numbers are reused
	}
	c := conns[fd]
	c.peer, c.state, c.eof, c.n = -1, 0, false, 0
	return c
}

func raw(trap, a1, a2, a3, a4, a5, a6 uintptr) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
	return int(r), e
}

func accept(lfd int) {
	for {
		fd, e := raw(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e != 0 {
			return
		}
		nodelay(fd)
		get(fd).state = stHead
		add(fd, unix.EPOLLIN|unix.EPOLLRDHUP)
	}
}

func nodelay(fd int) {
	one := int32(1)
	raw(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptrOf(&one), 4, 0)
}

func add(fd int, ev uint32) {
	e := unix.EpollEvent{Events: ev, Fd: int32(fd)}
	raw(unix.SYS_EPOLL_CTL, uintptr(ep), unix.EPOLL_CTL_ADD, uintptr(fd), uintptrOfEv(&e), 0, 0)
}

func mod(fd int, ev uint32) {
	e := unix.EpollEvent{Events: ev, Fd: int32(fd)}
	raw(unix.SYS_EPOLL_CTL, uintptr(ep), unix.EPOLL_CTL_MOD, uintptr(fd), uintptrOfEv(&e), 0, 0)
}

func recv(fd int, b []byte) (int, unix.Errno) {
	return raw(unix.SYS_RECVFROM, uintptr(fd), uintptrOfB(b), uintptr(len(b)), 0, 0, 0)
}

func send(fd int, b []byte) bool {
	n, e := raw(unix.SYS_SENDTO, uintptr(fd), uintptrOfB(b), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
	return e == 0 && n == len(b)
}

func closeFd(fd int) {
	raw(unix.SYS_CLOSE, uintptr(fd), 0, 0, 0, 0, 0)
	conns[fd].state = 0
}

func closePair(fd int) {
	c := conns[fd]
	if c.peer >= 0 {
		closeFd(int(c.peer))
	}
	closeFd(fd)
}

func handle(fd int, ev uint32) {
	c := conns[fd]
	switch c.state {
	case stHead:
		n, e := recv(fd, c.buf[c.n:])
		if e == unix.EAGAIN {
			return
		}
		if e != 0 || n == 0 {
			closeFd(fd)
			return
		}
		c.n += n
		if !bytes.Contains(c.buf[:c.n], []byte("\r\n\r\n")) {
			if c.n == len(c.buf) {
				closeFd(fd)
			}
			return
		}
		bfd, e := raw(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0, 0, 0)
		if e != 0 {
			errs++
			closeFd(fd)
			return
		}
		nodelay(bfd)
		sa := rawSockaddr(&backend)
		_, e = raw(unix.SYS_CONNECT, uintptr(bfd), uintptrOfSa(&sa), 16, 0, 0, 0)
		b := get(bfd)
		b.peer, c.peer = int32(fd), int32(bfd)
		c.state = stTunnel // the client sends nothing more until it has the answer
		if e != 0 && e != unix.EINPROGRESS {
			errs++
			closePair(fd)
			return
		}
		// HAProxy's way: send at once; EAGAIN means not connected yet.
		if send(bfd, c.buf[:c.n]) {
			b.state = stAnswer
			add(bfd, unix.EPOLLIN|unix.EPOLLRDHUP)
			return
		}
		b.state, b.n = stConnect, c.n
		copy(b.buf[:], c.buf[:c.n])
		add(bfd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP)
	case stConnect:
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 || !send(fd, c.buf[:c.n]) {
			errs++
			closePair(fd)
			return
		}
		c.state = stAnswer
		mod(fd, unix.EPOLLIN|unix.EPOLLRDHUP)
	case stAnswer, stTunnel:
		c.state = stTunnel
		for {
			n, e := recv(fd, scratch[:])
			if e == unix.EAGAIN {
				return
			}
			if e != 0 {
				closePair(fd)
				return
			}
			p := int(c.peer)
			if n == 0 {
				c.eof = true
				if conns[p].eof {
					closePair(fd)
					return
				}
				raw(unix.SYS_SHUTDOWN, uintptr(p), unix.SHUT_WR, 0, 0, 0, 0)
				mod(fd, 0) // level-triggered: at EOF it would stay readable
				return
			}
			if !send(p, scratch[:n]) {
				errs++
				closePair(fd)
				return
			}
		}
	}
}
