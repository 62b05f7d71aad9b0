package loop

import (
	"sync"
	"time"
)

// idleWheel closes client connections that wait too long for their next
// request. A connection is entered once each time it turns idle, tagged with
// the state word it had then; when its slot comes round the wheel closes it
// only if the state is unchanged (still idle, same generation). Turning busy
// bumps the generation, so an entry never has to be removed: O(1) per idle
// period, and no runtime timer or goroutine per connection.
type idleWheel struct {
	tick  time.Duration // immutable
	start time.Time     // immutable; tick numbers count from here

	mu    sync.Mutex    // guards slots, cur
	slots [][]idleEntry // ring; an entry due at tick t sits in slots[t%len]
	cur   int64         // next tick to process

	quit     chan struct{}
	quitOnce sync.Once
}

type idleEntry struct {
	c     *clientConn
	state uint64 // c.state when entered
	due   int64  // tick at or after the deadline
}

func newIdleWheel(shortest, longest time.Duration) *idleWheel {
	tick := min(max(shortest/8, 5*time.Millisecond), 250*time.Millisecond)
	w := &idleWheel{
		tick:  tick,
		start: time.Now(),
		slots: make([][]idleEntry, int(longest/tick)+2),
		quit:  make(chan struct{}),
	}
	return w
}

func (w *idleWheel) tickOf(t time.Time) int64 { return int64(t.Sub(w.start) / w.tick) }

// add enters c, whose current state word is state, to be closed after d
// unless its state changes first.
func (w *idleWheel) add(c *clientConn, state uint64, d time.Duration) {
	due := w.tickOf(time.Now().Add(d)) + 1
	w.mu.Lock()
	if due < w.cur {
		due = w.cur
	}
	i := due % int64(len(w.slots))
	w.slots[i] = append(w.slots[i], idleEntry{c: c, state: state, due: due})
	w.mu.Unlock()
}

func (w *idleWheel) run() {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var expired []*clientConn
	for {
		select {
		case <-w.quit:
			return
		case now := <-t.C:
			expired = w.advance(w.tickOf(now), expired[:0])
			for i, c := range expired {
				c.conn.Close()
				expired[i] = nil
			}
		}
	}
}

// advance processes every slot up to tick now and returns the connections to
// close, which it has already marked closed.
func (w *idleWheel) advance(now int64, expired []*clientConn) []*clientConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ; w.cur <= now; w.cur++ {
		i := w.cur % int64(len(w.slots))
		slot := w.slots[i]
		keep := slot[:0]
		for _, e := range slot {
			switch {
			case e.due > now: // a later lap (only when a deadline outgrew the ring)
				keep = append(keep, e)
			case e.c.state.CompareAndSwap(e.state, stateClosed):
				expired = append(expired, e.c)
			}
		}
		clear(slot[len(keep):])
		w.slots[i] = keep
	}
	return expired
}

func (w *idleWheel) stop() { w.quitOnce.Do(func() { close(w.quit) }) }
