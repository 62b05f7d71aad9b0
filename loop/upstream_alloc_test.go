//go:build !race

package loop

import (
	"testing"
	"time"
)

// Checking a pooled upstream connection before reuse allocates nothing,
// and tells an open, silent connection from one with unasked bytes or a FIN.
func TestAliveCheck(t *testing.T) {
	c, peer := tcpPair(t)
	uc, err := newUpConn(c, nil)
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
