//go:build !race

package bench

import (
	"testing"
	"time"
)

// The echo round trip (write a frame, read the answer, record the latency)
// allocates nothing. The echo backend runs in another process: AllocsPerRun
// counts the whole process's allocations.
func TestEchoRoundTripAllocatesNothing(t *testing.T) {
	s := wsbenchDial(t, startEchoProcess(t), 1)[0]
	defer s.close(0)
	rec := newRecorder()
	allocs := testing.AllocsPerRun(1000, func() {
		t0 := time.Now()
		if err := s.roundTrip(); err != nil {
			t.Fatal(err)
		}
		rec.record(0, time.Since(t0))
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", allocs)
	}
}
