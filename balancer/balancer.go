package balancer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
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
}

// Balancer maps requests to pools and holds the pools. Immutable after New
// and safe for concurrent use; a changed backend set means a new Balancer.
type Balancer struct {
	pools  []*Pool          // immutable; configuration order
	byName map[string]*Pool // immutable
	routes []route          // immutable; in matching order (see New)
}

// New validates cfg and builds a Balancer. It fails when there are no
// backends, a backend address or weight is invalid, one pool lists the same
// address twice, two routes have the same host and prefix, or a route names
// a pool that no backend is in. A pool that no route names is allowed.
func New(cfg Config) (*Balancer, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("balancer: no backends")
	}
	if cfg.Policy != LeastConn && cfg.Policy != RoundRobin {
		return nil, fmt.Errorf("balancer: unknown policy %v", cfg.Policy)
	}
	bl := &Balancer{byName: make(map[string]*Pool)}
	seen := make(map[string]bool) // "pool\x00lower(addr)"
	for _, bc := range cfg.Backends {
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
		key := bc.Pool + "\x00" + strings.ToLower(bc.Addr)
		if seen[key] {
			return nil, fmt.Errorf("balancer: backend %s listed twice in pool %q", bc.Addr, bc.Pool)
		}
		seen[key] = true
		p := bl.byName[bc.Pool]
		if p == nil {
			p = &Pool{name: bc.Pool, policy: cfg.Policy}
			bl.byName[bc.Pool] = p
			bl.pools = append(bl.pools, p)
		}
		p.backends = append(p.backends, &Backend{addr: bc.Addr, pool: bc.Pool, weight: int64(bc.Weight)})
	}

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
		p := bl.byName[n.Pool]
		if p == nil {
			return nil, fmt.Errorf("balancer: route %q: no backend in pool %q", n.String(), n.Pool)
		}
		bl.routes = append(bl.routes, compileRoute(n, p))
		if n.Host == "" && n.Prefix == "/" {
			hasRoot = true
		}
	}
	if !hasRoot {
		if p := bl.byName[DefaultPool]; p != nil {
			bl.routes = append(bl.routes, compileRoute(RouteConfig{Prefix: "/", Pool: DefaultPool}, p))
		}
	}
	if len(bl.routes) == 0 {
		return nil, fmt.Errorf("balancer: no route: add --route /=POOL or a backend in pool %q", DefaultPool)
	}
	// Matching order: exact hosts, then wildcards (longest suffix first),
	// then host-less routes; within each, longest prefix first. Route takes
	// the first match, so a host's own routes are tried before falling back
	// to less specific hosts.
	sort.SliceStable(bl.routes, func(i, j int) bool {
		a, b := &bl.routes[i], &bl.routes[j]
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.kind == routeWildcard && len(a.host) != len(b.host) {
			return len(a.host) > len(b.host)
		}
		return len(a.prefix) > len(b.prefix)
	})
	return bl, nil
}

func compileRoute(rc RouteConfig, p *Pool) route {
	r := route{kind: routeAnyHost, prefix: rc.Prefix, pool: p, cfg: rc}
	switch {
	case strings.HasPrefix(rc.Host, "*."):
		r.kind, r.host = routeWildcard, rc.Host[1:]
	case rc.Host != "":
		r.kind, r.host = routeExact, rc.Host
	}
	r.strip = rc.Strip && rc.Prefix != "/"
	return r
}

// Pools returns the pools in configuration order. The slice is shared:
// callers must not modify it.
func (b *Balancer) Pools() []*Pool { return b.pools }

// Pool returns the pool with that name ("" means DefaultPool), or nil.
func (b *Balancer) Pool(name string) *Pool {
	if name == "" {
		name = DefaultPool
	}
	return b.byName[name]
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
// allowed; may be empty) and its request-target path (origin form; a query
// may follow). Host-specific routes are tried before wildcard ones and those
// before host-less ones, each by longest prefix (rules at RouteConfig). It
// returns nil when no route matches. When the route strips, stripLen is the
// number of leading bytes of path to remove (see AppendStripped); otherwise
// 0. It does not allocate.
func (b *Balancer) Route(host, path []byte) (p *Pool, stripLen int) {
	h := hostWithoutPort(host)
	for i := range b.routes {
		r := &b.routes[i]
		if !r.matchHost(h) || !r.matchPath(path) {
			continue
		}
		if r.strip {
			return r.pool, len(r.prefix)
		}
		return r.pool, 0
	}
	return nil, 0
}
