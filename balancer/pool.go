package balancer

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
)

// Policy is how a Pool picks among its backends.
type Policy uint8

const (
	// LeastConn picks the backend with the lowest (Active+1)/Weight, ties
	// broken uniformly at random. The default (zero value).
	LeastConn Policy = iota
	// RoundRobin cycles through the backends by smooth weighted round robin
	// (nginx's algorithm): weight 3 vs 1 gives a a b a, a a b a, ...
	RoundRobin
)

// ParsePolicy parses the --balance value: "least-conn" or "round-robin".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "least-conn":
		return LeastConn, nil
	case "round-robin":
		return RoundRobin, nil
	}
	return 0, fmt.Errorf("balancer: policy %q: want least-conn or round-robin", s)
}

// String returns the --balance spelling of p.
func (p Policy) String() string {
	switch p {
	case LeastConn:
		return "least-conn"
	case RoundRobin:
		return "round-robin"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Pool is a named set of backends sharing one pick policy. Its name and
// policy are immutable; its backend list is replaced as a whole by reloads
// and DNS re-resolution. Pick and Release may be called from any number of
// goroutines.
type Pool struct {
	name   string    // immutable
	policy Policy    // immutable
	bl     *Balancer // immutable; owner

	// live is the backends that take new requests (not draining), in
	// configuration order; the slice is never modified once stored. Empty
	// when a reload or DNS left the pool without backends: Pick returns nil.
	live atomic.Pointer[[]*Backend]

	// rrMu serialises RoundRobin picks: the smooth weighted round robin
	// updates every backend's rrCurrent together. Unused by LeastConn.
	rrMu sync.Mutex

	rb *Rebalancer // immutable pointer; the pool's rebalancing planner

	// waiting is how many PickWait calls are queued (the length of the
	// queue below), and gate is 0 when none is, math.MaxInt64 when some
	// are: Release compares the count it leaves with gate, one comparison
	// for both of its rare cases. Both change under q.mu only.
	waiting atomic.Int32
	gate    atomic.Int64
	q       queue

	// capped is set while some live backend has a max-conns: only then do
	// picks check caps (uncapped pools scan as before caps existed). Set
	// before a reload stores a cap, cleared after the last cap is gone.
	capped atomic.Bool
}

func makePool(name string, policy Policy, bl *Balancer) *Pool {
	p := &Pool{name: name, policy: policy, bl: bl}
	p.rb = newRebalancer(p, bl.cfg.Rebalance, bl.cfg.RebalanceTolerance)
	p.live.Store(&[]*Backend{})
	return p
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Policy returns the pool's pick policy.
func (p *Pool) Policy() Policy { return p.policy }

// Backends returns the pool's live backends (draining ones excluded, healthy
// or not) in configuration order. The slice is shared: callers must not
// modify it; a reload stores a new one.
func (p *Pool) Backends() []*Backend { return *p.live.Load() }

// Lookup returns the live backend with address addr (as Addr returns it,
// ASCII case-insensitive), or nil.
func (p *Pool) Lookup(addr string) *Backend {
	for _, b := range p.Backends() {
		if strings.EqualFold(b.addr, addr) {
			return b
		}
	}
	return nil
}

// Active returns the sum of the live backends' Active counts.
func (p *Pool) Active() int64 {
	var n int64
	for _, b := range p.Backends() {
		n += b.Active()
	}
	return n
}

// Healthy returns how many live backends would be picked now.
func (p *Pool) Healthy() int {
	n := 0
	var now int64
	for _, b := range p.Backends() {
		if b.usable(&now) {
			n++
		}
	}
	return n
}

// Pick chooses a backend that takes requests now (not down by active
// checks, not ejected by passive ones, not draining, not at its max-conns)
// and counts one against it (its Active grows by 1); the caller must call
// Release on it exactly once when the request finishes or its tunnel
// closes. skip, if non-nil, excludes backends (for example, those already
// tried for this request); it is called at most once per backend per scan
// (a scan is repeated when a concurrent Pick took the last slot of a capped
// backend first) and must not call Pick. Pick returns nil when no backend
// is left, or every one left is full. It does not queue and is not paced:
// PickWait does both. It does not allocate.
//
// A capped backend's count never exceeds its max-conns: the scan passes
// over full backends, and the winner is taken by compare-and-swap below
// its cap (on losing that race, Pick scans again). An uncapped backend is
// counted with one atomic add, as before caps existed.
//
// Weights are effective weights: the configured weight, ramped down while
// a backend is in slow start.
//
// LeastConn reads each backend's atomic counter without a lock and then
// increments the winner; two concurrent Picks may both see the same minimum
// and choose the same backend, which later Picks even out (the weight test
// holds from 8 goroutines). A per-pool mutex would make the choice exact but
// serialise every request of a pool on one lock. Measured on 2 cores with
// both hammering one pool (BenchmarkPickParallel), the mutex is steadier at
// 2 backends (40-49 ns/op vs 35-94 ns/op lock-free, cache-line bouncing) and
// slower at 64 (220-243 vs 202-207 ns/op); at a proxy's real pick rate
// (one per request) there is no contention, the lock-free path costs 25 ns
// with 2 backends, and no goroutine ever waits on another's preempted
// critical section. RoundRobin has to update
// every backend's state together, so it holds a per-pool mutex.
func (p *Pool) Pick(skip func(*Backend) bool) *Backend {
	if !p.capped.Load() {
		// No caps in the pool: the scan as before caps existed.
		var b *Backend
		if p.policy == RoundRobin {
			b = p.pickRoundRobin(skip)
		} else {
			b = p.pickLeastConn(skip)
		}
		if b == nil || b.tryAcquire() {
			return b
		}
		// A reload capped b meanwhile: the checked scan.
	}
	b, _ := p.pickChecked(skip, false)
	return b
}

// pickOutcome says why pick returned nil, and when a paced backend with a
// free slot gets its next handshake token.
type pickOutcome struct {
	full bool  // some usable, not skipped backend was full (or without a token)
	next int64 // clock nanoseconds of the earliest next token; 0: none
}

// pick is Pick, with handshake pacing for upgrades when configured, and
// why it found nothing.
func (p *Pool) pick(skip func(*Backend) bool, upgrade bool) (*Backend, pickOutcome) {
	if !upgrade || p.bl.pace.interval == 0 {
		if !p.capped.Load() {
			var b *Backend
			if p.policy == RoundRobin {
				b = p.pickRoundRobin(skip)
			} else {
				b = p.pickLeastConn(skip)
			}
			if b == nil || b.tryAcquire() {
				return b, pickOutcome{}
			}
		}
	}
	return p.pickChecked(skip, upgrade)
}

// pickChecked picks with caps checked (and pacing, for an upgrade).
func (p *Pool) pickChecked(skip func(*Backend) bool, upgrade bool) (*Backend, pickOutcome) {
	pace := upgrade && p.bl.pace.interval != 0
	check := pace || p.capped.Load()
	for {
		var (
			b   *Backend
			out pickOutcome
			now int64
		)
		if p.policy == RoundRobin {
			b = p.pickRoundRobinChecked(skip, check, pace, &out, &now)
		} else {
			b = p.pickLeastConnChecked(skip, check, pace, &out, &now)
		}
		if b == nil {
			return nil, out
		}
		if pace && !b.takeToken(p.bl.nowNanos(&now)) {
			continue // a concurrent upgrade took b's token
		}
		if b.tryAcquire() {
			return b, out
		}
		if pace {
			b.refundToken()
		}
		// A concurrent Pick took b's last slot: scan again.
	}
}

// eligible reports whether b can take one more now, with its handshake
// token when pace; else it notes why in out.
func (p *Pool) eligible(b *Backend, pace bool, out *pickOutcome, now *int64) bool {
	if b.full() {
		out.full = true
		return false
	}
	if pace {
		if t := b.tokenAt(); t > p.bl.nowNanos(now) {
			out.full = true
			if out.next == 0 || t < out.next {
				out.next = t
			}
			return false
		}
	}
	return true
}

// pickLeastConn returns the backend with the lowest (active+1)/weight,
// comparing by cross-multiplication (HAProxy lb_fwlc.c's key, without its
// scaling), and breaks ties uniformly by reservoir sampling (Caddy
// selectionpolicies.go): the k-th tied backend replaces the choice with
// probability 1/k.
func (p *Pool) pickLeastConn(skip func(*Backend) bool) *Backend {
	var (
		best     *Backend
		bestLoad int64 // best.active+1 as read during this scan
		bestW    int64 // best's effective weight
		ties     uint64
		rnd      uint64 // LCG state, seeded from math/rand/v2 at the first tie
		now      int64  // clock, read at most once, only when a state needs it
	)
	for _, b := range *p.live.Load() {
		if !b.usable(&now) || skip != nil && skip(b) {
			continue
		}
		load := b.active.Load() + 1
		w := b.effWeight(&now)
		if best == nil {
			best, bestLoad, bestW, ties = b, load, w, 1
			continue
		}
		// load/w vs bestLoad/bestW; scaled weights are < 2^19, so no overflow.
		l, r := load*bestW, bestLoad*w
		switch {
		case l < r:
			best, bestLoad, bestW, ties = b, load, w, 1
		case l == r:
			// Reservoir sampling: keep b with probability 1/ties. One
			// ChaCha8 draw per Pick seeds a 64-bit LCG (Knuth MMIX) whose high
			// 32 bits are scaled to [0, ties); plenty for spreading load, and
			// a quarter of the cost of a runtime draw per tie at 64 backends.
			if ties == 1 {
				rnd = rand.Uint64()
			}
			ties++
			rnd = rnd*6364136223846793005 + 1442695040888963407
			if (rnd>>32)*ties>>32 == 0 {
				best, bestLoad, bestW = b, load, w
			}
		}
	}
	return best
}

// pickRoundRobin is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer) over the usable backends not skipped: each
// gains its effective weight, the largest current weight wins and loses the
// total.
func (p *Pool) pickRoundRobin(skip func(*Backend) bool) *Backend {
	p.rrMu.Lock()
	defer p.rrMu.Unlock()
	var (
		best  *Backend
		total int64
		now   int64
	)
	for _, b := range *p.live.Load() {
		if !b.usable(&now) || skip != nil && skip(b) {
			continue
		}
		w := b.effWeight(&now)
		b.rrCurrent += w
		total += w
		if best == nil || b.rrCurrent > best.rrCurrent {
			best = b
		}
	}
	if best != nil {
		best.rrCurrent -= total
	}
	return best
}

// pickLeastConnChecked is pickLeastConn for pools with caps or an
// upgrade under pacing: with check, it passes over full backends (and,
// with pace, those without a handshake token), noting why in out. It is a
// copy rather than a flag in pickLeastConn so that uncapped pools keep
// their scan as it was: with the flag (and its spills) in the one scan,
// BenchmarkPick at 64 backends was 18% (least-conn) and 25% (round robin)
// slower, best of 10 interleaved runs.
func (p *Pool) pickLeastConnChecked(skip func(*Backend) bool, check, pace bool, out *pickOutcome, now *int64) *Backend {
	var (
		best     *Backend
		bestLoad int64 // best.active+1 as read during this scan
		bestW    int64 // best's effective weight
		ties     uint64
		rnd      uint64 // LCG state, seeded from math/rand/v2 at the first tie
	)
	for _, b := range *p.live.Load() {
		if !b.usable(now) || skip != nil && skip(b) {
			continue
		}
		if check && !p.eligible(b, pace, out, now) {
			continue
		}
		load := b.active.Load() + 1
		w := b.effWeight(now)
		if best == nil {
			best, bestLoad, bestW, ties = b, load, w, 1
			continue
		}
		// load/w vs bestLoad/bestW; scaled weights are < 2^19, so no overflow.
		l, r := load*bestW, bestLoad*w
		switch {
		case l < r:
			best, bestLoad, bestW, ties = b, load, w, 1
		case l == r:
			// Reservoir sampling: keep b with probability 1/ties. One
			// ChaCha8 draw per Pick seeds a 64-bit LCG (Knuth MMIX) whose high
			// 32 bits are scaled to [0, ties); plenty for spreading load, and
			// a quarter of the cost of a runtime draw per tie at 64 backends.
			if ties == 1 {
				rnd = rand.Uint64()
			}
			ties++
			rnd = rnd*6364136223846793005 + 1442695040888963407
			if (rnd>>32)*ties>>32 == 0 {
				best, bestLoad, bestW = b, load, w
			}
		}
	}
	return best
}

// pickRoundRobinChecked is pickRoundRobin for pools with caps or an
// upgrade under pacing; check and pace as for pickLeastConnChecked.
func (p *Pool) pickRoundRobinChecked(skip func(*Backend) bool, check, pace bool, out *pickOutcome, now *int64) *Backend {
	p.rrMu.Lock()
	defer p.rrMu.Unlock()
	var (
		best  *Backend
		total int64
	)
	for _, b := range *p.live.Load() {
		if !b.usable(now) || skip != nil && skip(b) {
			continue
		}
		if check && !p.eligible(b, pace, out, now) {
			continue
		}
		w := b.effWeight(now)
		b.rrCurrent += w
		total += w
		if best == nil || b.rrCurrent > best.rrCurrent {
			best = b
		}
	}
	if best != nil {
		best.rrCurrent -= total
	}
	return best
}
