package balancer

import "time"

// BackendStatus is one backend's state, for /status.json.
type BackendStatus struct {
	Pool string `json:"pool"`
	Addr string `json:"addr"`
	// Host is the configured HOST:PORT when it differs from Addr (a backend
	// found by resolving a name).
	Host   string `json:"host,omitempty"`
	Weight int    `json:"weight"`
	// MaxConns caps Active; 0 (omitted) means unlimited.
	MaxConns int `json:"max_conns,omitempty"`
	// EffectiveWeight is Weight as picks see it now: lower during slow start.
	EffectiveWeight float64 `json:"effective_weight"`
	// State is the first that applies of "draining" (removed by a reload or
	// DNS), "down" (failed --health-fall active checks in a row), "ejected"
	// (passive: --max-fails failures within --fail-timeout),
	// "slow-starting", "healthy".
	State   string `json:"state"`
	Active  int64  `json:"active"`  // in-flight requests plus live tunnels
	Tunnels int64  `json:"tunnels"` // live tunnels
	// Fair is the backend's fair share of its pool's live tunnels (by
	// effective weight over the healthy backends), what rebalancing
	// brings Tunnels toward; 0 when it is not healthy.
	Fair float64 `json:"fair_tunnels"`
	// Moved counts the backend's tunnels that rebalancing closed, ever.
	Moved    uint64 `json:"rebalance_moved"`
	InFlight int64  `json:"in_flight"` // requests in progress
	Picks    uint64 `json:"picks"`
	// Failures are upstream failures reported (connect refused or timed
	// out, response timeout), ever.
	Failures        uint64     `json:"failures"`
	EjectedUntil    *time.Time `json:"ejected_until,omitempty"`
	SlowStartUntil  *time.Time `json:"slow_start_until,omitempty"`
	DrainingSince   *time.Time `json:"draining_since,omitempty"`
	Checks          uint64     `json:"checks"` // active checks done
	LastCheck       *time.Time `json:"last_check,omitempty"`
	LastCheckMillis float64    `json:"last_check_ms,omitempty"`
	LastCheckError  string     `json:"last_check_error,omitempty"`
}

// PoolStatus is one pool's state, for /status.json.
type PoolStatus struct {
	Name    string `json:"name"`
	Policy  string `json:"policy"`
	Healthy int    `json:"healthy"` // live backends that take requests now
	Active  int64  `json:"active"`
	Queue   int    `json:"queue"` // PickWait calls waiting for a slot
	// Rebalance is the pool's rebalancing planner: its standing rate, its
	// tolerance and the pass running now, if any.
	Rebalance RebalanceInfo   `json:"rebalance"`
	Backends  []BackendStatus `json:"backends"` // live ones, then draining ones
}

// RebalanceInfo is a pool's rebalancing state, for /status.json.
type RebalanceInfo struct {
	Rate      float64    `json:"rate"`      // standing --rebalance, closes per second; 0: off
	Tolerance float64    `json:"tolerance"` // a fraction: 0.1 is 10%
	PassStart *time.Time `json:"pass_start,omitempty"`
	Passes    uint64     `json:"passes"` // passes started
}

// Status returns every pool with every backend, live and draining.
func (bl *Balancer) Status() []PoolStatus {
	bl.mu.Lock()
	draining := make(map[*Backend]time.Time, len(bl.draining))
	for b, t := range bl.draining {
		draining[b] = t
	}
	bl.mu.Unlock()
	var out []PoolStatus
	for _, p := range bl.Pools() {
		ps := PoolStatus{Name: p.name, Policy: p.policy.String(), Healthy: p.Healthy(), Active: p.Active(), Queue: p.QueueLen()}
		rb := p.Rebalancer()
		ps.Rebalance = RebalanceInfo{Rate: rb.Rate(), Tolerance: rb.Tolerance()}
		ps.Rebalance.Passes, _ = rb.Passes()
		if t := rb.PassStart(); !t.IsZero() {
			ps.Rebalance.PassStart = &t
		}
		fair := map[*Backend]float64{}
		for _, rs := range rb.Status() {
			fair[rs.Backend] = rs.Fair
		}
		for _, b := range p.Backends() {
			st := b.status(nil)
			st.Fair = fair[b]
			ps.Backends = append(ps.Backends, st)
		}
		for b, since := range draining {
			if b.p == p {
				ps.Backends = append(ps.Backends, b.status(&since))
			}
		}
		out = append(out, ps)
	}
	return out
}

func (b *Backend) status(drainingSince *time.Time) BackendStatus {
	var now int64
	usable := b.usable(&now)
	st := BackendStatus{
		Pool: b.p.name, Addr: b.addr, Weight: b.Weight(), MaxConns: b.MaxConns(),
		Active: b.Active(), Tunnels: b.Tunnels(), Picks: b.Picks(), Moved: b.Moved(),
	}
	if b.host != b.addr {
		st.Host = b.host
	}
	st.InFlight = max(st.Active-st.Tunnels, 0)
	st.EffectiveWeight = float64(b.effWeight(&now)) / (1 << weightShift)
	f := b.flags.Load()
	switch {
	case f&fDraining != 0:
		st.State = "draining"
		st.DrainingSince = drainingSince
	case f&fDown != 0:
		st.State = "down"
	case !usable:
		st.State = "ejected"
		t := time.Unix(0, b.ejectUntil.Load())
		st.EjectedUntil = &t
	case f&fSlow != 0:
		st.State = "slow-starting"
		t := time.Unix(0, b.slowFrom.Load()).Add(b.bl.cfg.SlowStart)
		st.SlowStartUntil = &t
	default:
		st.State = "healthy"
	}
	h := b.h
	h.mu.Lock()
	st.Failures, st.Checks = h.failures, h.checks
	if !h.lastCheck.IsZero() {
		t := h.lastCheck
		st.LastCheck = &t
		st.LastCheckMillis = float64(h.lastDur.Microseconds()) / 1000
		st.LastCheckError = h.lastErr
	}
	h.mu.Unlock()
	return st
}

// State returns what Status would say of b: "draining", "down", "ejected",
// "slow-starting" or "healthy".
func (b *Backend) State() string { return b.status(nil).State }
