package balancer

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxQueue is the longest a pool's queue grows when Config.MaxQueue
// is 0.
const DefaultMaxQueue = 10_000

// MaxHandshakeRate is the largest Config.MaxHandshakesPerBackend accepted.
const MaxHandshakeRate = 1e6

// Errors of PickWait. The caller answers 503 to each (with Retry-After for
// the queue's), except ErrNoBackend after a connect failure (502).
var (
	// ErrNoBackend: no backend of the pool takes requests now (none is
	// healthy, or skip excluded every healthy one). Returned at once.
	ErrNoBackend = errors.New("balancer: no usable backend")
	// ErrQueueTimeout: every usable backend stayed full for the whole
	// timeout.
	ErrQueueTimeout = errors.New("balancer: queue timeout: every backend stayed at its max-conns")
	// ErrQueueFull: every usable backend is full and the pool's queue
	// already holds MaxQueue requests. Returned at once.
	ErrQueueFull = errors.New("balancer: queue full")
)

// QueueStats are a pool's queue counters since it was created.
type QueueStats struct {
	Queued   uint64 // PickWait calls that had to wait
	Served   uint64 // of those, given a backend
	Timeouts uint64 // ErrQueueTimeout answers
	Full     uint64 // ErrQueueFull answers
	// NoBackend counts waiters answered ErrNoBackend because every
	// backend they could use left (unhealthy, removed) while they waited.
	NoBackend uint64
	// Withdrawn counts waiters taken out of the queue by Withdraw (their
	// client left) before they got an answer.
	Withdrawn uint64
}

// queue is a pool's FIFO of PickWait calls waiting for a backend slot.
type queue struct {
	mu         sync.Mutex // guards the list, the wake timer and Pool.waiting's writes
	head, tail *waiter
	n          int
	wake       Timer  // pending re-dispatch when a handshake token refills
	wakeAt     int64  // its time (clock nanoseconds)
	wakeSeq    uint64 // identifies the current wake timer

	queued, served, timeouts, full, noBackend, withdrawn atomic.Uint64
}

// waiter is one queued PickWait.
type waiter struct {
	prev, next *waiter
	skip       func(*Backend) bool
	upgrade    bool
	since      time.Time
	timer      Timer
	done       chan struct{} // PickWait: closed once b or err is set
	cb         QueueWaiter   // PickAsync: told once b or err is set
	b          *Backend
	waited     time.Duration
	err        error
	queued     bool // in the list; guarded by queue.mu
}

func (q *queue) pushLocked(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
	w.queued = true
}

func (q *queue) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
	q.n--
	w.queued = false
}

// QueueLen returns how many PickWait calls wait in p's queue now.
func (p *Pool) QueueLen() int { return int(p.waiting.Load()) }

// QueueStats returns p's queue counters.
func (p *Pool) QueueStats() QueueStats {
	q := &p.q
	return QueueStats{
		Queued: q.queued.Load(), Served: q.served.Load(), Timeouts: q.timeouts.Load(),
		Full: q.full.Load(), NoBackend: q.noBackend.Load(), Withdrawn: q.withdrawn.Load(),
	}
}

// PickWait is Pick for a caller that may wait: it counts one against a
// backend of p and returns it, with how long the call waited in the queue.
// Release it (or end its tunnel) as after Pick. upgrade marks a WebSocket
// handshake: with Config.MaxHandshakesPerBackend set, a backend takes one
// only with a handshake token, and one without counts as full for it.
//
//   - A backend free now: returned at once. When nobody waits, this costs
//     one atomic load more than Pick.
//   - No usable backend at all (none healthy, or skip excluded each):
//     ErrNoBackend at once.
//   - Every usable backend full (max-conns reached, or, for an upgrade, no
//     handshake token): the call waits in the pool's FIFO queue. Capacity
//     freed by a Release or TunnelEnded of any backend of the pool (a
//     draining one too), a reload (a new backend, a raised max-conns), a
//     backend coming back up (after active checks, or at the end of a
//     passive ejection), or a handshake token refilling goes to the
//     queue in order, so a newcomer never overtakes a waiting call; a waiter
//     that cannot use the freed capacity (its skip excludes the backend, or
//     it is an upgrade and the backend has no token) lets the next one take
//     it. After timeout: ErrQueueTimeout (timeout ≤ 0: at once). When every
//     backend a waiter could use leaves (unhealthy, removed) and something
//     wakes the queue: ErrNoBackend.
//   - The queue already holds MaxQueue calls (or MaxQueue < 0): ErrQueueFull
//     at once.
//
// To wait for one particular backend (a sticky node), pass a skip that
// excludes every other. skip may be called from other goroutines (those that
// wake the queue) while the call waits, with the queue's lock held: it must
// not call into p. PickWait blocks the calling goroutine; the timeout runs
// on the Balancer's Clock.
func (p *Pool) PickWait(skip func(*Backend) bool, upgrade bool, timeout time.Duration) (*Backend, time.Duration, error) {
	if p.gate.Load() == 0 {
		b, out := p.pick(skip, upgrade)
		if b != nil {
			return b, 0, nil
		}
		if !out.full {
			return nil, 0, ErrNoBackend
		}
	}
	w := &waiter{skip: skip, upgrade: upgrade, done: make(chan struct{})}
	if b, err, queued := p.wait(w, timeout); !queued {
		return b, 0, err
	}
	<-w.done
	return w.b, w.waited, w.err
}

// A QueueWaiter gets the answer of a PickAsync call that waited.
type QueueWaiter interface {
	QueueAnswer(b *Backend, waited time.Duration, err error)
}

// Ticket is a PickAsync call that waits in its pool's queue.
type Ticket struct {
	p *Pool
	w *waiter
}

// PickAsync is PickWait for a caller that does not block while it waits.
// When PickWait would answer at once (a backend free now, no usable
// backend, a full queue, a timeout ≤ 0), PickAsync returns that answer,
// with a nil Ticket, and never calls done. Otherwise the call waits in the
// pool's queue exactly as PickWait's would, and done.QueueAnswer gets its
// answer once:
// from the goroutine that freed the slot (a Release, a reload, a health
// change) or from the clock's timer, with the queue's lock held, so done
// must neither block nor call into the pool or its backends (hand the
// answer to another goroutine). Withdraw takes the call out of the queue
// before it is answered.
func (p *Pool) PickAsync(skip func(*Backend) bool, upgrade bool, timeout time.Duration, done QueueWaiter) (*Backend, error, *Ticket) {
	if p.gate.Load() == 0 {
		b, out := p.pick(skip, upgrade)
		if b != nil {
			return b, nil, nil
		}
		if !out.full {
			return nil, ErrNoBackend, nil
		}
	}
	w := &waiter{skip: skip, upgrade: upgrade, cb: done}
	if b, err, queued := p.wait(w, timeout); !queued {
		return b, err, nil
	}
	return nil, nil, &Ticket{p: p, w: w}
}

// Withdraw takes t's call out of the queue (its client left): done will
// not be called, and nothing is counted against a backend. false: the
// call already has its answer (done has run, or runs now): the caller then
// owns what it got, a backend to Release included.
func (t *Ticket) Withdraw() bool {
	p, w := t.p, t.w
	q := &p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !w.queued {
		return false
	}
	q.removeLocked(w)
	p.setWaitingLocked()
	if w.timer != nil {
		w.timer.Stop()
	}
	q.withdrawn.Add(1)
	// No capacity was freed: a waiter behind w that could use a slot would
	// have been served when the slot freed (dispatchLocked), so nothing
	// more can be served now.
	return true
}

// wait queues w, unless the answer is known at once (queued false).
func (p *Pool) wait(w *waiter, timeout time.Duration) (b *Backend, err error, queued bool) {
	q := &p.q
	clk := p.bl.clock
	skip, upgrade := w.skip, w.upgrade
	w.since = clk.Now()
	q.mu.Lock()
	if q.n >= p.bl.maxQueue {
		// Full: unless a slot is free now for this call (a newcomer may
		// not queue, but neither may it overtake: only when none waits).
		if q.n == 0 {
			b, out := p.pick(skip, upgrade)
			q.mu.Unlock()
			switch {
			case b != nil:
				return b, nil, false
			case !out.full:
				return nil, ErrNoBackend, false
			}
		} else {
			q.mu.Unlock()
		}
		q.full.Add(1)
		return nil, ErrQueueFull, false
	}
	// In the gate before the dispatch below picks for it: a Release that
	// read the gate as 0 had already decremented its count, which that
	// pick sees.
	// w answered by the dispatch below, or by the timeout ≤ 0, is answered
	// here, not through done or cb.
	cb := w.cb
	w.cb = noAnswer{}
	q.pushLocked(w)
	p.setWaitingLocked()
	p.dispatchLocked()
	if !w.queued {
		q.mu.Unlock()
		return w.b, w.err, false
	}
	if timeout <= 0 {
		p.failLocked(w, ErrQueueTimeout) // not waited: not counted as queued
		q.timeouts.Add(1)
		q.mu.Unlock()
		return nil, ErrQueueTimeout, false
	}
	q.queued.Add(1)
	w.cb = cb
	w.timer = clk.AfterFunc(timeout, func() { p.expire(w) })
	q.mu.Unlock()
	return nil, nil, true
}

// noAnswer drops the answer of a waiter answered within wait.
type noAnswer struct{}

func (noAnswer) QueueAnswer(*Backend, time.Duration, error) {}

// answered tells w's caller its answer (b, err and waited are set).
func (w *waiter) answered() {
	if w.cb != nil {
		w.cb.QueueAnswer(w.b, w.waited, w.err)
		return
	}
	close(w.done)
}

// expire ends w's wait with ErrQueueTimeout, unless it was served.
func (p *Pool) expire(w *waiter) {
	q := &p.q
	q.mu.Lock()
	if w.queued {
		p.failLocked(w, ErrQueueTimeout)
		q.timeouts.Add(1)
	}
	q.mu.Unlock()
}

// failLocked removes w from the queue with err.
func (p *Pool) failLocked(w *waiter, err error) {
	p.q.removeLocked(w)
	p.setWaitingLocked()
	w.err = err
	w.waited = p.bl.clock.Now().Sub(w.since)
	w.answered()
}

// kick offers freed capacity to the queue.
func (p *Pool) kick() {
	q := &p.q
	q.mu.Lock()
	p.dispatchLocked()
	q.mu.Unlock()
}

// setWaitingLocked publishes the queue's length (q.mu held).
func (p *Pool) setWaitingLocked() {
	p.waiting.Store(int32(p.q.n))
	if p.q.n == 0 {
		p.gate.Store(0)
	} else {
		p.gate.Store(math.MaxInt64)
	}
}

// kickIfWaiting is kick when someone waits.
func (p *Pool) kickIfWaiting() {
	if p.gate.Load() != 0 {
		p.kick()
	}
}

// dispatchLocked serves the queue in order while capacity lasts, and, when
// calls are left waiting, arranges to run again when a handshake token
// refills or a passive ejection ends. A waiter
// with neither skip nor upgrade can use any free slot: when it finds none,
// nothing later can be served either, and dispatch stops. An upgrade
// without skip that finds none means no later upgrade can be served; plain
// requests behind it still may. Waiters with a skip are each tried.
func (p *Pool) dispatchLocked() {
	q := &p.q
	var (
		next        int64 // earliest handshake token of a backend with a free slot
		upgradeFull bool
	)
	for w := q.head; w != nil; {
		nw := w.next
		if w.upgrade && upgradeFull {
			w = nw
			continue
		}
		b, out := p.pick(w.skip, w.upgrade)
		switch {
		case b != nil:
			q.removeLocked(w)
			if w.timer != nil {
				w.timer.Stop()
			}
			w.b = b
			w.waited = p.bl.clock.Now().Sub(w.since)
			w.answered()
			if w.timer != nil {
				q.served.Add(1)
			} // else: served within wait, before it was counted as queued
		case !out.full:
			q.removeLocked(w)
			if w.timer != nil {
				w.timer.Stop()
				q.noBackend.Add(1)
			}
			w.err = ErrNoBackend
			w.waited = p.bl.clock.Now().Sub(w.since)
			w.answered()
		default:
			if out.next != 0 && (next == 0 || out.next < next) {
				next = out.next
			}
			if w.skip == nil {
				if !w.upgrade {
					nw = nil // no slot anywhere: nothing more can be served
				} else {
					upgradeFull = true
				}
			}
		}
		w = nw
	}
	p.setWaitingLocked()
	if q.n == 0 {
		return
	}
	// A passive ejection ends by time, with no event: wake the queue then.
	for _, b := range p.Backends() {
		if b.flags.Load()&fEjected != 0 {
			if t := b.ejectUntil.Load(); next == 0 || t < next {
				next = t
			}
		}
	}
	if next != 0 {
		p.wakeAtLocked(next)
	}
}

// wakeAtLocked arranges a dispatch at clock nanoseconds t (when a
// handshake token refills), unless one is due by then.
func (p *Pool) wakeAtLocked(t int64) {
	q := &p.q
	if q.wake != nil && q.wakeAt <= t {
		return
	}
	if q.wake != nil {
		q.wake.Stop()
	}
	q.wakeSeq++
	seq := q.wakeSeq
	d := time.Duration(t - p.bl.clock.Now().UnixNano())
	q.wakeAt = t
	q.wake = p.bl.clock.AfterFunc(max(d, 1), func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.wakeSeq != seq {
			return // replaced by an earlier one
		}
		q.wake = nil
		p.dispatchLocked()
	})
}

// pacing is the handshake token bucket's shape, the same for every backend
// (GCRA: a token every interval, at most burst at once).
type pacing struct {
	interval int64 // nanoseconds per token; 0: pacing off
	tau      int64 // (burst-1) × interval
}

func makePacing(rate float64, burst int) pacing {
	if rate <= 0 {
		return pacing{}
	}
	iv := max(int64(math.Round(1e9/rate)), 1)
	if burst <= 0 {
		burst = max(1, int(rate/10))
	}
	return pacing{interval: iv, tau: int64(burst-1) * iv}
}

// checkPacing validates the handshake pacing settings.
func checkPacing(rate float64, burst int) error {
	if math.IsNaN(rate) || rate < 0 || rate > MaxHandshakeRate {
		return fmt.Errorf("balancer: max handshakes per backend must be 0..%g per second, got %g", float64(MaxHandshakeRate), rate)
	}
	if burst < 0 || burst > 1_000_000 {
		return fmt.Errorf("balancer: handshake burst must be 0..1000000, got %d", burst)
	}
	return nil
}

// tokenAt returns when b next has a handshake token (clock nanoseconds; at
// or before now: it has one).
func (b *Backend) tokenAt() int64 { return b.h.hsTat.Load() - b.bl.pace.tau }

// takeToken takes one of b's handshake tokens at now, if it has one.
func (b *Backend) takeToken(now int64) bool {
	pc := &b.bl.pace
	for {
		tat := b.h.hsTat.Load()
		if tat-pc.tau > now {
			return false
		}
		if b.h.hsTat.CompareAndSwap(tat, max(tat, now)+pc.interval) {
			return true
		}
	}
}

// refundToken gives back a token taken by a pick that then lost b's slot.
func (b *Backend) refundToken() { b.h.hsTat.Add(-b.bl.pace.interval) }
