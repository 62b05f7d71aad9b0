//go:build !race

package loop

import (
	"net"
	"testing"
	"time"
)

// Checking a pooled upstream connection before reuse allocates nothing,
// and tells an open, silent connection from one with unasked bytes or a FIN.
func TestAliveCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	uc, err := newUpConn(c.(*net.TCPConn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !uc.alive() {
		t.Fatal("an open, silent connection is not alive")
	}
	if n := testing.AllocsPerRun(100, func() { uc.alive() }); n != 0 {
		t.Errorf("alive allocates %v per call, want 0", n)
	}
	peer.Close() // the backend's keep-alive timeout: a FIN
	deadline := time.Now().Add(5 * time.Second)
	for uc.alive() {
		if time.Now().After(deadline) {
			t.Fatal("a connection the backend closed is still alive")
		}
		time.Sleep(time.Millisecond)
	}
}
