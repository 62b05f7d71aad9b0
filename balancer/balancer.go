package balancer

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what New builds a Balancer from. The zero value of each field
// means its default; Backends must not be empty.
type Config struct {
	// Backends, in order; their pools are created in order of first mention.
	Backends []BackendConfig
	// Routes; empty means the default route "/" → DefaultPool. When no
	// host-less "/" route is given and pool DefaultPool exists, that route
	// is added, so unmatched requests go to the default pool.
	Routes []RouteConfig
	// Policy for every pool; default LeastConn.
	Policy Policy
	// Health configures active checks and passive ejection (see HealthConfig).
	Health HealthConfig
	// SlowStart ramps the effective weight of a backend that joined (by
	// reload or DNS) or recovered (from down or ejected) from 1/16 to full
	// over this long; 0 (the default) disables it.
	SlowStart time.Duration
	// Resolver, when set, turns each backend whose host is a name into one
	// backend per address the name resolves to, re-resolved every
	// DNSInterval once Start has run; addresses that vanish drain. nil: names
	// are kept as given and resolved by each dial.
	Resolver Resolver
	// DNSInterval is how often names are re-resolved; default
	// DefaultDNSInterval.
	DNSInterval time.Duration
	// DrainTimeout is how long a removed backend is kept in the status (and
	// its counts followed) while its tunnels finish; default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// OnDrainTimeout, when set, is called (on its own goroutine) for a
	// removed backend whose drain timeout passed while it still had
	// requests or tunnels, so that the caller can close them.
	OnDrainTimeout func(*Backend)
	// Rebalance is the standing rebalancing rate of every pool (closes of
	// excess tunnels per second per pool, see Rebalancer); 0 (the default)
	// leaves it off: only Rebalancer.StartPass runs a pass.
	Rebalance float64
	// RebalanceTolerance is the share above fair a backend may carry before
	// a pass starts, a fraction; 0 means DefaultRebalanceTolerance (0.10).
	RebalanceTolerance float64
	// MaxQueue bounds each pool's queue of PickWait calls waiting for a
	// backend slot; 0 means DefaultMaxQueue, < 0 means no queue (a full
	// pool answers ErrQueueFull at once).
	MaxQueue int
	// MaxHandshakesPerBackend paces WebSocket handshakes (PickWait with
	// upgrade): each backend takes at most this many per second, from a
	// token bucket of HandshakeBurst; a backend without a token counts as
	// full for upgrades, which wait in the queue. 0 (the default): off.
	// Plain requests are never paced.
	MaxHandshakesPerBackend float64
	// HandshakeBurst is the pacing bucket's depth; 0 means
	// max(1, MaxHandshakesPerBackend/10).
	HandshakeBurst int
	// Clock is the time source for health, ejection, slow start and drain;
	// default the real clock. Tests inject a fake one.
	Clock Clock
	// Logf logs state changes (once per change); default log.Printf.
	Logf func(format string, args ...any)
}

// Defaults for the zero values of Config.
const (
	DefaultDNSInterval  = 5 * time.Second
	DefaultDrainTimeout = 30 * time.Second
)

// Balancer maps requests to pools and holds the pools. Routes are immutable
// after New; the backends of each pool change with Update (reload) and DNS
// re-resolution, keeping the same *Backend (and its counts) for an address
// that stays. Safe for concurrent use.
type Balancer struct {
	cfg     Config        // normalized; immutable (cfg.Backends is the set New got)
	clock   Clock         // immutable
	routes  []routeTarget // immutable; in configuration order, default route last
	matcher *Matcher      // immutable; over routes

	pace     pacing // immutable; handshake pacing
	maxQueue int    // immutable; normalized MaxQueue (0: no queue)

	pools atomic.Pointer[poolSet] // replaced when a reload adds a pool; never nil

	// mu guards the fields below and serialises changes of the backend
	// set (Update, DNS refresh, drain sweep, Start, Close).
	mu       sync.Mutex
	spec     []BackendConfig         // the configured set: New's, then the last good Update
	resolved map[string][]netip.Addr // lower-case name → its last good answer
	byKey    map[string]*Backend     // live and draining backends by backendKey
	draining map[*Backend]time.Time  // removed backends → when removal began
	running  bool                    // Start ran and Close did not
	stop     context.CancelFunc      // cancels probes and lookups; set by Start
	ctx      context.Context         // done after Close; set by Start
	timers   []Timer                 // DNS and drain timers, stopped by Close
}

// poolSet is an immutable snapshot of the pools.
type poolSet struct {
	pools  []*Pool          // configuration order
	byName map[string]*Pool // by name
}

// New validates cfg and builds a Balancer. It fails when there are no
// backends, a backend address or weight is invalid, one pool lists the same
// address twice, two routes have the same host and prefix, or a route names
// a pool that no backend is in. A pool that no route names is allowed.
// With a Resolver, names are resolved once here (a failure leaves that
// name without backends until a later resolution succeeds, and is logged).
// Background work (active checks, DNS, drain) begins with Start.
func New(cfg Config) (*Balancer, error) {
	if cfg.Policy != LeastConn && cfg.Policy != RoundRobin {
		return nil, fmt.Errorf("balancer: unknown policy %v", cfg.Policy)
	}
	specs, err := checkBackends(cfg.Backends)
	if err != nil {
		return nil, err
	}
	if err := checkRebalance(cfg.Rebalance, cfg.RebalanceTolerance); err != nil {
		return nil, err
	}
	if err := checkPacing(cfg.MaxHandshakesPerBackend, cfg.HandshakeBurst); err != nil {
		return nil, err
	}
	cfg.Health = cfg.Health.normalized()
	if cfg.DNSInterval <= 0 {
		cfg.DNSInterval = DefaultDNSInterval
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	cfg.Backends = specs
	bl := &Balancer{
		cfg:      cfg,
		clock:    cfg.Clock,
		pace:     makePacing(cfg.MaxHandshakesPerBackend, cfg.HandshakeBurst),
		maxQueue: max(cfg.MaxQueue, 0),
		spec:     specs,
		resolved: make(map[string][]netip.Addr),
		byKey:    make(map[string]*Backend),
		draining: make(map[*Backend]time.Time),
	}
	ps := &poolSet{byName: make(map[string]*Pool)}
	for _, bc := range specs {
		if ps.byName[bc.Pool] == nil {
			p := makePool(bc.Pool, cfg.Policy, bl)
			ps.byName[bc.Pool] = p
			ps.pools = append(ps.pools, p)
		}
	}
	bl.pools.Store(ps)
	if cfg.Resolver != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DNSInterval)
		bl.resolveAll(ctx, specs)
		cancel()
	}
	bl.mu.Lock()
	bl.applyLocked(true)
	bl.mu.Unlock()

	rcs := cfg.Routes
	hasRoot := false
	dup := make(map[string]bool) // "host prefix"
	for _, rc := range rcs {
		n, err := normalizeRoute(rc)
		if err != nil {
			return nil, fmt.Errorf("balancer: route %q: %v", rc.String(), err)
		}
		key := n.Host + " " + n.Prefix
		if dup[key] {
			return nil, fmt.Errorf("balancer: route %q: host %q and prefix %q already routed", n.String(), n.Host, n.Prefix)
		}
		dup[key] = true
		p := ps.byName[n.Pool]
		if p == nil {
			return nil, fmt.Errorf("balancer: route %q: no backend in pool %q", n.String(), n.Pool)
		}
		bl.routes = append(bl.routes, compileRoute(n, p))
		if n.Host == "" && n.Prefix == "/" {
			hasRoot = true
		}
	}
	if !hasRoot {
		if p := ps.byName[DefaultPool]; p != nil {
			bl.routes = append(bl.routes, compileRoute(RouteConfig{Prefix: "/", Pool: DefaultPool}, p))
		}
	}
	if len(bl.routes) == 0 {
		return nil, fmt.Errorf("balancer: no route: add --route /=POOL or a backend in pool %q", DefaultPool)
	}
	rules := make([]Rule, len(bl.routes))
	for i, r := range bl.routes {
		rules[i] = Rule{r.cfg.Host, r.cfg.Prefix}
	}
	bl.matcher = NewMatcher(rules)
	return bl, nil
}

// checkBackends validates a backend set and returns it normalized (pool
// named, weight set). It fails when the set is empty, a value is invalid,
// or one pool lists the same address twice.
func checkBackends(in []BackendConfig) ([]BackendConfig, error) {
	if len(in) == 0 {
		return nil, errors.New("balancer: no backends")
	}
	out := make([]BackendConfig, 0, len(in))
	seen := make(map[string]bool) // backendKey
	for _, bc := range in {
		if bc.Pool == "" {
			bc.Pool = DefaultPool
		}
		if err := checkPoolName(bc.Pool); err != nil {
			return nil, fmt.Errorf("balancer: backend %s: %v", bc.Addr, err)
		}
		if _, err := checkHostPort(bc.Addr); err != nil {
			return nil, fmt.Errorf("balancer: backend %q: %v", bc.Addr, err)
		}
		if bc.Weight == 0 {
			bc.Weight = 1
		}
		if bc.Weight < 1 || bc.Weight > MaxWeight {
			return nil, fmt.Errorf("balancer: backend %s: weight must be 1..%d, got %d", bc.Addr, MaxWeight, bc.Weight)
		}
		if bc.MaxConns < 0 || bc.MaxConns > MaxMaxConns {
			return nil, fmt.Errorf("balancer: backend %s: max-conns must be 1..%d (0: unlimited), got %d", bc.Addr, MaxMaxConns, bc.MaxConns)
		}
		key := backendKey(bc.Pool, bc.Addr)
		if seen[key] {
			return nil, fmt.Errorf("balancer: backend %s listed twice in pool %q", bc.Addr, bc.Pool)
		}
		seen[key] = true
		out = append(out, bc)
	}
	return out, nil
}

// backendKey identifies a backend across reloads: pool and address.
func backendKey(pool, addr string) string { return pool + "\x00" + strings.ToLower(addr) }

// routeTarget is where a route sends what it matches.
type routeTarget struct {
	pool  *Pool
	strip bool // and the prefix is not "/"
	cfg   RouteConfig
}

func compileRoute(rc RouteConfig, p *Pool) routeTarget {
	return routeTarget{pool: p, strip: rc.Strip && rc.Prefix != "/", cfg: rc}
}

// Pools returns the pools in configuration order (pools first named by a
// reload come last). The slice is shared: callers must not modify it.
func (b *Balancer) Pools() []*Pool { return b.pools.Load().pools }

// Pool returns the pool with that name ("" means DefaultPool), or nil.
func (b *Balancer) Pool(name string) *Pool {
	if name == "" {
		name = DefaultPool
	}
	return b.pools.Load().byName[name]
}

// Backend returns the live backend of pool ("" means DefaultPool) with
// address addr (as Addr returns it, case-insensitive), or nil. A draining
// backend is not returned.
func (b *Balancer) Backend(pool, addr string) *Backend {
	p := b.Pool(pool)
	if p == nil {
		return nil
	}
	return p.Lookup(addr)
}

// Routes returns the effective routes in matching order, including an
// implicit default route.
func (b *Balancer) Routes() []RouteConfig {
	out := make([]RouteConfig, len(b.routes))
	for i := range b.routes {
		out[i] = b.routes[i].cfg
	}
	return out
}

// Route finds the pool for a request from its Host header value (port
// allowed; may be empty) and its normalized path (http1.Request.Path; no
// query). Host-specific routes are tried before wildcard ones and those
// before host-less ones, each by longest prefix (rules at RouteConfig). It
// returns nil when no route matches. When the route strips, stripLen is the
// number of leading bytes of path to remove (http1.Request.AppendTarget); otherwise
// 0. It does not allocate.
func (b *Balancer) Route(host, path []byte) (p *Pool, stripLen int) {
	i := b.matcher.Match(host, path)
	if i < 0 {
		return nil, 0
	}
	r := &b.routes[i]
	if r.strip {
		return r.pool, len(r.cfg.Prefix)
	}
	return r.pool, 0
}
