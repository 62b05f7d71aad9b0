package loop

import (
	"sync"
	"time"
)

// idleWheel closes client connections that wait too long for their next
// request (or, when new, for their first byte). Each slot of the ring is an
// intrusive doubly linked list of connections, so entering, leaving and
// expiring are O(1) and a connection that turned busy or closed is unlinked
// at once: the wheel never keeps a dead connection's memory alive, and no
// runtime timer or goroutine exists per connection.
type idleWheel struct {
	tick  time.Duration // immutable
	start time.Time     // immutable; tick numbers count from here

	mu    sync.Mutex    // guards slots, cur and every clientConn's wheel links
	slots []*clientConn // heads; a connection due at tick t is in slots[t%len]
	cur   int64         // next tick to process

	quit     chan struct{}
	quitOnce sync.Once
}

// wheelLinks are a clientConn's place in the idle wheel, guarded by idleWheel.mu.
type wheelLinks struct {
	prev, next *clientConn
	slot       int32 // -1 when not in the wheel
	due        int64 // tick at or after the deadline
}

func newIdleWheel(shortest, longest time.Duration) *idleWheel {
	tick := min(max(shortest/8, 5*time.Millisecond), 250*time.Millisecond)
	return &idleWheel{
		tick:  tick,
		start: time.Now(),
		slots: make([]*clientConn, int(longest/tick)+2),
		quit:  make(chan struct{}),
	}
}

func (w *idleWheel) tickOf(t time.Time) int64 { return int64(t.Sub(w.start) / w.tick) }

// add enters c (idle) to be closed after d, unless it leaves first.
func (w *idleWheel) add(c *clientConn, d time.Duration) {
	due := int64((time.Since(w.start)+d)/w.tick) + 1 // tickOf(now+d) from the monotonic clock alone
	w.mu.Lock()
	w.unlinkLocked(c)
	due = max(due, w.cur)
	i := int32(due % int64(len(w.slots)))
	c.wheel = wheelLinks{next: w.slots[i], slot: i, due: due}
	if c.wheel.next != nil {
		c.wheel.next.wheel.prev = c
	}
	w.slots[i] = c
	w.mu.Unlock()
}

// remove takes c out of the wheel, if it is there.
func (w *idleWheel) remove(c *clientConn) {
	w.mu.Lock()
	w.unlinkLocked(c)
	w.mu.Unlock()
}

func (w *idleWheel) unlinkLocked(c *clientConn) {
	l := &c.wheel
	if l.slot < 0 {
		return
	}
	if l.prev != nil {
		l.prev.wheel.next = l.next
	} else {
		w.slots[l.slot] = l.next
	}
	if l.next != nil {
		l.next.wheel.prev = l.prev
	}
	*l = wheelLinks{slot: -1}
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
// close, which it has already claimed (idle → closed).
func (w *idleWheel) advance(now int64, expired []*clientConn) []*clientConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ; w.cur <= now; w.cur++ {
		for c := w.slots[w.cur%int64(len(w.slots))]; c != nil; {
			next := c.wheel.next
			if c.wheel.due <= now { // later entries are a later lap of the ring
				w.unlinkLocked(c)
				if c.state.CompareAndSwap(stateIdle, stateClosed) {
					expired = append(expired, c)
				}
			}
			c = next
		}
	}
	return expired
}

func (w *idleWheel) stop() { w.quitOnce.Do(func() { close(w.quit) }) }
