package tunnel

import (
	"context"
	"sync/atomic"
	"time"
)

// Draining an engine without a reconnect storm: a proxy that shuts down
// with thousands of tunnels open should not close them all in one instant,
// or every client reconnects (to the next instance) in the same second.
// CloseSpread closes them at an even rate over a window instead.

// CloseSome closes up to n open tunnels with reason Shutdown and returns
// how many it closed, after their done callbacks have run. Which tunnels
// go is unspecified (the loops take turns). Like CloseAll, it must not be
// called from a done callback.
func (e *Engine) CloseSome(n int) int {
	if n <= 0 {
		return 0
	}
	var left, closed atomic.Int64
	left.Store(int64(n))
	e.run(func(l *loop) {
		for ci := range l.chunks {
			for j := range l.chunks[ci] {
				t := &l.chunks[ci][j]
				if !t.open {
					continue
				}
				if left.Add(-1) < 0 {
					return
				}
				l.close(t, int32(ci<<chunkBits|j), Shutdown, nil)
				closed.Add(1)
			}
		}
	})
	return int(closed.Load())
}

// spreadStep is the pace of CloseSpread: it closes a batch at most this
// often, so a window of seconds is a few hundred batches.
const spreadStep = 10 * time.Millisecond

// CloseSpread closes every tunnel open when it is called, with reason
// Shutdown, at an even rate over d: after a fraction f of d, about a
// fraction f of them are closed. Tunnels that end by themselves meanwhile
// count as closed. When ctx is done (or d has passed) whatever is left is
// closed at once. It returns the number it closed itself. d <= 0 is
// CloseAll.
func (e *Engine) CloseSpread(ctx context.Context, d time.Duration) int {
	total := e.Len()
	if total == 0 {
		return 0
	}
	if d <= 0 {
		n := e.Len()
		e.CloseAll()
		return n
	}
	start := time.Now()
	step := max(d/time.Duration(total), spreadStep)
	tick := time.NewTicker(step)
	defer tick.Stop()
	closed := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d || ctx.Err() != nil {
			n := e.Len()
			e.CloseAll()
			return closed + n
		}
		// Due: the share of the window that has passed, counting tunnels
		// that closed by themselves (total - Len) towards it.
		due := int((int64(total)*int64(elapsed) + int64(d) - 1) / int64(d))
		gone := total - e.Len()
		if due > gone {
			closed += e.CloseSome(due - gone)
		}
		if e.Len() == 0 {
			return closed
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}
