//go:build !race

package tunnel

import (
	"io"
	"testing"
)

// Steady-state relay of small messages allocates nothing: the measurement
// covers every goroutine (the engine's loop, the echoing backend and the
// client), and only the engine could allocate per message.
func TestRelaySmallMessagesAllocateNothing(t *testing.T) {
	e := newEngine(t, Config{})
	p := newRig(t).newPair(t, e, nil, nil)
	go echo(p.backend)
	msg, got := make([]byte, 64), make([]byte, 64)
	roundTrip := func() {
		if _, err := p.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p.client, got); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		roundTrip()
	}
	if a := testing.AllocsPerRun(2000, roundTrip); a != 0 {
		t.Fatalf("%v allocations per 64 B round trip, want 0", a)
	}
}
