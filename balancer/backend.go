// Package balancer decides where a request goes: routes (host + path prefix →
// pool, optional prefix strip), pools of backends, and the live count of work
// each backend carries (in-flight requests plus open tunnels), from which
// least-connections and weighted round robin pick.
//
// It knows nothing of sockets or HTTP framing and imports nothing internal.
package balancer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
)

// DefaultPool is the pool a backend joins when the command line names none,
// and the pool the default route "/" sends to.
const DefaultPool = "default"

// MaxWeight is the largest backend weight accepted.
const MaxWeight = 256

// MaxMaxConns is the largest max-conns accepted.
const MaxMaxConns = 1_000_000

// BackendConfig is one backend as given on the command line.
type BackendConfig struct {
	Pool   string // "" means DefaultPool
	Addr   string // host:port; an IPv6 host is in brackets
	Weight int    // 0 means 1; at most MaxWeight
	// MaxConns caps what the backend carries at once: requests in flight
	// plus live tunnels (Active); 0 means unlimited; at most MaxMaxConns.
	MaxConns int
}

// ParseBackend parses the -b/--backend value
// "[POOL=]HOST:PORT[,weight=N][,max-conns=N]" (options in any order, each
// at most once).
//
// HOST may be a DNS name, an IPv4 address or a bracketed IPv6 address; PORT
// is a number 1..65535. The returned Addr is HOST:PORT as given (names are not
// resolved here). A value without weight gets Weight 1; without max-conns,
// MaxConns 0 (unlimited). Errors start with
// `balancer: backend "VALUE": ` and name what is wrong.
func ParseBackend(s string) (BackendConfig, error) {
	fail := func(format string, args ...any) (BackendConfig, error) {
		return BackendConfig{}, fmt.Errorf("balancer: backend %q: %s", s, fmt.Sprintf(format, args...))
	}
	main, opts, hasOpts := strings.Cut(s, ",")
	cfg := BackendConfig{Pool: DefaultPool, Weight: 1}
	if pool, addr, ok := strings.Cut(main, "="); ok {
		if err := checkPoolName(pool); err != nil {
			return fail("%v", err)
		}
		cfg.Pool, main = pool, addr
	}
	addr, err := checkHostPort(main)
	if err != nil {
		return fail("%v", err)
	}
	cfg.Addr = addr
	if hasOpts {
		seenWeight, seenMax := false, false
		for opt := range strings.SplitSeq(opts, ",") {
			key, val, _ := strings.Cut(opt, "=")
			switch key {
			case "max-conns":
				if seenMax {
					return fail("max-conns given twice")
				}
				seenMax = true
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 || n > MaxMaxConns {
					return fail("max-conns must be 1..%d, got %q", MaxMaxConns, val)
				}
				cfg.MaxConns = n
			case "weight":
				if seenWeight {
					return fail("weight given twice")
				}
				seenWeight = true
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 || n > MaxWeight {
					return fail("weight must be 1..%d, got %q", MaxWeight, val)
				}
				cfg.Weight = n
			case "":
				return fail("empty option after comma")
			default:
				return fail("unknown option %q (want weight=N or max-conns=N)", key)
			}
		}
	}
	return cfg, nil
}

// checkPoolName accepts 1..64 characters of [A-Za-z0-9_.-].
func checkPoolName(name string) error {
	if name == "" {
		return fmt.Errorf("empty pool name before '='")
	}
	if len(name) > 64 {
		return fmt.Errorf("pool name longer than 64 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("pool name %q: character %q not allowed (use A-Z a-z 0-9 - _ .)", name, c)
		}
	}
	return nil
}

// checkHostPort validates "HOST:PORT" and returns it unchanged.
func checkHostPort(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("missing address (want HOST:PORT)")
	}
	var host, port string
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", fmt.Errorf("missing ']' after IPv6 address")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest == "" || rest == ":" {
			return "", fmt.Errorf("missing port")
		}
		if rest[0] != ':' {
			return "", fmt.Errorf("unexpected %q after ']' (want :PORT)", rest)
		}
		port = rest[1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", fmt.Errorf("invalid IPv6 address %q", host)
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return "", fmt.Errorf("missing port")
		}
		host, port = s[:i], s[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			return "", fmt.Errorf("IPv6 address must be in brackets, as [%s]:PORT", host)
		}
		if host == "" {
			return "", fmt.Errorf("missing host before ':'")
		}
		if err := checkHostName(host); err != nil {
			return "", err
		}
	}
	if port == "" {
		return "", fmt.Errorf("missing port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return "", fmt.Errorf("port must be a number 1..65535, got %q", port)
	}
	return s, nil
}

// checkHostName accepts DNS names and IPv4 addresses: labels of
// [A-Za-z0-9_-], separated by dots, at most 253 characters.
func checkHostName(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case isAlnum(c), c == '-', c == '_':
		case c == '.':
			if i == 0 || h[i-1] == '.' {
				return fmt.Errorf("host %q: empty label", h)
			}
		default:
			return fmt.Errorf("host %q: character %q not allowed", h, c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Backend is one upstream server in one pool. Its identity (pool, address)
// is immutable; it survives reloads and DNS re-resolution for as long as its
// pool keeps that address, so its counts are never reset. Every other field
// is an atomic or lives behind its health mutex: any goroutine may read it.
type Backend struct {
	// The first cache line holds what Pick reads and writes; a Backend is
	// exactly two lines (TestBackendSize), so concurrent Picks of different
	// backends do not bounce a shared line between cores (measured:
	// BenchmarkPickParallel).

	// active is the number of Picks not yet Released: in-flight requests plus
	// live tunnels. Changed only by Pick (+1; by compare-and-swap below
	// maxConns when capped) and Release (-1, never left below 0).
	active atomic.Int64
	// picks counts every Pick of this backend since it was created.
	picks atomic.Uint64
	// underflows counts Releases that found active already at 0 (a caller
	// bug: a Release without its Pick); they are undone, not applied.
	underflows atomic.Uint64
	// rrCurrent is the smooth weighted round-robin "current weight".
	// Guarded by the owning Pool's rrMu.
	rrCurrent int64
	// weight is 1..MaxWeight; a reload may change it.
	weight atomic.Int32
	// maxConns caps active (0: no cap); a reload may change it. Next to
	// active, so the cap check reads a line Pick loads anyway.
	maxConns atomic.Int32
	// flags are the fXxx state bits; changed by compare-and-swap only, so
	// each change of state is seen (and logged) once.
	flags atomic.Uint32
	// tunnels is how many of active are live tunnels (TunnelStarted).
	tunnels atomic.Int32
	// ejectUntil is when a passive ejection ends (clock nanoseconds); read
	// only while fEjected is set.
	ejectUntil atomic.Int64
	// slowFrom is when slow start began (clock nanoseconds); read only while
	// fSlow is set.
	slowFrom atomic.Int64

	addr string        // immutable; HOST:PORT dialed (an IP when found by DNS)
	p    *Pool         // immutable; the pool holding it (its queue, its name)
	host string        // immutable; HOST:PORT as configured (the Host of health checks)
	bl   *Balancer     // immutable; owner: clock, health settings, log
	h    *health       // immutable pointer; the health state behind its mutex
	gate *atomic.Int64 // immutable; &p.gate, read by every Release
}

// State bits of Backend.flags.
const (
	fDown     uint32 = 1 << iota // active checks failed --health-fall times in a row
	fEjected                     // passive: --max-fails failures within --fail-timeout
	fDraining                    // removed by a reload or DNS: takes no new requests
	fSlow                        // slow start: effective weight still ramping up
)

// Addr returns HOST:PORT to dial: as configured, or IP:PORT for a backend
// found by resolving a configured name.
func (b *Backend) Addr() string { return b.addr }

// Host returns HOST:PORT as configured (the name, for a backend found by
// DNS); health checks send it as Host.
func (b *Backend) Host() string { return b.host }

// Pool returns the name of the pool that holds b.
func (b *Backend) Pool() string { return b.p.name }

// Weight returns b's configured weight, 1..MaxWeight.
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// MaxConns returns b's cap on Active (max-conns), 0 when unlimited. A
// reload may change it; lowered below Active, it lets Active fall to it
// and takes nothing new until then.
func (b *Backend) MaxConns() int { return int(b.maxConns.Load()) }

// full reports whether b is at its cap.
func (b *Backend) full() bool {
	mc := b.maxConns.Load()
	return mc != 0 && b.active.Load() >= int64(mc)
}

// Active returns the in-flight requests plus live tunnels currently counted
// against b: Picks not yet Released.
func (b *Backend) Active() int64 { return b.active.Load() }

// Tunnels returns how many of Active are live tunnels.
func (b *Backend) Tunnels() int64 { return int64(b.tunnels.Load()) }

// Picks returns how many times b was picked since it was created.
func (b *Backend) Picks() uint64 { return b.picks.Load() }

// Underflows returns how many Releases found nothing to release (each one is
// a Release without a matching Pick somewhere in the caller).
func (b *Backend) Underflows() uint64 { return b.underflows.Load() }

// Release undoes one Pick: call it exactly once when the request finishes or
// the tunnel closes (for a tunnel, TunnelEnded does it). The count never goes
// below 0; an extra Release is ignored and counted in Underflows. When
// requests wait in the pool's queue (PickWait), the freed capacity goes to
// them first, in order; when none waits, Release costs one more atomic
// load. A draining backend's Release serves its pool's queue too (with the
// other backends: a draining one takes nothing new).
func (b *Backend) Release() {
	// One comparison, small enough to inline: the pool's gate is 0 when
	// nobody waits (then only a count below 0 goes out of line) and
	// MaxInt64 when someone does (then every Release does).
	if b.active.Add(-1) < b.gate.Load() {
		released(b)
	}
}

// released is the rest of Release, out of line so that Release inlines:
// the count went below 0 (a Release without its Pick: undone, counted), or
// the pool's queue holds waiters.
func released(b *Backend) {
	for {
		n := b.active.Load()
		if n >= 0 {
			break
		}
		// The count may read -1 for this instant, which a concurrent
		// least-conn scan takes as "idle"; harmless, and only on a caller
		// bug.
		if b.active.CompareAndSwap(n, n+1) {
			b.underflows.Add(1)
		}
	}
	if b.gate.Load() != 0 {
		b.p.kick()
	}
}

// TunnelStarted marks one Pick of b as a live tunnel (it stays counted in
// Active); call TunnelEnded, instead of Release, when the tunnel closes.
func (b *Backend) TunnelStarted() { b.tunnels.Add(1) }

// TunnelEnded ends a tunnel counted by TunnelStarted and releases its Pick.
func (b *Backend) TunnelEnded() {
	b.tunnels.Add(-1)
	b.Release()
}

// acquire counts one Pick against b, whatever its cap (tests set counts
// with it; picks use tryAcquire).
func (b *Backend) acquire() {
	b.active.Add(1)
	b.picks.Add(1)
}

// tryAcquire counts one Pick against b unless b is at its cap, and reports
// whether it did. Uncapped, it is acquire; capped, a compare-and-swap loop
// makes the cap exact however many goroutines pick at once.
func (b *Backend) tryAcquire() bool {
	mc := int64(b.maxConns.Load())
	if mc == 0 {
		b.active.Add(1)
		b.picks.Add(1)
		return true
	}
	for {
		n := b.active.Load()
		if n >= mc {
			return false
		}
		if b.active.CompareAndSwap(n, n+1) {
			b.picks.Add(1)
			return true
		}
	}
}

// String returns "POOL/HOST:PORT" for logs.
func (b *Backend) String() string { return b.p.name + "/" + b.addr }

// maxConnsString is n for logs, "unlimited" for 0.
func maxConnsString(n int32) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.Itoa(int(n))
}
