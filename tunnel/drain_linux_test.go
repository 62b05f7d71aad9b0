package tunnel

import (
	"context"
	"io"
	"sort"
	"testing"
	"time"
)

// TestCloseSomeClosesExactlyN: CloseSome(3) of 10 closes three tunnels
// (Shutdown, seen by their clients as a close frame 1012, then EOF, and by
// their backends as a masked 1001) and leaves seven working. The peers do
// not answer: CloseSome returns after CloseFinWait.
func TestCloseSomeClosesExactlyN(t *testing.T) {
	e := newEngine(t, Config{Loops: 2, Tick: 20 * time.Millisecond, CloseFinWait: 50 * time.Millisecond})
	r := newRig(t)
	pairs := make([]*pair, 10)
	for i := range pairs {
		pairs[i] = r.newPair(t, e, nil, nil)
	}
	waitLen(t, e, 10)
	if n := e.CloseSome(3); n != 3 {
		t.Fatalf("CloseSome(3) = %d, want 3", n)
	}
	if e.Len() != 7 {
		t.Fatalf("Len after CloseSome(3) = %d, want 7", e.Len())
	}
	closed := 0
	for _, p := range pairs {
		select {
		case st := <-p.stats:
			if st.Reason != Shutdown {
				t.Fatalf("reason %v, want shutdown", st.Reason)
			}
			if st.CloseCode != CodeServiceRestart {
				t.Fatalf("close code %d, want 1012", st.CloseCode)
			}
			closed++
			expectClose(t, "client", readFramesToEOF(t, p.client), CodeServiceRestart, false)
			expectClose(t, "backend", readFramesToEOF(t, p.backend), CodeGoingAway, true)
		default:
			p.client.Write(wsFrame(true, 1, []byte("hi"), true))
			p.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(p.backend, make([]byte, 8)); err != nil {
				t.Fatalf("a tunnel CloseSome left open does not relay: %v", err)
			}
		}
	}
	if closed != 3 {
		t.Fatalf("%d done callbacks ran, want 3", closed)
	}
	if n := e.CloseSome(100); n != 7 || e.Len() != 0 {
		t.Fatalf("CloseSome(100) = %d, Len %d; want 7, 0", n, e.Len())
	}
	if n := e.CloseSome(1); n != 0 {
		t.Fatalf("CloseSome on an empty engine = %d", n)
	}
}

// TestCloseSpreadPacesCloses: 40 tunnels closed over 800 ms are closed
// in many small batches across the window, not at once, and all of them
// by the end.
func TestCloseSpreadPacesCloses(t *testing.T) {
	// Peers that do not answer the close frames: each close takes
	// CloseFinWait after it starts.
	e := newEngine(t, Config{Loops: 2, Tick: 10 * time.Millisecond, CloseFinWait: 20 * time.Millisecond})
	r := newRig(t)
	const n = 40
	pairs := make([]*pair, n)
	closedAt := make([]chan time.Time, n)
	for i := range pairs {
		p, cfd, bfd := r.conns(t)
		t.Cleanup(p.close)
		closedAt[i] = make(chan time.Time, 1)
		if err := e.Add(cfd, bfd, nil, nil, func(st Stats) { closedAt[i] <- time.Now(); p.done(st) }); err != nil {
			t.Fatal(err)
		}
		pairs[i] = p
	}
	waitLen(t, e, n)
	// One tunnel ends by itself first: it counts towards the schedule.
	pairs[0].close()
	pairs[0].wait(t, 5*time.Second)

	const window = 800 * time.Millisecond
	start := time.Now()
	closedBy := e.CloseSpread(context.Background(), window)
	if closedBy != n-1 {
		t.Fatalf("CloseSpread closed %d, want %d", closedBy, n-1)
	}
	if e.Len() != 0 {
		t.Fatalf("Len after CloseSpread = %d", e.Len())
	}
	var at []time.Duration
	for i, p := range pairs[1:] {
		st := p.wait(t, time.Second)
		if st.Reason != Shutdown {
			t.Fatalf("reason %v, want shutdown", st.Reason)
		}
		at = append(at, (<-closedAt[i+1]).Sub(start))
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	// Spread: the first closes come early, the last ones only after most
	// of the window, and no quarter of the window holds more than half.
	if at[len(at)-1] < window/2 {
		t.Fatalf("every tunnel closed within %v of a %v window: not spread", at[len(at)-1], window)
	}
	for q := time.Duration(0); q < window; q += window / 4 {
		in := 0
		for _, a := range at {
			if a >= q && a < q+window/4 {
				in++
			}
		}
		if in > len(at)/2 {
			t.Fatalf("%d of %d closes fell in [%v, %v): not spread (%v)", in, len(at), q, q+window/4, at)
		}
	}
}

// TestCloseSpreadCancel: a done ctx closes what is left at once.
func TestCloseSpreadCancel(t *testing.T) {
	e := newEngine(t, Config{Loops: 1})
	r := newRig(t)
	for range 5 {
		r.newPair(t, e, nil, nil)
	}
	waitLen(t, e, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n := e.CloseSpread(ctx, time.Hour); n != 5 || e.Len() != 0 {
		t.Fatalf("CloseSpread with a done ctx closed %d, Len %d; want 5, 0", n, e.Len())
	}
}

func waitLen(t *testing.T, e *Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Len = %d, want %d", e.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
