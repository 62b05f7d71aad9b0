package loop

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// accept gives the peer's address as net.Dial sees its own, for IPv4 and
// IPv6, and a socket that is already non-blocking.
func TestAcceptAddresses(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := Listen(map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		sl, err := shedding(ln, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		var raddr net.Addr
		var errno unix.Errno
		for range 1000 {
			if fd, raddr, errno = accept(sl.fd); errno != unix.EAGAIN {
				break
			}
		}
		if errno != 0 {
			t.Fatalf("%s: accept: %v", network, errno)
		}
		if raddr.String() != c.LocalAddr().String() {
			t.Errorf("%s: peer %s, want %s", network, raddr, c.LocalAddr())
		}
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: accepted socket is blocking", network)
		}
		unix.Close(fd)
		c.Close()
		sl.Close()
	}
}
