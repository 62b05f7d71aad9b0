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
		var rsa unix.RawSockaddrAny
		var errno unix.Errno
		for range 1000 {
			if fd, errno = accept(sl.fd, &rsa); errno != unix.EAGAIN {
				break
			}
		}
		raddr := (&acceptedConn{}).peerAddr(&rsa)
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

// Accepted sockets have TCP_NODELAY: inherited from the listener, which
// then costs no setsockopt per connection, or set on each where the
// listener's does not carry over (here: cleared on the listener after
// shedding set it, so the first accepted socket comes without it).
func TestAcceptedSocketsHaveNodelay(t *testing.T) {
	for _, tc := range []struct {
		name        string
		clearOnLn   bool
		wantMode    int32
		wantLnValue int
	}{
		{"inherited", false, nodelayInherited, 1},
		{"per socket", true, nodelayPerSocket, 0},
	} {
		ln, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sl, err := shedding(ln, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.clearOnLn {
			if err := unix.SetsockoptInt(sl.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 0); err != nil {
				t.Fatal(err)
			}
		}
		if v, _ := unix.GetsockoptInt(sl.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v != tc.wantLnValue {
			t.Fatalf("%s: listener TCP_NODELAY %d, want %d", tc.name, v, tc.wantLnValue)
		}
		for i := range 3 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			var ac net.Conn
			for range 1000 {
				if ac, err = sl.Accept(); ac != nil || err != nil {
					break
				}
			}
			if ac == nil {
				t.Fatalf("%s: accept: %v", tc.name, err)
			}
			fd := ac.(*acceptedConn).fd
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
				t.Errorf("%s: accepted socket %d: TCP_NODELAY %d (%v)", tc.name, i, v, err)
			}
			unix.Close(fd)
			c.Close()
		}
		if m := sl.nodelay.Load(); m != tc.wantMode {
			t.Errorf("%s: mode %d, want %d", tc.name, m, tc.wantMode)
		}
		sl.Close()
	}
}
