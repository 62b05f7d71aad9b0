//go:build !race

package loop

import (
	"testing"
	"time"
)

// Checking a pooled upstream connection before reuse allocates nothing,
// and tells an open, silent connection from one with unasked bytes or a FIN.
func TestIdleCheck(t *testing.T) {
	c, peer := tcpPair(t)
	uc, err := newUpConn(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := uc.check(); got != idleSilent {
		t.Fatalf("an open, silent connection: check %d, want idleSilent", got)
	}
	if n := testing.AllocsPerRun(100, func() { uc.check() }); n != 0 {
		t.Errorf("check allocates %v per call, want 0", n)
	}
	waitFor := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for uc.check() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: check %d, want %d", what, uc.check(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	peer.Write([]byte("HTTP/1.1 200 OK\r\n")) // a backend talking unasked
	waitFor(idleUnsolicited, "bytes sent unasked")
	buf := make([]byte, 64)
	c.Read(buf)
	if got := uc.check(); got != idleSilent {
		t.Fatalf("after the bytes were read: check %d, want idleSilent", got)
	}
	peer.Close() // the backend's keep-alive timeout: a FIN
	waitFor(idleClosed, "a connection the backend closed")
	if uc.reusable(time.Now(), time.Minute, newServerMetrics()) {
		t.Fatal("a closed connection is reusable")
	}
}

// BenchmarkIdleCheck is the cost of the check every pooled upstream
// connection gets before reuse (one recvfrom MSG_PEEK).
func BenchmarkIdleCheck(b *testing.B) {
	c, _ := tcpPair(b)
	uc, err := newUpConn(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if uc.check() != idleSilent {
			b.Fatal("not silent")
		}
	}
}
