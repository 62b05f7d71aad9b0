package loop

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// reserveAddr returns 127.0.0.1:port of a socket that is bound and never
// listens, held until the test ends: a connect to it is refused, and no
// port-0 bind or outgoing connection is given that port meanwhile, so
// (unlike listening on :0, closing and reusing the port) nothing else can
// appear there. A server that sets SO_REUSEADDR (nginx, HAProxy, Go) can
// still bind it: that is how tests hand a port to a process that cannot
// report the one it bound.
func reserveAddr(t testing.TB) string {
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

// ReserveAddr is reserveAddr for the external tests (package loop_test).
var ReserveAddr = reserveAddr
