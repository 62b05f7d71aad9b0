package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Resolver looks up a host name's addresses; *net.Resolver satisfies it
// (network "ip"). Tests inject their own.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Update replaces the configured backend set (a reload of --backends-file,
// with the command line's backends): backends whose pool and address stay
// keep their *Backend, counts and health (a changed weight or max-conns
// applies at once; a raised max-conns serves the pool's queue); new ones join (in slow start, when on); removed ones drain: they
// take no new requests, and their tunnels keep running. A new pool may
// appear; no pool disappears (one left without backends answers 503). The
// set is checked as a whole first: on error nothing changes.
func (bl *Balancer) Update(backends []BackendConfig) error {
	specs, err := checkBackends(backends)
	if err != nil {
		return err
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if bl.cfg.Resolver != nil {
		ctx, cancel = context.WithTimeout(context.Background(), bl.cfg.DNSInterval)
		defer cancel()
		bl.resolveAll(ctx, specs) // names new in this set get their first answer
	}
	bl.mu.Lock()
	bl.spec = specs
	bl.applyLocked(false)
	bl.mu.Unlock()
	// New backends and raised max-conns serve the queues.
	for _, p := range bl.Pools() {
		p.kickIfWaiting()
	}
	return nil
}

// wanted is one backend the configured set plus DNS answers call for.
type wanted struct {
	pool, addr, host string
	weight, maxConns int
}

// hostPort splits a checked HOST:PORT; host loses IPv6 brackets.
func hostPort(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return h, p
}

// isName reports whether addr's host is a DNS name (not an IP literal).
func isName(addr string) bool {
	h, _ := hostPort(addr)
	_, err := netip.ParseAddr(h)
	return err != nil
}

// wantedLocked expands bl.spec with the DNS answers. bl.mu must be held.
func (bl *Balancer) wantedLocked() []wanted {
	var out []wanted
	seen := make(map[string]bool)
	add := func(w wanted) {
		k := backendKey(w.pool, w.addr)
		if !seen[k] {
			seen[k] = true
			out = append(out, w)
		}
	}
	for _, bc := range bl.spec {
		if bl.cfg.Resolver == nil || !isName(bc.Addr) {
			add(wanted{bc.Pool, bc.Addr, bc.Addr, bc.Weight, bc.MaxConns})
			continue
		}
		h, port := hostPort(bc.Addr)
		for _, a := range bl.resolved[strings.ToLower(h)] {
			pn, _ := strconv.Atoi(port)
			add(wanted{bc.Pool, netip.AddrPortFrom(a.Unmap(), uint16(pn)).String(), bc.Addr, bc.Weight, bc.MaxConns})
		}
	}
	return out
}

// applyLocked makes the pools hold the wanted backends: kept ones stay the
// same objects, new ones are created (in slow start unless initial), and
// the rest start draining. bl.mu must be held.
func (bl *Balancer) applyLocked(initial bool) {
	want := bl.wantedLocked()
	ps := bl.pools.Load()
	lists := make(map[string][]*Backend)
	var newPools []*Pool
	keep := make(map[*Backend]bool)
	// Pools that will hold a capped backend check caps before any is set.
	for _, w := range want {
		if p := ps.byName[w.pool]; p != nil && w.maxConns != 0 {
			p.capped.Store(true)
		}
	}
	for _, w := range want {
		p := ps.byName[w.pool]
		if p == nil {
			for _, np := range newPools {
				if np.name == w.pool {
					p = np
				}
			}
			if p == nil {
				p = makePool(w.pool, bl.cfg.Policy, bl)
				newPools = append(newPools, p)
				bl.cfg.Logf("pool %s: new", w.pool)
			}
		}
		k := backendKey(w.pool, w.addr)
		b := bl.byKey[k]
		switch {
		case b == nil:
			b = &Backend{addr: w.addr, p: p, host: w.host, bl: bl, h: &health{}, gate: &p.gate}
			b.weight.Store(int32(w.weight))
			b.maxConns.Store(int32(w.maxConns))
			bl.byKey[k] = b
			if !initial {
				bl.cfg.Logf("backend %s: added (weight %d)", b, w.weight)
				b.startSlow(0)
			}
			if bl.running && bl.cfg.Health.Probe != nil {
				bl.scheduleCheck(b, jitter(bl.cfg.Health.Interval, 0, 1))
			}
		case b.flags.Load()&fDraining != 0:
			delete(bl.draining, b)
			b.clearFlag(fDraining)
			b.h.mu.Lock()
			b.h.stopped = false
			b.h.mu.Unlock()
			if bl.running && bl.cfg.Health.Probe != nil {
				bl.scheduleCheck(b, jitter(bl.cfg.Health.Interval, 0, 1))
			}
			bl.cfg.Logf("backend %s: back in the set while draining; kept with %d active", b, b.Active())
		}
		if old := b.weight.Swap(int32(w.weight)); old != int32(w.weight) {
			bl.cfg.Logf("backend %s: weight %d → %d", b, old, w.weight)
		}
		if old := b.maxConns.Swap(int32(w.maxConns)); old != int32(w.maxConns) {
			bl.cfg.Logf("backend %s: max-conns %s → %s", b, maxConnsString(old), maxConnsString(int32(w.maxConns)))
		}
		keep[b] = true
		lists[w.pool] = append(lists[w.pool], b)
	}
	now := bl.clock.Now()
	for _, p := range append(append([]*Pool(nil), ps.pools...), newPools...) {
		for _, b := range p.Backends() {
			if keep[b] {
				continue
			}
			b.setFlag(fDraining)
			b.stopChecks()
			bl.draining[b] = now
			bl.cfg.Logf("backend %s: removed; draining with %d active (up to --drain-timeout %v)", b, b.Active(), bl.cfg.DrainTimeout)
		}
		l := lists[p.name]
		if l == nil {
			l = []*Backend{}
			if len(p.Backends()) > 0 {
				bl.cfg.Logf("pool %s: no backends left; requests get 503", p.name)
			}
		}
		p.live.Store(&l)
		capped := false
		for _, b := range l {
			if b.maxConns.Load() != 0 {
				capped = true
			}
		}
		p.capped.Store(capped)
	}
	if len(newPools) > 0 {
		nps := &poolSet{pools: append(append([]*Pool(nil), ps.pools...), newPools...), byName: make(map[string]*Pool)}
		for _, p := range nps.pools {
			nps.byName[p.name] = p
		}
		bl.pools.Store(nps)
	}
}

// sweepDrainedLocked forgets draining backends whose last request or
// tunnel ended, or whose drain timeout passed. bl.mu must be held.
func (bl *Balancer) sweepDrainedLocked() {
	now := bl.clock.Now()
	for b, since := range bl.draining {
		n := b.Active()
		switch {
		case n == 0:
			bl.cfg.Logf("backend %s: drained", b)
		case now.Sub(since) >= bl.cfg.DrainTimeout:
			if f := bl.cfg.OnDrainTimeout; f != nil {
				bl.cfg.Logf("backend %s: --drain-timeout %v passed with %d active (%d tunnels); closing its tunnels",
					b, bl.cfg.DrainTimeout, n, b.Tunnels())
				go f(b)
			} else {
				bl.cfg.Logf("backend %s: --drain-timeout %v passed with %d active (%d tunnels); no longer followed, its tunnels run until they end",
					b, bl.cfg.DrainTimeout, n, b.Tunnels())
			}
		default:
			continue
		}
		delete(bl.draining, b)
		delete(bl.byKey, backendKey(b.p.name, b.addr))
	}
}

// Draining returns the removed backends still followed (their requests and
// tunnels not all ended, drain timeout not passed).
func (bl *Balancer) Draining() []*Backend {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	out := make([]*Backend, 0, len(bl.draining))
	for b := range bl.draining {
		out = append(out, b)
	}
	return out
}

// resolveAll looks up every name in specs and records the good answers. An
// error keeps the previous answer (a DNS hiccup must not drain a pool); a
// name that does not exist resolves to no address.
func (bl *Balancer) resolveAll(ctx context.Context, specs []BackendConfig) {
	names := make(map[string]bool)
	for _, bc := range specs {
		if isName(bc.Addr) {
			h, _ := hostPort(bc.Addr)
			names[strings.ToLower(h)] = true
		}
	}
	for name := range names {
		addrs, err := bl.cfg.Resolver.LookupNetIP(ctx, "ip", name)
		var dnsErr *net.DNSError
		if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
			bl.cfg.Logf("dns: %s: %v (keeping the previous addresses)", name, err)
			continue
		}
		clean := make([]netip.Addr, 0, len(addrs))
		for _, a := range addrs {
			clean = append(clean, a.Unmap())
		}
		bl.mu.Lock()
		if old, ok := bl.resolved[name]; !ok || !sameAddrs(old, clean) {
			bl.cfg.Logf("dns: %s → %v", name, clean)
		}
		bl.resolved[name] = clean
		bl.mu.Unlock()
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[netip.Addr]bool, len(a))
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// refreshDNS re-resolves the configured names and applies the answers.
func (bl *Balancer) refreshDNS() {
	bl.mu.Lock()
	specs := bl.spec
	bl.mu.Unlock()
	ctx, cancel := context.WithTimeout(bl.ctx, bl.cfg.DNSInterval)
	bl.resolveAll(ctx, specs)
	cancel()
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if !bl.running {
		return
	}
	bl.applyLocked(false)
	bl.timers[0] = bl.clock.AfterFunc(bl.cfg.DNSInterval, bl.refreshDNS)
	for _, p := range bl.Pools() {
		p.kickIfWaiting()
	}
}

// sweepTick runs the drain sweep once a second.
func (bl *Balancer) sweepTick() {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if !bl.running {
		return
	}
	bl.sweepDrainedLocked()
	bl.timers[1] = bl.clock.AfterFunc(time.Second, bl.sweepTick)
}

// Start begins the background work: active checks (when Health.Probe is
// set), DNS re-resolution (when a Resolver is set and a name is
// configured) and the drain sweep. Close stops it.
func (bl *Balancer) Start() {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.running {
		return
	}
	bl.running = true
	bl.ctx, bl.stop = context.WithCancel(context.Background())
	bl.timers = make([]Timer, 2)
	if bl.cfg.Resolver != nil {
		bl.timers[0] = bl.clock.AfterFunc(bl.cfg.DNSInterval, bl.refreshDNS)
	}
	bl.timers[1] = bl.clock.AfterFunc(time.Second, bl.sweepTick)
	if bl.cfg.Health.Probe != nil {
		for _, b := range bl.byKey {
			if b.flags.Load()&fDraining == 0 {
				bl.scheduleCheck(b, jitter(bl.cfg.Health.Interval, 0, 1))
			}
		}
	}
}

// Close stops what Start began; probes in progress are cancelled.
func (bl *Balancer) Close() {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if !bl.running {
		return
	}
	bl.running = false
	bl.stop()
	for _, t := range bl.timers {
		if t != nil {
			t.Stop()
		}
	}
	for _, b := range bl.byKey {
		b.stopChecks()
	}
}

// String describes the configured set for logs: "N backends in M pools".
func (bl *Balancer) String() string {
	n := 0
	for _, p := range bl.Pools() {
		n += len(p.Backends())
	}
	return fmt.Sprintf("%d backends in %d pools", n, len(bl.Pools()))
}
