package balancer

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultRebalanceTolerance is the share above fair that starts no pass
// (--rebalance-tolerance, 10%).
const DefaultRebalanceTolerance = 0.10

// RebalanceCooldown is how long after a pass ends the standing policy
// starts no new one. The clients a pass closed are still reconnecting for a
// while (Socket.IO waits 1–5 s, wsbench hold 0.2–1 s), and until they are
// back the pool's total is short of them, so the old backends look
// over-loaded against a fair share computed without them: measured, a
// pass started right after the first one (3,000 tunnels, a third node
// added) closed 45 tunnels more than the imbalance. A one-off pass
// (StartPass) is not held back.
const RebalanceCooldown = 10 * time.Second

// RebalanceSettle is how long an imbalance must be seen, plan after plan,
// before the standing policy starts a pass: a pool filling up (a burst of
// handshakes, some finished on one backend and still in flight on another)
// is briefly uneven by a few tunnels, and closing them would only add
// churn. Measured: during a ramp of 3,000 clients on 2 backends, a pass
// started and moved 20 tunnels within 25 ms, before any node had joined.
const RebalanceSettle = 2 * time.Second

// RebalanceFollowUps is how many passes a one-off pass (StartPass) may
// add on its own when the pool, once its clients are back, is still
// outside the tolerance band. A pass closes at most the excess it saw at
// its start, and where its clients reconnect is least-connections' choice,
// made on counts that are briefly off while they come back: a Socket.IO
// client in the middle of its upgrade holds a long-poll and a WebSocket on
// the same node, and counts twice there. Seen in a loaded test run: 1,000
// clients moved after a third node joined, 130 of them went back to the
// old nodes (1,081/1,079/840, fair 1,000), and the one-off pass had ended
// at its budget. The standing policy (--rebalance) corrects that by
// itself; a one-off pass now gets the same correction, at its own rate,
// with the same pauses (RebalanceCooldown, then RebalanceSettle), at
// most this many times, and none once a plan after the cooldown finds
// the pool within the band.
const RebalanceFollowUps = 2

// MaxRebalanceRate is the largest rate a Rebalancer takes, in closes per
// second per pool.
const MaxRebalanceRate = 1e6

// ErrTooFewHealthy is StartPass's answer for a pool with fewer than two
// healthy backends: there is nowhere to move tunnels to.
var ErrTooFewHealthy = errors.New("balancer: rebalance needs at least 2 healthy backends in the pool")

// Move is one decision of Rebalancer.Plan: start closing N of Backend's
// live tunnels now.
type Move struct {
	Backend *Backend
	N       int
}

// RebalanceStatus is one healthy backend's place in its pool's balance,
// for status output.
type RebalanceStatus struct {
	Backend *Backend
	// Fair is the backend's fair share of the pool's live tunnels: total ×
	// effective weight / sum of the healthy backends' effective weights.
	Fair float64
	// Tunnels is Backend.Tunnels() when the status was taken.
	Tunnels int64
}

// Rebalancer plans the closing of excess long-lived tunnels on the
// over-loaded backends of one pool, so that after a scale-out the new
// backend gets its share when the closed clients reconnect (least-conn
// sends them to it). It decides how many to close where; the caller (the
// loop) chooses which tunnels and closes them, asynchronously. Safe for
// concurrent use.
//
// Counting. Only the pool's healthy backends count (usable: not down, not
// ejected, not draining). total is the sum of their live tunnels
// (Backend.Tunnels(), which includes tunnels being closed: their clients
// are expected to reconnect, so they stay in the pool's total). The fair
// share of b is total × effective weight(b) / Σ effective weights (slow
// start lowers a new backend's share while it ramps). The load of b is its
// live tunnels minus the closes already started on it and not yet finished
// (Plan's leaving), so a tunnel is never asked to close twice.
//
// Hysteresis. A pass starts when some backend's load exceeds
// fair × (1 + tolerance) (and ceil(fair) + slack), or when one is below
// fair × (1 − tolerance) (less the slack) while another is above its fair
// share plus the slack. During a pass every
// backend above fair is brought down to ceil(fair), not merely to the
// tolerance band: a pass that stopped at fair × (1 + tolerance) would leave
// a fleet of 2 × 1500 tunnels, after a third node is added, at
// 1100/1100/800 (fair 1000), which is outside ±15% and stays there, since
// nothing above the trigger is left to close. The tolerance decides when
// to act, not where to stop. The pass ends when every backend's load is at
// most ceil(fair) + 2 (a slack of a few tunnels, so that the churn of
// arrivals does not keep a pass alive for single tunnels), when
// it has started as many closes as the excess it saw at its first plan (its
// budget: a pass never closes more than the imbalance it was started for),
// when the pool has fewer than 2 healthy backends, or when a backend of the
// pass becomes unhealthy (its tunnels will reconnect elsewhere and change
// every share): the pass stops there, and a new one starts only when a
// later Plan sees the imbalance again.
//
// Rate. Closes come from a token bucket of Rate per second for the whole
// pool, with a burst of max(1, Rate/10): over any interval of T seconds a
// pool starts at most Rate×T + burst closes. The closes of one Plan are
// spread over the backends in proportion to their excess (largest
// remainder), never more on a backend than its excess.
//
// A rebalancer assumes closed clients reconnect (Socket.IO clients and
// WebSocket clients with a reconnect loop do): the 1012 close tells them to
// come back. Clients that do not reconnect are simply lost, and a later
// pass (with the smaller total) may close more of them.
type Rebalancer struct {
	pool *Pool // immutable

	mu        sync.Mutex
	rate      float64 // standing policy, closes per second; 0: off
	tolerance float64
	pass      bool      // a pass is running
	passRate  float64   // the running pass's rate
	passStart time.Time // when the running pass started
	budget    int64     // closes the running pass may still start; -1: not yet set
	members   map[*Backend]bool
	tokens    float64
	refilled  time.Time // when tokens were last refilled
	passes    uint64    // passes started
	now       time.Time // the latest Plan's clock
	endedAt   time.Time // when the last pass ended
	unevenAt  time.Time // since when plans have seen the imbalance (no pass running); zero: not seen
	stopped   uint64    // passes stopped by an unhealthy backend

	// A one-off pass's follow-ups (RebalanceFollowUps): how many passes
	// may still start on its behalf, and at what rate.
	followUps  int
	followRate float64
}

// NewRebalancer returns a planner for p with a standing rate (closes per
// second per pool; 0 means no standing policy: only StartPass runs a pass)
// and tolerance (a fraction: 0.10 leaves a backend up to 10% above fair
// alone; 0 means DefaultRebalanceTolerance). A pool built by New already has
// one (Pool.Rebalancer), configured from Config.Rebalance*.
func NewRebalancer(p *Pool, rate, tolerance float64) (*Rebalancer, error) {
	if err := checkRebalance(rate, tolerance); err != nil {
		return nil, err
	}
	return newRebalancer(p, rate, tolerance), nil
}

func newRebalancer(p *Pool, rate, tolerance float64) *Rebalancer {
	if tolerance == 0 {
		tolerance = DefaultRebalanceTolerance
	}
	return &Rebalancer{pool: p, rate: rate, tolerance: tolerance}
}

// checkRebalance validates a rate and a tolerance.
func checkRebalance(rate, tolerance float64) error {
	if math.IsNaN(rate) || rate < 0 || rate > MaxRebalanceRate {
		return fmt.Errorf("balancer: rebalance rate must be 0..%g per second, got %g", float64(MaxRebalanceRate), rate)
	}
	if math.IsNaN(tolerance) || tolerance < 0 || tolerance > 10 {
		return fmt.Errorf("balancer: rebalance tolerance must be 0..10 (a fraction: 0.1 is 10%%), got %g", tolerance)
	}
	return nil
}

// Pool returns the pool r plans for.
func (r *Rebalancer) Pool() *Pool { return r.pool }

// Rate returns the standing rate (closes per second; 0: off).
func (r *Rebalancer) Rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rate
}

// Tolerance returns the tolerance, a fraction.
func (r *Rebalancer) Tolerance() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tolerance
}

// SetRate changes the standing rate (0 turns the standing policy off; a
// pass already running keeps its own rate until it ends).
func (r *Rebalancer) SetRate(rate float64) error {
	if err := checkRebalance(rate, 0); err != nil {
		return err
	}
	r.mu.Lock()
	r.rate = rate
	r.mu.Unlock()
	return nil
}

// PassStart returns when the running pass started, or the zero time when
// none runs. The caller spares tunnels opened after it (clients that
// already moved).
func (r *Rebalancer) PassStart() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pass {
		return time.Time{}
	}
	return r.passStart
}

// Passes returns how many passes started, and how many of them were
// stopped because a backend became unhealthy.
func (r *Rebalancer) Passes() (started, stoppedUnhealthy uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.passes, r.stopped
}

// StartPass starts a one-off pass at rate closes per second (rate ≤ 0:
// the standing rate), even when the standing policy is off. It runs and
// ends like any pass (the next Plan calls do the work); a pass already
// running takes the new rate and keeps its start time. Where no standing
// policy runs, up to RebalanceFollowUps more passes may follow it, at its
// rate, while the pool stays outside the tolerance band once the moved
// clients are back. It fails when no
// rate is known or the pool has fewer than 2 healthy backends.
func (r *Rebalancer) StartPass(now time.Time, rate float64) error {
	if math.IsNaN(rate) || rate > MaxRebalanceRate {
		return fmt.Errorf("balancer: rebalance rate must be 0..%g per second, got %g", float64(MaxRebalanceRate), rate)
	}
	if r.pool.Healthy() < 2 {
		return ErrTooFewHealthy
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rate <= 0 {
		rate = r.rate
	}
	if rate <= 0 {
		return errors.New("balancer: rebalance: no rate given and no standing --rebalance rate")
	}
	r.followUps, r.followRate = RebalanceFollowUps, rate
	if r.pass {
		r.setPassRateLocked(rate)
		return nil
	}
	r.beginLocked(now, rate, nil)
	return nil
}

// burst is the token bucket's depth for rate.
func burst(rate float64) float64 { return max(1, math.Floor(rate/10)) }

func (r *Rebalancer) setPassRateLocked(rate float64) {
	r.passRate = rate
	r.tokens = min(r.tokens, burst(rate))
}

// beginLocked starts a pass; members, when known, are its backends.
func (r *Rebalancer) beginLocked(now time.Time, rate float64, members []*Backend) {
	r.pass = true
	r.passes++
	r.passRate = rate
	r.passStart = now
	r.budget = -1
	r.tokens = burst(rate)
	r.refilled = now
	r.members = make(map[*Backend]bool, len(members))
	for _, b := range members {
		r.members[b] = true
	}
	r.pool.bl.cfg.Logf("pool %s: rebalancing pass started at %g closes/s", r.pool.name, rate)
}

func (r *Rebalancer) endLocked(why string) {
	r.pass = false
	r.endedAt = r.now
	r.members = nil
	r.pool.bl.cfg.Logf("pool %s: rebalancing pass ended: %s", r.pool.name, why)
}

// share is one healthy backend as Plan sees it.
type share struct {
	b       *Backend
	w       int64 // effective weight
	tunnels int64
	load    int64 // tunnels minus closes in progress
	fair    float64
}

// shares reads the pool's healthy backends; out is reused.
func (r *Rebalancer) shares(out []share, leaving func(*Backend) int64) []share {
	out = out[:0]
	var (
		now    int64
		total  int64
		totalW int64
	)
	for _, b := range r.pool.Backends() {
		if !b.usable(&now) {
			continue
		}
		s := share{b: b, w: b.effWeight(&now), tunnels: b.Tunnels()}
		s.load = s.tunnels
		if leaving != nil {
			s.load -= max(leaving(b), 0)
		}
		total += s.tunnels
		totalW += s.w
		out = append(out, s)
	}
	for i := range out {
		out[i].fair = float64(total) * float64(out[i].w) / float64(totalW)
	}
	return out
}

// rebalanceSlack is how many tunnels above ceil(fair) a backend may stay
// when a pass ends.
const rebalanceSlack = 2

// Plan returns the closes to start now (at most one Move per backend, N ≥
// 1), given leaving(b): how many closes already started on b are still in
// progress (nil: none). Call it periodically (every ~100 ms); a call with
// nothing to do returns nil and does not allocate much. Each Move counts
// in its backend's Moved.
func (r *Rebalancer) Plan(now time.Time, leaving func(*Backend) int64) []Move {
	var buf [16]share
	ss := r.shares(buf[:0], leaving)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = now
	if len(ss) < 2 {
		if r.pass {
			r.endLocked("fewer than 2 healthy backends")
		}
		r.followUps = 0
		return nil
	}
	if r.pass {
		for b := range r.members {
			if !b.Healthy() {
				r.stopped++
				r.followUps = 0 // the pool changed under the pass: no follow-up either
				r.endLocked(fmt.Sprintf("backend %s is no longer healthy", b))
				return nil
			}
		}
	}
	var excess int64 // Σ load above ceil(fair)
	balanced, trigger, under := true, false, false
	for _, s := range ss {
		c := int64(math.Ceil(s.fair))
		if s.load > c {
			excess += s.load - c
		}
		if s.load > c+rebalanceSlack {
			balanced = false
			if float64(s.load) > s.fair*(1+r.tolerance) {
				trigger = true
			}
		}
		if float64(s.load+rebalanceSlack) < s.fair*(1-r.tolerance) {
			under = true
		}
	}
	// A backend below its share by more than the tolerance starts a pass
	// too, when others are above theirs: with three nodes one can sit at
	// −20% while the other two are at +10%, inside the band above (seen: a
	// pass's moved clients partly went back to the old nodes while the new
	// one's Engine.IO requests made it look busy, 107/109/84 for good).
	if under && !balanced {
		trigger = true
	}
	if !r.pass {
		cooling := !r.endedAt.IsZero() && now.Sub(r.endedAt) < RebalanceCooldown
		if !trigger {
			r.unevenAt = time.Time{}
			if !cooling {
				r.followUps = 0 // back within the band with the clients home: the one-off is done
			}
			return nil
		}
		if r.unevenAt.IsZero() {
			r.unevenAt = now
		}
		rate, follow := r.rate, false
		if rate <= 0 && r.followUps > 0 {
			rate, follow = r.followRate, true
		}
		if rate <= 0 || now.Sub(r.unevenAt) < RebalanceSettle || cooling {
			return nil
		}
		r.unevenAt = time.Time{}
		if follow {
			r.followUps--
			r.pool.bl.cfg.Logf("pool %s: the one-off pass left the pool outside the band: a follow-up (%d more allowed)", r.pool.name, r.followUps)
		}
		r.beginLocked(now, rate, nil)
	}
	for _, s := range ss {
		r.members[s.b] = true
	}
	if r.budget < 0 {
		r.budget = excess
	}
	if balanced {
		r.endLocked("balanced")
		return nil
	}
	if r.budget == 0 {
		r.endLocked("started as many closes as the excess it began with")
		return nil
	}

	// Refill, then spend whole tokens.
	if dt := now.Sub(r.refilled); dt > 0 {
		r.tokens = min(burst(r.passRate), r.tokens+r.passRate*dt.Seconds())
		r.refilled = now
	}
	m := min(int64(r.tokens), excess, r.budget)
	if m <= 0 {
		return nil
	}
	r.tokens -= float64(m)
	r.budget -= m

	// Largest remainder: floor(m × e / E) each, then one more to the
	// largest fractions (earlier backends first on ties).
	moves := make([]Move, 0, len(ss))
	type rem struct {
		i    int
		frac float64
	}
	var rems []rem
	var given int64
	for _, s := range ss {
		e := s.load - int64(math.Ceil(s.fair))
		if e <= 0 {
			continue
		}
		q := float64(m) * float64(e) / float64(excess)
		n := int64(q)
		moves = append(moves, Move{Backend: s.b, N: int(n)})
		rems = append(rems, rem{len(moves) - 1, q - float64(n)})
		given += n
	}
	for left := m - given; left > 0; left-- {
		best := -1
		for j, x := range rems {
			if x.frac > 0 && (best < 0 || x.frac > rems[best].frac) {
				best = j
			}
		}
		if best < 0 {
			break // rounding: m × e / E summed to slightly under m
		}
		moves[rems[best].i].N++
		rems[best].frac = 0
	}
	out := moves[:0]
	for _, mv := range moves {
		if mv.N > 0 {
			mv.Backend.h.moved.Add(uint64(mv.N))
			out = append(out, mv)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Unused gives back n of a Move on b that the caller could not start (the
// backend had fewer tunnels old enough to close): they are not counted in
// b's Moved, and the running pass gets them back in its budget and its
// token bucket (up to the burst), so that a later Plan asks again.
func (r *Rebalancer) Unused(b *Backend, n int) {
	if n <= 0 {
		return
	}
	b.h.moved.Add(^uint64(n - 1)) // -n
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pass {
		r.budget += int64(n)
		r.tokens = min(burst(r.passRate), r.tokens+float64(n))
	}
}

// FairShare returns b's fair share of its pool's live tunnels now (0 when b
// is not healthy or not in r's pool).
func (r *Rebalancer) FairShare(b *Backend) float64 {
	for _, s := range r.shares(nil, nil) {
		if s.b == b {
			return s.fair
		}
	}
	return 0
}

// Status returns the pool's healthy backends with their fair shares and
// live tunnels now, in configuration order.
func (r *Rebalancer) Status() []RebalanceStatus {
	ss := r.shares(nil, nil)
	out := make([]RebalanceStatus, len(ss))
	for i, s := range ss {
		out[i] = RebalanceStatus{Backend: s.b, Fair: s.fair, Tunnels: s.tunnels}
	}
	return out
}

// Moved returns how many of b's tunnels rebalancing passes asked to close.
func (b *Backend) Moved() uint64 { return b.h.moved.Load() }

// Rebalancer returns the pool's rebalancing planner (never nil), set up
// from Config.Rebalance and Config.RebalanceTolerance.
func (p *Pool) Rebalancer() *Rebalancer { return p.rb }

// ParseRate parses a rate flag value: "R/s", "R/m" or a bare number of
// events per second ("100/s", "6000/m", "2.5"). "0" and "off" mean 0.
func ParseRate(s string) (float64, error) {
	if s == "off" {
		return 0, nil
	}
	num, per := s, time.Second
	if n, unit, ok := strings.Cut(s, "/"); ok {
		num = n
		switch unit {
		case "s":
		case "m":
			per = time.Minute
		case "h":
			per = time.Hour
		default:
			return 0, fmt.Errorf("balancer: rate %q: unit must be /s, /m or /h", s)
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("balancer: rate %q: want a number ≥ 0 per second, as 100/s", s)
	}
	return v / per.Seconds(), nil
}

// ParseFraction parses a share: "10%" or "0.1" (both 0.1).
func ParseFraction(s string) (float64, error) {
	num, pct := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("balancer: share %q: want a percentage (10%%) or a fraction (0.1), not negative", s)
	}
	if pct {
		v /= 100
	}
	return v, nil
}
