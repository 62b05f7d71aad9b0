package balancer

// Stickiness: which node a request must reach because of an earlier one.
//
// # Node tokens
//
// Every backend has a token: TokenLen characters of base64url (RFC 4648
// section 5, no padding) encoding the first 9 bytes of
//
//	HMAC-SHA256(key, "wsgate-node-v1\x00" + pool + "\x00" + lower(HOST:PORT))
//
// where HOST:PORT is the address dialed (the resolved IP for a backend found
// by DNS). The key is StickyConfig.Secret (--sticky-secret) when one is
// given. Without one, each pool gets its own key,
//
//	SHA-256("wsgate-sticky-key-v1\x00" + pool + "\x00" + lower(host1) + "\x00" + lower(host2) ...)
//
// over the pool's configured HOST:PORT values, sorted and deduplicated:
// wsgate instances started with the same backends (in any order, with any
// weights, whatever order DNS answers in) compute the same tokens, and a
// restarted instance recognises the tokens it issued before, with no shared
// store and no configuration. The price of the derived key: adding or
// removing a configured backend of the pool changes every token of that pool
// (sessions in their polling phase at that moment miss once and reconnect;
// upgraded sessions send no further tagged requests), and someone who can
// guess the whole backend list can confirm the guess. A secret avoids both:
// tokens then depend only on the node itself.
//
// A token reveals nothing about the address without the key, and a token
// only ever resolves to a backend that is in the pool now (the lookup is a
// table of the current backends' tokens): a client can copy another
// session's token to reach that node, which any fresh handshake could also
// have given it, but it cannot name a node that is not configured. Forging a
// token for an existing node without the key means guessing 72 bits.
//
// # Engine.IO sessions
//
// The token travels appended to the Engine.IO sid as "." + token (see
// CutToken): the proxy tags the sid in the handshake response and removes the
// tag from every later request before forwarding. Sessions still in their
// polling phase hold no connection between requests, so the Sticky counts
// each one against its backend's Active from the handshake until its
// WebSocket upgrade is seen or it has been silent for its ping interval plus
// ping timeout (SessionStarted, SessionSeen, SessionUpgraded); least-conn
// then spreads new sessions by tunnels plus polling sessions.
//
// # Client-address hashing
//
// PickHash is rendezvous (highest random weight) hashing of the client
// address over the pool's usable backends, weighted as -weight/ln(u): adding
// a node moves only the clients that now hash highest to it (about 1/n of
// them), and removing one moves only its own clients.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StickyMode is the --sticky value.
type StickyMode uint8

const (
	// StickyAuto (the default): Engine.IO requests (a "/socket.io" path
	// segment or an EIO= query parameter) get sid affinity; other requests go
	// by the pool's policy.
	StickyAuto StickyMode = iota
	// StickySID: sid affinity for every request with an EIO= or sid= query
	// parameter, whatever its path; other requests by the pool's policy.
	StickySID
	// StickyCookie: a cookie naming the node by its token.
	StickyCookie
	// StickyIP: rendezvous hashing of the client address.
	StickyIP
	// StickyNone: every request by the pool's policy.
	StickyNone
)

var stickyNames = [...]string{"auto", "sid", "cookie", "ip", "none"}

// ParseStickyMode parses the --sticky value: auto, sid, cookie, ip or none.
func ParseStickyMode(s string) (StickyMode, error) {
	for i, n := range stickyNames {
		if s == n {
			return StickyMode(i), nil
		}
	}
	return 0, fmt.Errorf("balancer: sticky mode %q: want auto, sid, cookie, ip or none", s)
}

// String returns the --sticky spelling of m.
func (m StickyMode) String() string {
	if int(m) < len(stickyNames) {
		return stickyNames[m]
	}
	return fmt.Sprintf("StickyMode(%d)", uint8(m))
}

// Token format.
const (
	// TokenLen is the length of a node token: base64url characters.
	TokenLen = 12
	// TokenSep separates a tagged Engine.IO sid from its token. Engine.IO
	// sids (base64id) never contain it, and encodeURIComponent leaves it as
	// is, so the tagged sid travels unescaped in query strings and JSON.
	TokenSep   = '.'
	tokenBytes = TokenLen * 3 / 4
)

// Defaults for the zero values of StickyConfig.
const (
	// DefaultPollingTTL is how long a polling session counts without being
	// seen when its handshake did not say: Engine.IO 4's pingInterval
	// (25 s) plus pingTimeout (20 s).
	DefaultPollingTTL = 45 * time.Second
	// DefaultMaxPollingSessions bounds the polling-session table; at the
	// bound the oldest entry stops counting.
	DefaultMaxPollingSessions = 1 << 16
	// MinStickySecret is the shortest accepted Secret, in bytes.
	MinStickySecret = 16
)

// StickyConfig configures a Sticky. The zero value means StickyAuto with
// per-pool derived keys.
type StickyConfig struct {
	Mode StickyMode
	// Secret keys the node tokens (at least MinStickySecret bytes); empty
	// means a key derived from each pool's sorted backend addresses.
	Secret []byte
	// MaxPollingSessions bounds the Engine.IO polling-session table;
	// default DefaultMaxPollingSessions.
	MaxPollingSessions int
	// Now is the clock for polling-session expiry; default time.Now.
	Now func() time.Time
}

// Sticky holds the stickiness state shared by all requests: the per-pool
// token tables (computed on first use of a pool, so a reloaded backend set
// works without telling the Sticky) and the table of Engine.IO sessions in
// their polling phase. Safe for concurrent use.
type Sticky struct {
	mode   StickyMode       // immutable
	secret []byte           // immutable; nil: derived keys
	now    func() time.Time // immutable
	max    int              // immutable
	tables sync.Map         // *Pool → *poolTables
	ntab   atomic.Int64     // entries in tables, to bound the cache

	polling pollTable
}

// NewSticky checks cfg and returns a Sticky.
func NewSticky(cfg StickyConfig) (*Sticky, error) {
	if int(cfg.Mode) >= len(stickyNames) {
		return nil, fmt.Errorf("balancer: unknown sticky mode %d", cfg.Mode)
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < MinStickySecret {
		return nil, fmt.Errorf("balancer: sticky secret of %d bytes: want at least %d", len(cfg.Secret), MinStickySecret)
	}
	s := &Sticky{mode: cfg.Mode, now: cfg.Now, max: cfg.MaxPollingSessions}
	if len(cfg.Secret) > 0 {
		s.secret = slices.Clone(cfg.Secret)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.max <= 0 {
		s.max = DefaultMaxPollingSessions
	}
	s.polling.m = make(map[string]*Session)
	return s, nil
}

// Mode returns the configured mode.
func (s *Sticky) Mode() StickyMode { return s.mode }

// poolTable is the tokens and hash seeds of one live backend list of a
// pool. Immutable.
type poolTable struct {
	list    []*Backend // the Pool.Backends() slice it was built from
	byToken map[[tokenBytes]byte]*Backend
	tokens  [][TokenLen]byte // parallel to list
	seeds   []uint64         // parallel to list: rendezvous seeds
	cookie  string           // cookie name for StickyCookie
}

// poolTables caches the table of a pool's current backend list.
type poolTables struct{ cur atomic.Pointer[poolTable] }

// maxTables bounds the cache: pools live as long as their Balancer, and a
// process that builds many Balancers (tests) drops the cache at this size.
const maxTables = 1024

// table returns the table for p's current backend list, building it when a
// reload (or DNS) replaced the list since. No allocation when cached.
func (s *Sticky) table(p *Pool) *poolTable {
	list := p.Backends()
	c, ok := s.tables.Load(p)
	if !ok {
		if s.ntab.Add(1) > maxTables {
			s.tables.Clear()
			s.ntab.Store(1)
		}
		c, _ = s.tables.LoadOrStore(p, &poolTables{})
	}
	pt := c.(*poolTables)
	if t := pt.cur.Load(); t != nil && sameList(t.list, list) {
		return t
	}
	t := s.buildTable(p.name, list)
	pt.cur.Store(t)
	return t
}

func sameList(a, b []*Backend) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (s *Sticky) buildTable(pool string, list []*Backend) *poolTable {
	key := s.secret
	if key == nil {
		key = derivedKey(pool, list)
	}
	t := &poolTable{
		list:    list,
		byToken: make(map[[tokenBytes]byte]*Backend, len(list)),
		tokens:  make([][TokenLen]byte, len(list)),
		seeds:   make([]uint64, len(list)),
		cookie:  "wsgate_" + pool,
	}
	for i, b := range list {
		raw := nodeMAC(key, pool, b.addr)
		t.byToken[raw] = b
		base64.RawURLEncoding.Encode(t.tokens[i][:], raw[:])
		t.seeds[i] = hashString(pool + "\x00" + strings.ToLower(b.addr))
	}
	return t
}

// derivedKey is the key of a pool when no secret is configured: from the
// backends' configured HOST:PORT values (sorted, deduplicated), so that DNS
// answers in another order, or changing, do not change it.
func derivedKey(pool string, list []*Backend) []byte {
	hosts := make([]string, 0, len(list))
	for _, b := range list {
		hosts = append(hosts, strings.ToLower(b.host))
	}
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	h := sha256.New()
	h.Write([]byte("wsgate-sticky-key-v1\x00" + pool))
	for _, a := range hosts {
		h.Write([]byte("\x00" + a))
	}
	return h.Sum(nil)
}

func nodeMAC(key []byte, pool, addr string) [tokenBytes]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("wsgate-node-v1\x00" + pool + "\x00" + strings.ToLower(addr)))
	var out [tokenBytes]byte
	copy(out[:], m.Sum(nil))
	return out
}

// AppendToken appends b's token (TokenLen bytes) to dst; b must be one of
// p's backends (otherwise dst is returned unchanged).
func (s *Sticky) AppendToken(dst []byte, p *Pool, b *Backend) []byte {
	t := s.table(p)
	for i, x := range t.list {
		if x == b {
			return append(dst, t.tokens[i][:]...)
		}
	}
	return dst
}

// Lookup returns the backend of p that tok names, or nil when tok is not
// the token of any of p's backends. It does not allocate.
func (s *Sticky) Lookup(p *Pool, tok []byte) *Backend {
	if len(tok) != TokenLen {
		return nil
	}
	var raw [tokenBytes]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], tok); err != nil || n != tokenBytes {
		return nil
	}
	return s.table(p).byToken[raw]
}

// CookieName is the cookie that carries p's token under StickyCookie:
// "wsgate_" + the pool name (pool names are valid cookie names).
func (s *Sticky) CookieName(p *Pool) string { return s.table(p).cookie }

// CutToken splits a tagged sid "SID.TOKEN" into SID and TOKEN. ok is false
// when v does not end in TokenSep and TokenLen base64url characters (an
// untagged sid); the token may still name no backend (see Lookup).
func CutToken(v []byte) (sid, tok []byte, ok bool) {
	n := len(v) - TokenLen - 1
	if n < 1 || v[n] != TokenSep {
		return v, nil, false
	}
	for _, c := range v[n+1:] {
		if !isB64URL(c) {
			return v, nil, false
		}
	}
	return v[:n], v[n+1:], true
}

func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// Pin counts one against b, as Pick would have, when b is usable, not
// skipped and not at its max-conns, and reports whether it did. The caller Releases b as after Pick.
func (s *Sticky) Pin(b *Backend, skip func(*Backend) bool) bool {
	var now int64
	if b == nil || (skip != nil && skip(b)) || !b.usable(&now) {
		return false
	}
	return b.tryAcquire()
}

// PinUpgrade is Pin for a WebSocket handshake: with
// Config.MaxHandshakesPerBackend set, it also takes one of b's handshake
// tokens, and fails (taking nothing) when b has none. On false with b
// healthy, wait for b through Pool.PickWait with upgrade set and a skip
// that excludes every other backend.
func (s *Sticky) PinUpgrade(b *Backend, skip func(*Backend) bool) bool {
	if b == nil || b.bl.pace.interval == 0 {
		return s.Pin(b, skip)
	}
	var now int64
	if (skip != nil && skip(b)) || !b.usable(&now) || b.full() {
		return false
	}
	if !b.takeToken(b.bl.nowNanos(&now)) {
		return false
	}
	if !b.tryAcquire() {
		b.refundToken()
		return false
	}
	return true
}

// PickHash picks from p by rendezvous hashing of key (a client address) over
// the usable backends not skipped and not full, counts one against the winner (Release
// it as after Pick) and returns it; nil when none is left. Weights scale
// each backend's share. It does not allocate.
func (s *Sticky) PickHash(p *Pool, key []byte, skip func(*Backend) bool) *Backend {
	t := s.table(p)
	kh := hashBytes(key)
	var (
		best      *Backend
		bestScore float64
		now       int64
	)
	for i, b := range t.list {
		if (skip != nil && skip(b)) || !b.usable(&now) || b.full() {
			continue
		}
		h := mix64(kh ^ t.seeds[i])
		// u in (0, 1); -w/ln(u) is the weighted rendezvous score (larger wins).
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := -float64(b.weight.Load()) / math.Log(u)
		if best == nil || score > bestScore {
			best, bestScore = b, score
		}
	}
	if best != nil && !best.tryAcquire() {
		// A concurrent pick took best's last slot: hash again without it.
		lost := best
		return s.PickHash(p, key, func(b *Backend) bool { return b == lost || skip != nil && skip(b) })
	}
	return best
}

// FNV-1a followed by a splitmix64 finaliser: fixed, so that every wsgate
// instance hashes a client to the same node.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}

func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
