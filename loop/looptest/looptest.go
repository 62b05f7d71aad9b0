// Package looptest has the network helpers wsgate's tests share: real
// loopback peers, and addresses that refuse connections without a race.
// Only tests import it.
package looptest

import (
	"fmt"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// ReserveAddr returns 127.0.0.1:port of a socket that is bound and never
// listens, held until the test ends: a connect to it is refused, and no
// port-0 bind or outgoing connection is given that port meanwhile, so
// (unlike listening on :0, closing and reusing the port) nothing else can
// appear there. A server that sets SO_REUSEADDR (nginx, HAProxy, Go) can
// still bind it: that is how tests hand a port to a process that cannot
// report the one it bound.
func ReserveAddr(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// RawBackend accepts connections on 127.0.0.1 until the test ends and
// hands each to fn (on its own goroutine; the connection is closed when fn
// returns). It returns the address.
func RawBackend(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return ln.Addr().String()
}
