package balancer

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the time source of the health checker, passive ejection, slow
// start, DNS re-resolution and drain (tailscale's tstime.Clock idea): the
// real clock in production, a fake one in tests, which then run without
// sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a fake clock, from
	// the goroutine that advances it) once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did so.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Defaults for the zero values of HealthConfig.
const (
	DefaultHealthInterval = 2 * time.Second
	DefaultHealthTimeout  = time.Second
	DefaultHealthRise     = 2
	DefaultHealthFall     = 3
	DefaultMaxFails       = 3
	DefaultFailTimeout    = 10 * time.Second
)

// HealthConfig configures active checks and passive ejection. Zero values
// mean the defaults above.
//
// Active: once Start has run, every live backend is probed every Interval
// (each wait drawn from 0.9..1.1 Interval, and the first from 0..1
// Interval, so that checks of many backends do not synchronise). Fall
// failed probes in a row take a backend down; Rise passing probes in a row
// bring it back (with slow start). A passing probe also ends a passive
// ejection.
//
// Passive: the caller reports upstream failures (ReportFailure: connect
// refused or timed out, response timeout; never a client-side error).
// MaxFails of them within FailTimeout eject the backend for FailTimeout.
type HealthConfig struct {
	// Probe checks one backend, within ctx's deadline (Timeout); nil
	// means no active checks. It knows the network, the balancer does not.
	Probe    func(ctx context.Context, b *Backend) error
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	// MaxFails: < 0 disables passive ejection.
	MaxFails    int
	FailTimeout time.Duration
}

func (h HealthConfig) normalized() HealthConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&h.Interval, DefaultHealthInterval)
	def(&h.Timeout, DefaultHealthTimeout)
	def(&h.FailTimeout, DefaultFailTimeout)
	if h.Rise <= 0 {
		h.Rise = DefaultHealthRise
	}
	if h.Fall <= 0 {
		h.Fall = DefaultHealthFall
	}
	if h.MaxFails == 0 {
		h.MaxFails = DefaultMaxFails
	}
	return h
}

// health is a backend's cold state: what the checker and passive reports
// keep between events.
type health struct {
	mu sync.Mutex // guards every field below

	fails    []int64 // ring of the times of the last MaxFails passive failures
	next     int     // the ring's oldest entry once it is full
	failures uint64  // passive failures reported, ever

	okRun, failRun int // consecutive passing / failing active checks
	checks         uint64
	lastCheck      time.Time // start of the last finished check; zero: none yet
	lastDur        time.Duration
	lastErr        string // "" when the last check passed

	timer   Timer // the next active check; nil when none is scheduled
	stopped bool  // no more checks: removed, or the Balancer closed

	moved atomic.Uint64 // tunnel closes asked by rebalancing (not under mu)
	hsTat atomic.Int64  // handshake pacing: GCRA theoretical arrival time, clock ns (not under mu)
}

// setFlag sets bit f and reports whether this call set it.
func (b *Backend) setFlag(f uint32) bool {
	for {
		old := b.flags.Load()
		if old&f != 0 {
			return false
		}
		if b.flags.CompareAndSwap(old, old|f) {
			return true
		}
	}
}

// clearFlag clears bit f and reports whether this call cleared it.
func (b *Backend) clearFlag(f uint32) bool {
	for {
		old := b.flags.Load()
		if old&f == 0 {
			return false
		}
		if b.flags.CompareAndSwap(old, old&^f) {
			return true
		}
	}
}

// nowNanos returns the clock in nanoseconds, read once per *now.
func (bl *Balancer) nowNanos(now *int64) int64 {
	if *now == 0 {
		*now = bl.clock.Now().UnixNano()
	}
	return *now
}

// usable reports whether b takes new requests now. An ejection whose time
// is over ends here (logged once, by whoever clears the flag).
func (b *Backend) usable(now *int64) bool {
	f := b.flags.Load()
	if f&(fDown|fDraining) != 0 {
		return false
	}
	if f&fEjected != 0 {
		if b.bl.nowNanos(now) < b.ejectUntil.Load() {
			return false
		}
		if b.clearFlag(fEjected) {
			b.bl.cfg.Logf("backend %s: back after --fail-timeout %v", b, b.bl.cfg.Health.FailTimeout)
			b.startSlow(*now)
		}
	}
	return true
}

// Healthy reports whether b takes new requests now: not down by active
// checks, not ejected by passive ones, and not draining.
func (b *Backend) Healthy() bool {
	var now int64
	return b.usable(&now)
}

// weightScale is the fixed-point scale of effective weights.
const weightShift = 10

// effWeight is b's weight << weightShift, ramped by slow start.
func (b *Backend) effWeight(now *int64) int64 {
	w := int64(b.weight.Load()) << weightShift
	if b.flags.Load()&fSlow == 0 {
		return w
	}
	d := b.bl.cfg.SlowStart
	el := b.bl.nowNanos(now) - b.slowFrom.Load()
	if d <= 0 || el >= int64(d) {
		b.clearFlag(fSlow)
		return w
	}
	return slowWeight(w, el, int64(d))
}

// slowWeight ramps w linearly from w/16 at elapsed 0 to w at elapsed d.
func slowWeight(w, elapsed, d int64) int64 {
	if elapsed < 0 {
		elapsed = 0
	}
	e := int64(float64(w) * (1 + 15*float64(elapsed)/float64(d)) / 16)
	return max(e, 1)
}

// startSlow begins b's slow start at now (clock nanoseconds), when slow
// start is on.
func (b *Backend) startSlow(now int64) {
	if b.bl.cfg.SlowStart <= 0 {
		return
	}
	if now == 0 {
		now = b.bl.clock.Now().UnixNano()
	}
	b.slowFrom.Store(now)
	b.setFlag(fSlow)
}

// ReportFailure counts one upstream failure against b: a refused or timed
// out connect, or a response timeout. Client-side errors must never be
// reported. MaxFails failures within FailTimeout eject b for FailTimeout.
func (b *Backend) ReportFailure() {
	bl := b.bl
	hc := &bl.cfg.Health
	now := bl.clock.Now().UnixNano()
	h := b.h
	h.mu.Lock()
	h.failures++
	if hc.MaxFails < 0 {
		h.mu.Unlock()
		return
	}
	if len(h.fails) < hc.MaxFails {
		h.fails = append(h.fails, now)
	} else {
		h.fails[h.next] = now
		h.next = (h.next + 1) % hc.MaxFails
	}
	// With the ring full, h.fails[h.next] is the oldest of the last MaxFails.
	eject := len(h.fails) == hc.MaxFails && now-h.fails[h.next%len(h.fails)] < int64(hc.FailTimeout)
	if eject {
		h.fails, h.next = h.fails[:0], 0
	}
	h.mu.Unlock()
	if eject {
		b.ejectUntil.Store(now + int64(hc.FailTimeout))
		if b.setFlag(fEjected) {
			bl.cfg.Logf("backend %s: ejected for %v: %d upstream failures within --fail-timeout", b, hc.FailTimeout, hc.MaxFails)
			b.p.kickIfWaiting() // waiters left with no usable backend hear now
		}
	}
}

// Failures returns the upstream failures reported against b (ReportFailure).
func (b *Backend) Failures() uint64 {
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	return b.h.failures
}

// jitter returns d scaled by a random factor in [lo, hi).
func jitter(d time.Duration, lo, hi float64) time.Duration {
	return time.Duration(float64(d) * (lo + (hi-lo)*rand.Float64()))
}

// scheduleCheck arranges b's next active check in d, unless checks of b
// were stopped.
func (bl *Balancer) scheduleCheck(b *Backend, d time.Duration) {
	h := b.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.timer = bl.clock.AfterFunc(d, func() { bl.runCheck(b) })
}

// stopChecks cancels b's pending check; a check already running finishes
// and schedules nothing.
func (b *Backend) stopChecks() {
	h := b.h
	h.mu.Lock()
	h.stopped = true
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	h.mu.Unlock()
}

// runCheck probes b once, records the result and schedules the next check.
func (bl *Balancer) runCheck(b *Backend) {
	hc := &bl.cfg.Health
	ctx, cancel := context.WithTimeout(bl.ctx, hc.Timeout)
	start := bl.clock.Now()
	err := hc.Probe(ctx, b)
	cancel()
	if bl.ctx.Err() != nil {
		return // closing: a probe cut short says nothing about b
	}
	bl.recordCheck(b, start, bl.clock.Now().Sub(start), err)
	bl.scheduleCheck(b, jitter(hc.Interval, 0.9, 1.1))
}

// recordCheck applies one active check result: rise/fall, and the end of a
// passive ejection on a pass. Each change of state is logged once.
func (bl *Balancer) recordCheck(b *Backend, start time.Time, dur time.Duration, err error) {
	hc := &bl.cfg.Health
	h := b.h
	h.mu.Lock()
	h.checks++
	h.lastCheck, h.lastDur = start, dur
	var okRun, failRun int
	if err == nil {
		h.okRun++
		h.failRun = 0
		h.lastErr = ""
	} else {
		h.failRun++
		h.okRun = 0
		h.lastErr = err.Error()
	}
	okRun, failRun = h.okRun, h.failRun
	h.mu.Unlock()

	if err != nil {
		if failRun >= hc.Fall && b.setFlag(fDown) {
			bl.cfg.Logf("backend %s: down after %d failed health checks: %v", b, failRun, err)
			b.p.kickIfWaiting() // waiters left with no usable backend hear now
		}
		return
	}
	recovered := false
	if okRun >= hc.Rise && b.clearFlag(fDown) {
		bl.cfg.Logf("backend %s: up after %d passing health checks", b, okRun)
		recovered = true
	}
	if b.clearFlag(fEjected) {
		bl.cfg.Logf("backend %s: back after a passing health check (was ejected)", b)
		recovered = true
	}
	if recovered {
		b.startSlow(0)
		b.p.kickIfWaiting()
	}
}
