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

// CloseSome closes up to n open tunnels that are not closing already, with
// reason Shutdown, and returns how many it closed, after their done
// callbacks have run. The closes are graceful (close frames, 1012 to the
// client: close_linux.go), so it may take up to about CloseBoundaryWait +
// CloseFinWait (+2 ticks) when peers are slow to answer. Which tunnels go
// is unspecified (the loops take turns). Like CloseAll, it must not be
// called from a done callback.
func (e *Engine) CloseSome(n int) int {
	if n <= 0 {
		return 0
	}
	started, _ := e.startCloses(n, Shutdown, waitStarted, func(*tunnel) bool { return true })
	return started
}

// spreadStep is the pace of CloseSpread: it starts a batch of closes at
// most this often, so a window of seconds is a few hundred batches.
const spreadStep = 10 * time.Millisecond

// CloseSpread closes every tunnel open when it is called, with reason
// Shutdown, at an even rate over d: after a fraction f of d, about a
// fraction f of them have been told to close. The closes are graceful
// (close frames, 1012 to the client): all of them are started within the
// first part of the window, leaving the rest (a quarter of d at most) for
// the last ones to finish. Tunnels that end by themselves meanwhile count
// as closed. When ctx is done (or d has passed) whatever is left is closed
// at once (CloseAll), so it returns by the deadline with every tunnel
// closed. It returns the number it closed itself. d <= 0 is CloseAll.
func (e *Engine) CloseSpread(ctx context.Context, d time.Duration) int {
	total := e.Len()
	if total == 0 {
		return 0
	}
	if d <= 0 {
		return e.closeAllCount()
	}
	start := time.Now()
	pace := d - min(d/4, e.cfg.CloseBoundaryWait+e.cfg.CloseFinWait+2*e.cfg.Tick)
	step := max(pace/time.Duration(total), spreadStep)
	tick := time.NewTicker(step)
	defer tick.Stop()
	closed := 0
	for {
		elapsed := time.Since(start)
		if elapsed >= d || ctx.Err() != nil {
			return closed + e.closeAllCount()
		}
		// Due: the share of the pace window that has passed, counting
		// tunnels that closed by themselves or are closing (total - those
		// open and not closing) towards it.
		due := total
		if elapsed < pace {
			due = int((int64(total)*int64(elapsed) + int64(pace) - 1) / int64(pace))
		}
		gone := total - (e.Len() - int(e.closing.Load()))
		if due > gone {
			started, _ := e.startCloses(due-gone, Shutdown, waitNone, func(*tunnel) bool { return true })
			closed += started
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

// closeAllCount is CloseAll that returns how many tunnels it closed that
// were not closing already.
func (e *Engine) closeAllCount() int {
	var n atomic.Int64
	e.run(func(l *loop) { n.Add(int64(l.closeAll(Shutdown))) })
	return int(n.Load())
}
