package loop

import (
	"testing"
	"time"
)

// armDeadline sets the response timeout from now, keeps a deadline an
// earlier exchange set while it is within the slack, and the deadline it
// leaves is the one reads and writes on the connection obey.
func TestArmDeadline(t *testing.T) {
	c, _ := tcpPair(t)
	uc := &upConn{c: c}

	s := &Server{cfg: Config{ResponseTimeout: 10 * time.Second}}
	before := time.Now()
	s.armDeadline(uc)
	if d := uc.deadline.Sub(before); d < 10*time.Second || d > 11*time.Second {
		t.Fatalf("first deadline %v from now, want the 10 s response timeout", d)
	}
	first := uc.deadline
	s.armDeadline(uc)
	if !uc.deadline.Equal(first) {
		t.Fatalf("a deadline set just now was moved (%v → %v)", first, uc.deadline)
	}
	uc.deadline = time.Now().Add(8500 * time.Millisecond) // older than the 1 s slack
	s.armDeadline(uc)
	if d := time.Until(uc.deadline); d < 9900*time.Millisecond {
		t.Fatalf("a deadline %v away was kept, want it moved to the full timeout", d)
	}

	// The deadline is the connection's: a read with nothing to read ends
	// with a timeout, not before the timeout less the slack.
	s = &Server{cfg: Config{ResponseTimeout: 200 * time.Millisecond}}
	uc.deadline = time.Time{}
	start := time.Now()
	s.armDeadline(uc)
	_, err := uc.c.Read(make([]byte, 1))
	if !isTimeout(err) {
		t.Fatalf("read: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < 180*time.Millisecond {
		t.Fatalf("timed out after %v, want at least 180 ms (200 ms less the slack)", waited)
	}
}
