//go:build linux

package loop

import (
	"net"
	"testing"
	"time"
)

// TestReusePortSteerAway: two listeners share an address (SO_REUSEPORT);
// before the first one steers away, both get connections; after it, every
// new connection goes to the second (the successor of a restart).
func TestReusePortSteerAway(t *testing.T) {
	a, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Listen(a.Addr().String())
	if err != nil {
		t.Fatalf("a second listener on the same address: %v (SO_REUSEPORT not set?)", err)
	}
	defer b.Close()

	count := func(n int) (toA, toB int) {
		t.Helper()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			c, err := net.Dial("tcp", a.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, ln := range []net.Listener{a, b} {
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				c, err := ln.Accept()
				if err != nil {
					break
				}
				c.Close()
				if ln == a {
					toA++
				} else {
					toB++
				}
			}
		}
		if toA+toB != n {
			t.Fatalf("accepted %d+%d of %d connections", toA, toB, n)
		}
		return toA, toB
	}

	if toA, toB := count(64); toA == 0 || toB == 0 {
		t.Fatalf("before steering: %d to the first listener, %d to the second; want both used", toA, toB)
	}
	if err := steerAway(a); err != nil {
		t.Fatal(err)
	}
	if toA, toB := count(64); toA != 0 {
		t.Fatalf("after steering away: %d connections still went to the first listener (%d to the second)", toA, toB)
	}
	// Once the first listener is gone the second takes everything; the
	// program left on the group is harmless.
	a.Close()
	for range 16 {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatalf("after the first listener closed: %v", err)
		}
		c.Close()
	}
}
