package loop

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
)

// Rebalancing after a scale-out (issue 17). Every pool's planner
// (balancer.Rebalancer) decides how many tunnels to close on which
// over-loaded backend; the loop asks it every rebalanceTick and has the
// tunnel engine close that many of the backend's tunnels, each with a
// WebSocket close frame 1012 (Service Restart) at a frame boundary toward
// the client and 1001 toward the backend. The clients reconnect, and
// least-connections sends them to the emptier node.
//
// Which tunnels: only those opened before the pass began
// (Rebalancer.PassStart; tunnel.Engine.CloseTaggedBefore spares the
// others), so a client that has moved once is not moved again in the same
// pass however long it lasts; and none younger than rebalanceMinAge. A
// young tunnel may be an Engine.IO upgrade probe: engine.io-client pauses
// its polling transport once the probe has answered "3probe", and a probe
// closed before the client's "5" leaves the session paused until its ping
// timeout (45–70 s, emits lost meanwhile). Seen with 300 polling clients
// and a pass that began during their ramp: probes 75–105 ms old closed.
//
// In progress: a tunnel being closed still counts on its backend until the
// engine reports it gone; leaving counts those per backend so that the
// planner never asks for the same excess twice.

var errUnknownPool = errors.New("no such pool")

// rebalanceMinAge: tunnels younger than this are never closed by a pass.
const rebalanceMinAge = 5 * time.Second

// rebalanceTick is how often the planners are asked. 100 ms keeps the
// closes of a 200/s pass in batches of about 20.
const rebalanceTick = 100 * time.Millisecond

// leavingCounts are the rebalancing closes started and not yet finished,
// per backend.
type leavingCounts struct {
	m sync.Map // *balancer.Backend → *atomic.Int64
}

func (l *leavingCounts) of(b *balancer.Backend) *atomic.Int64 {
	if v, ok := l.m.Load(b); ok {
		return v.(*atomic.Int64)
	}
	v, _ := l.m.LoadOrStore(b, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// get is the planners' leaving callback.
func (l *leavingCounts) get(b *balancer.Backend) int64 {
	if v, ok := l.m.Load(b); ok {
		return max(v.(*atomic.Int64).Load(), 0)
	}
	return 0
}

// runRebalance asks every pool's planner every rebalanceTick until stop is
// closed. It costs a few loads per backend per tick while nothing is to be
// done.
func (s *Server) runRebalance(stop <-chan struct{}) {
	t := time.NewTicker(rebalanceTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if s.draining.Load() {
				return
			}
			s.rebalanceOnce(now)
		}
	}
}

// rebalanceOnce runs one round of every pool's planner and starts the
// closes it asks for; it returns how many it started.
func (s *Server) rebalanceOnce(now time.Time) int {
	started := 0
	for _, p := range s.cfg.Balancer.Pools() {
		rb := p.Rebalancer()
		moves := rb.Plan(now, s.leaving.get)
		if len(moves) == 0 {
			continue
		}
		before := rb.PassStart()
		if before.IsZero() || now.Add(-rebalanceMinAge).Before(before) {
			before = now.Add(-rebalanceMinAge)
		}
		for _, m := range moves {
			n := s.cfg.Tunnels.CloseTaggedBefore(backendTag(m.Backend), before, m.N, tunnel.Rebalance)
			if n > 0 {
				s.leaving.of(m.Backend).Add(int64(n))
				started += n
			}
			rb.Unused(m.Backend, m.N-n) // too few old enough: asked again later
		}
	}
	return started
}

// Rebalance starts a one-off rebalancing pass of pool at rate closes per
// second (rate ≤ 0: the pool's standing --rebalance rate), as POST
// /rebalance does. It fails for an unknown pool, a pool with fewer than 2
// healthy backends, or no rate at all.
func (s *Server) Rebalance(pool string, rate float64) error {
	p := s.cfg.Balancer.Pool(pool)
	if p == nil {
		return errUnknownPool
	}
	return p.Rebalancer().StartPass(time.Now(), rate)
}
