package rawsys

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func TestReadWriteEAGAINAndEOF(t *testing.T) {
	a, b := socketpair(t)
	buf := make([]byte, 16)
	if n, err := Read(a, buf); n != 0 || err != unix.EAGAIN {
		t.Fatalf("read of an empty socket: %d, %v; want 0, EAGAIN (comparable with ==)", n, err)
	}
	if n, err := Write(b, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := Read(a, buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d, %v, %q", n, err, buf[:n])
	}
	if n, err := Read(a, nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	ShutdownWrite(b)
	if n, err := Read(a, buf); n != 0 || err != nil {
		t.Fatalf("read after the peer's SHUT_WR: %d, %v; want EOF (0, nil)", n, err)
	}
	if _, err := Write(a, []byte("x")); err != nil {
		t.Fatalf("the other direction stays open after a half-close: %v", err)
	}
	if n, _ := Read(b, buf); n != 1 {
		t.Fatalf("read after half-close: %d", n)
	}
}

func TestDupFcntlClose(t *testing.T) {
	a, b := socketpair(t)
	d, err := Dup(a)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := Fcntl(d, unix.F_GETFD, 0)
	if err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Fatalf("dup is not close-on-exec: %#x, %v", fl, err)
	}
	if _, err := Write(d, []byte("z")); err != nil {
		t.Fatal(err)
	}
	Close(d)
	if _, err := Fcntl(d, unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("fd still open after Close: %v", err)
	}
	buf := make([]byte, 4)
	if n, _ := Read(b, buf); n != 1 {
		t.Fatalf("write through the dup not seen: %d", n)
	}
	if _, err := Dup(-1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Dup(-1): %v", err)
	}
}

func TestSocketConnectSoError(t *testing.T) {
	// A port nobody listens on: the non-blocking connect reports
	// EINPROGRESS (or the refusal at once), then SO_ERROR says ECONNREFUSED.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	fd, err := Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	Nodelay(fd)
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	if err != nil || v == 0 {
		t.Fatalf("TCP_NODELAY not set: %d, %v", v, err)
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != unix.EINPROGRESS && err != unix.ECONNREFUSED {
		t.Fatalf("connect: %v", err)
	}
	if err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 5000); err != nil {
			t.Fatal(err)
		}
		soerr, err := SoError(fd)
		if err != nil || unix.Errno(soerr) != unix.ECONNREFUSED {
			t.Fatalf("SO_ERROR: %d (%v), %v; want ECONNREFUSED", soerr, unix.Errno(soerr), err)
		}
	}
	if Err(unix.EINPROGRESS) != unix.EINPROGRESS || Err(0) != nil || Err(unix.ECONNRESET) != unix.ECONNRESET {
		t.Fatal("Err does not map errnos to comparable values")
	}
}

func TestEpollCtl(t *testing.T) {
	a, b := socketpair(t)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a)}
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &ev); err != nil {
		t.Fatal(err)
	}
	if err := EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &ev); err != unix.EEXIST {
		t.Fatalf("second add: %v; want EEXIST", err)
	}
	Write(b, []byte("x"))
	evs := make([]unix.EpollEvent, 4)
	n, err := unix.EpollWait(ep, evs, 5000)
	if err != nil || n != 1 || evs[0].Fd != int32(a) {
		t.Fatalf("epoll_wait: %d, %v, %+v", n, err, evs[:n])
	}
}

func TestSplice(t *testing.T) {
	a, b := socketpair(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	Write(b, []byte("spliced"))
	flags := unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
	if n, err := Splice(a, p[1], 64, flags); n != 7 || err != nil {
		t.Fatalf("socket → pipe: %d, %v", n, err)
	}
	if n, err := Splice(p[0], b, 64, flags); n != 7 || err != nil {
		t.Fatalf("pipe → socket: %d, %v", n, err)
	}
	if n, err := Splice(p[0], b, 64, flags); n != 0 || err != unix.EAGAIN {
		t.Fatalf("empty pipe: %d, %v; want EAGAIN", n, err)
	}
	buf := make([]byte, 16)
	if n, _ := Read(a, buf); string(buf[:n]) != "spliced" {
		t.Fatalf("got %q", buf[:n])
	}
}

func TestPeek(t *testing.T) {
	a, b := socketpair(t)
	var buf [1]byte
	if Peek(a, buf[:]) {
		t.Fatal("Peek on an empty socket: true, want false")
	}
	Write(b, []byte("xy"))
	if !Peek(a, buf[:]) {
		t.Fatal("Peek with input waiting: false")
	}
	p := make([]byte, 4)
	if n, _ := Read(a, p); string(p[:n]) != "xy" {
		t.Fatalf("Peek took input: read %q after it", p[:n])
	}
	ShutdownWrite(b)
	if !Peek(a, buf[:]) {
		t.Fatal("Peek at the end of input: false, want true (the reader must look)")
	}
}

func TestPeekN(t *testing.T) {
	a, b := socketpair(t)
	var buf [1]byte
	if n, err := PeekN(a, buf[:]); n != 0 || err != unix.EAGAIN {
		t.Fatalf("empty socket: %d, %v; want EAGAIN", n, err)
	}
	Write(b, []byte("xy"))
	if n, err := PeekN(a, buf[:]); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("input waiting: %d, %v, %q; want 1 byte 'x'", n, err, buf[:])
	}
	p := make([]byte, 4)
	if n, _ := Read(a, p); string(p[:n]) != "xy" {
		t.Fatalf("PeekN took input: read %q after it", p[:n])
	}
	ShutdownWrite(b)
	if n, err := PeekN(a, buf[:]); n != 0 || err != nil {
		t.Fatalf("end of input: %d, %v; want 0, nil", n, err)
	}
}

// Read and Write are recvfrom and sendto: sockets only (a pipe answers
// ENOTSOCK), and a write to a closed peer is EPIPE, not a signal.
func TestReadWriteSocketsOnly(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := Write(p[1], []byte("x")); err != unix.ENOTSOCK {
		t.Fatalf("Write to a pipe: %v, want ENOTSOCK", err)
	}
	if _, err := Read(p[0], make([]byte, 1)); err != unix.ENOTSOCK {
		t.Fatalf("Read from a pipe: %v, want ENOTSOCK", err)
	}
	a, b := socketpair(t)
	unix.Shutdown(b, unix.SHUT_RDWR)
	if _, err := Write(a, []byte("x")); err != unix.EPIPE {
		t.Fatalf("Write to a closed peer: %v, want EPIPE", err)
	}
}
