package loop

import (
	"crypto/rand"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/proxyproto"
)

// EdgeConfig is what wsgate does at the public edge: PROXY protocol,
// connection and rate limits, WebSocket origins, TLS. Its zero value turns
// all of it off.
type EdgeConfig struct {
	// ProxyProtocol requires a PROXY v1 or v2 header on every connection of
	// the plain listeners (proxyproto.go).
	ProxyProtocol bool
	// MaxConns bounds the client connections open (tunnels included);
	// beyond it new connections are closed at once and counted. 0: no limit.
	MaxConns int
	// MaxConnsPerIP bounds the connections open per client address (an IPv6
	// client by its /64); beyond it new ones are closed at once. 0: no limit.
	MaxConnsPerIP int
	// RateLimits are per-client token buckets on routes (429).
	RateLimits []RateLimit
	// AllowedOrigins refuse WebSocket handshakes from other origins (403; origin.go).
	AllowedOrigins []AllowedOrigin
	// TLS, when TLS.Listen is set, terminates TLS (tls.go).
	TLS TLSConfig
	// RedirectHTTPS answers plain-HTTP requests with a 301 to https.
	RedirectHTTPS bool
}

// RateLimit is one --rate-limit "[HOST]/PREFIX=N/s[,burst=B]": requests on
// the route (balancer.RouteConfig's matching rules) get Rate per second per
// client address, with bursts of Burst (default: Rate rounded up, at least 1).
type RateLimit struct {
	Host, Prefix string
	Rate         float64 // requests per second
	Burst        int
}

// ParseRateLimit parses "[HOST]/PREFIX=N/s[,burst=B]"; N may also be per
// minute ("N/m").
func ParseRateLimit(s string) (RateLimit, error) {
	var rl RateLimit
	rest := s
	if i := strings.LastIndex(rest, ",burst="); i >= 0 {
		b, err := strconv.Atoi(rest[i+len(",burst="):])
		if err != nil || b < 1 || b > 1<<20 {
			return rl, fmt.Errorf("burst %q: want a whole number 1..1048576", rest[i+len(",burst="):])
		}
		rl.Burst = b
		rest = rest[:i]
	}
	eq := strings.LastIndexByte(rest, '=')
	if eq < 0 || strings.IndexByte(rest, '/') < 0 {
		return rl, fmt.Errorf("want [HOST]/PREFIX=N/s[,burst=B]")
	}
	rate, per, ok := strings.Cut(rest[eq+1:], "/")
	n, err := strconv.ParseFloat(rate, 64)
	if !ok || err != nil || !(n > 0) || math.IsInf(n, 0) || (per != "s" && per != "m") {
		return rl, fmt.Errorf("rate %q: want N/s or N/m with N > 0", rest[eq+1:])
	}
	if per == "m" {
		n /= 60
	}
	rl.Rate = n
	host, prefix, err := parseHostPrefix(rest[:eq])
	if err != nil {
		return rl, err
	}
	rl.Host, rl.Prefix = host, prefix
	if rl.Burst == 0 {
		rl.Burst = max(1, int(math.Ceil(rl.Rate)))
	}
	return rl, nil
}

// parseHostPrefix checks and normalises "[HOST]/PREFIX" by the rules of
// --route (balancer.ParseRule).
func parseHostPrefix(hp string) (host, prefix string, err error) {
	r, err := balancer.ParseRule(hp)
	return r.Host, r.Prefix, err
}

// ---------------------------------------------------------------------------
// Per-address tables.

// addrKey is a client address as a table key: IPv4 (mapped) as is, IPv6 by
// its /64, since one host usually holds a whole /64.
type addrKey [16]byte

func keyOf(ip netip.Addr) addrKey {
	k := ip.Unmap().As16()
	if ip.Unmap().Is6() {
		clear(k[8:])
	}
	return k
}

const tableShards = 64

func shardOf(k addrKey) int {
	h := uint32(2166136261) // FNV-1a
	for _, c := range k {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % tableShards)
}

// connTable counts open connections per client address. An entry exists
// only while its count is above zero, so its size is bounded by the open
// connections.
type connTable struct {
	shards [tableShards]struct {
		mu sync.Mutex // guards m
		m  map[addrKey]int32
		_  [40]byte // keep shards on their own cache lines
	}
}

// acquire counts one more connection for k unless it already has limit.
func (t *connTable) acquire(k addrKey, limit int) bool {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[addrKey]int32)
	}
	if int(sh.m[k]) >= limit {
		return false
	}
	sh.m[k]++
	return true
}

func (t *connTable) release(k addrKey) {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	if sh.m[k] <= 1 {
		delete(sh.m, k)
	} else {
		sh.m[k]--
	}
	sh.mu.Unlock()
}

// bucketTable holds token buckets per client address for one rate limit.
// A bucket that has refilled to its burst is the same as no bucket, so
// full ones are dropped: on a sweep at most once a minute per shard, and
// whenever a shard reaches bucketShardMax entries. When a shard is still
// full after that (a flood from more addresses than fit), an arbitrary
// entry goes: memory stays bounded (about 64 bytes × 65,536 per rule), at
// worst a client in that flood gets a fresh burst.
type bucketTable struct {
	rate  float64 // tokens per second; immutable
	burst float64 // immutable
	start time.Time

	shards [tableShards]struct {
		mu    sync.Mutex // guards m and swept
		m     map[addrKey]bucket
		swept int64 // nanoseconds since start of the last sweep
	}
}

const (
	bucketShardMax = 1024 // × tableShards = 65,536 addresses per rule
	bucketSweep    = int64(time.Minute)
)

type bucket struct {
	tokens float64
	at     int64 // nanoseconds since start when tokens was computed
}

func newBucketTable(rate float64, burst int) *bucketTable {
	return &bucketTable{rate: rate, burst: float64(burst), start: time.Now()}
}

func (t *bucketTable) now() int64 { return int64(time.Since(t.start)) }

// take takes a token for k at now (nanoseconds since t.start). When none is
// left it returns false and the seconds until one will be.
func (t *bucketTable) take(k addrKey, now int64) (ok bool, retryAfter int) {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[addrKey]bucket)
	}
	b, found := sh.m[k]
	if !found {
		if len(sh.m) >= bucketShardMax || now-sh.swept > bucketSweep {
			t.sweepLocked(sh.m, now)
			sh.swept = now
			for k2 := range sh.m {
				if len(sh.m) < bucketShardMax {
					break
				}
				delete(sh.m, k2)
			}
		}
		b = bucket{tokens: t.burst, at: now}
	}
	b.tokens = min(t.burst, b.tokens+float64(now-b.at)/1e9*t.rate)
	b.at = now
	if b.tokens < 1 {
		sh.m[k] = b
		return false, int(math.Ceil((1 - b.tokens) / t.rate))
	}
	b.tokens--
	sh.m[k] = b
	return true, 0
}

// sweepLocked drops the buckets that have refilled.
func (t *bucketTable) sweepLocked(m map[addrKey]bucket, now int64) {
	for k, b := range m {
		if b.tokens+float64(now-b.at)/1e9*t.rate >= t.burst {
			delete(m, k)
		}
	}
}

func (t *bucketTable) len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].m)
		t.shards[i].mu.Unlock()
	}
	return n
}

// ---------------------------------------------------------------------------
// The edge state of a Server.

// edgeState is built by newEdge and immutable after, except for the
// tables, which guard themselves.
type edgeState struct {
	cfg     EdgeConfig
	perIP   connTable
	rates   []*bucketTable    // parallel to cfg.RateLimits
	rateIdx *balancer.Matcher // over cfg.RateLimits
	origins originRules       // origin.go
	tls     *tlsFront         // tls.go; nil without TLS
	secret  [proxyproto.SecretLen]byte
	tlsPort string // the TLS listener's port, for --redirect-https
}

func newEdge(cfg EdgeConfig) (*edgeState, error) {
	e := &edgeState{cfg: cfg}
	if _, err := rand.Read(e.secret[:]); err != nil {
		return nil, err
	}
	for _, rl := range cfg.RateLimits {
		if !(rl.Rate > 0) {
			return nil, fmt.Errorf("loop: rate limit %s%s: rate must be positive", rl.Host, rl.Prefix)
		}
		e.rates = append(e.rates, newBucketTable(rl.Rate, max(rl.Burst, 1)))
	}
	rules := make([]balancer.Rule, len(cfg.RateLimits))
	for i, rl := range cfg.RateLimits {
		rules[i] = balancer.Rule{Host: rl.Host, Prefix: rl.Prefix}
	}
	e.rateIdx = balancer.NewMatcher(rules)
	e.origins = newOriginRules(cfg.AllowedOrigins)
	return e, nil
}

const (
	proxyResultOK      = "ok"
	proxyResultBad     = "bad"
	proxyResultTimeout = "timeout"
)

// Connections counts the client connections open, tunnels included.
func (s *Server) Connections() int64 {
	return s.open.Load() + int64(s.cfg.Tunnels.Len())
}

// admitConn decides on a connection netpoll just accepted: beyond
// --max-conns it is closed at once (the accept loop goes on to the next;
// nothing spins) and counted.
func (s *Server) admitConn(conn netpoll.Connection) bool {
	if s.edge == nil || s.edge.cfg.MaxConns <= 0 || s.isFrontConn(conn) {
		return true // the TLS front admitted its connections itself (tls.go)
	}
	if s.Connections() >= int64(s.edge.cfg.MaxConns) {
		s.m.refusedMaxConns.Inc()
		refuse(conn)
		return false
	}
	return true
}

// refuse ends a connection from onPrepare, where netpoll has not yet
// registered it and a Close would make it log a failed detach for every
// refused connection: both directions are shut down (the client gets FIN
// at once), and netpoll closes the socket on the hang-up it then sees.
func refuse(conn netpoll.Connection) {
	if nc, ok := conn.(netpoll.Conn); ok && unix.Shutdown(nc.Fd(), unix.SHUT_RDWR) == nil {
		return
	}
	conn.Close()
}

// prepareEdge sets what a new connection must do first: read a PROXY
// header (from the TLS front, or with --proxy-protocol), or else count
// against --max-conns-per-ip now. False: close it.
func (s *Server) prepareEdge(cc *clientConn, ip netip.Addr) bool {
	cc.clientIP = ip
	if s.edge == nil {
		return true
	}
	switch {
	case s.isFrontConn(cc.conn):
		cc.proxy = proxyFront
		return true
	case s.edge.cfg.ProxyProtocol:
		cc.proxy = proxyPublic
		return true
	}
	return s.acquireIP(cc)
}

// acquireIP counts cc against --max-conns-per-ip under its client address.
func (s *Server) acquireIP(cc *clientConn) bool {
	if s.edge == nil || s.edge.cfg.MaxConnsPerIP <= 0 {
		return true
	}
	k := keyOf(cc.clientIP)
	if !s.edge.perIP.acquire(k, s.edge.cfg.MaxConnsPerIP) {
		s.m.refusedPerIP.Inc()
		return false
	}
	cc.ipKey, cc.ipHeld = k, true
	return true
}

// releaseIP undoes acquireIP; from the close callback.
func (s *Server) releaseIP(cc *clientConn) {
	if cc.ipHeld {
		cc.ipHeld = false
		s.edge.perIP.release(cc.ipKey)
	}
}

// edgeRequest applies --redirect-https, --allowed-origin and --rate-limit
// to a parsed request head, before anything is routed or forwarded. done
// reports that it answered the request itself.
func (s *Server) edgeRequest(cc *clientConn, ex *exchange, head []byte) (act action, done bool) {
	e := s.edge
	if e == nil {
		return actKeep, false
	}
	req := &ex.req
	if e.cfg.RedirectHTTPS && cc.fwd.Proto != "https" && !forwardedHTTPS(cc, req, head) {
		s.m.redirects.Inc()
		b := buffers.Get().(*[]byte)
		ex.target = req.AppendTarget(ex.target[:0], head, 0) // the normalized path and the query, in origin form
		close := s.closeAfterEdge(req)
		*b = http1.AppendRedirectHTTPS((*b)[:0], balancer.HostName(req.Host.Of(head)), e.tlsPort, ex.target, close)
		return s.edgeAnswer(cc, req, b, 301, close), true
	}
	if req.WebSocket {
		if i := e.origins.rules.Match(req.Host.Of(head), reqPath(req, head)); i >= 0 {
			origin, ok := req.Get(head, "Origin")
			if ok && !e.origins.allowed(i, origin) {
				s.m.originRefused.Inc()
				s.m.countReject(403)
				b := buffers.Get().(*[]byte)
				*b = http1.AppendError((*b)[:0], 403, true)
				return s.edgeAnswer(cc, req, b, 403, true), true
			}
		}
	}
	if i := e.rateIdx.Match(req.Host.Of(head), reqPath(req, head)); i >= 0 && cc.clientIP.IsValid() {
		t := e.rates[i]
		if ok, retry := t.take(keyOf(cc.clientIP), t.now()); !ok {
			s.m.rateLimited.Inc()
			s.m.countReject(429)
			close := s.closeAfterEdge(req)
			b := buffers.Get().(*[]byte)
			*b = http1.AppendRetryAfter((*b)[:0], 429, retry, close)
			return s.edgeAnswer(cc, req, b, 429, close), true
		}
	}
	return actKeep, false
}

// closeAfterEdge: a request answered at the edge keeps its connection only
// when nothing of it remains unread and the client wants to keep it.
func (s *Server) closeAfterEdge(req *http1.Request) bool {
	return req.Body() != http1.BodyNone || req.Close || req.WebSocket || req.Upgrade || s.draining.Load()
}

// edgeAnswer sends the response in b (returning b to its pool) for a
// request whose head is still in the input, and consumes the head when the
// connection stays open.
func (s *Server) edgeAnswer(cc *clientConn, req *http1.Request, b *[]byte, status int, close bool) action {
	s.m.countStatus(status)
	cc.status = uint16(status)
	cc.conn.Writer().WriteBinary(*b)
	err := cc.conn.Writer().Flush()
	buffers.Put(b)
	if close || err != nil {
		cc.linger = err == nil
		return actClose
	}
	cc.conn.Reader().Skip(req.HeadLen)
	cc.conn.Reader().Release()
	return actKeep
}

// forwardedHTTPS: a trusted proxy in front said the client used https.
func forwardedHTTPS(cc *clientConn, req *http1.Request, head []byte) bool {
	if !cc.fwd.Trusted {
		return false
	}
	v, ok := req.Get(head, "X-Forwarded-Proto")
	return ok && http1.EqualFold(v, "https")
}
