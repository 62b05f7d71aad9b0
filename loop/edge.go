package loop

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"

	"github.com/cloudwego/netpoll"
	"github.com/valyala/bytebufferpool"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/limit"
	"github.com/wsgate/wsgate/loop/proxyproto"
	"github.com/wsgate/wsgate/loop/tlsfront"
)

// EdgeConfig is what wsgate does at the public edge: PROXY protocol,
// connection and rate limits, WebSocket origins, TLS. Its zero value turns
// all of it off.
type EdgeConfig struct {
	// ProxyProtocol requires a PROXY v1 or v2 header on every connection of
	// the plain listeners (edge_proxy.go, loop/proxyproto).
	ProxyProtocol bool
	// MaxConns bounds the client connections open (tunnels included);
	// beyond it new connections are closed at once and counted. 0: no limit.
	MaxConns int
	// MaxConnsPerIP bounds the connections open per client address (an IPv6
	// client by its /64); beyond it new ones are closed at once. 0: no limit.
	MaxConnsPerIP int
	// RateLimits are per-client token buckets on routes (429).
	RateLimits []limit.RateLimit
	// AllowedOrigins refuse WebSocket handshakes from other origins (403; loop/limit).
	AllowedOrigins []limit.AllowedOrigin
	// TLS, when TLS.Listen is set, terminates TLS (tls.go).
	TLS TLSConfig
	// RedirectHTTPS answers plain-HTTP requests with a 301 to https.
	RedirectHTTPS bool
}

// ---------------------------------------------------------------------------
// The edge state of a Server.

// edgeState is built by newEdge and immutable after, except for the
// tables, which guard themselves.
type edgeState struct {
	cfg     EdgeConfig
	perIP   limit.ConnTable
	rates   *limit.Rates
	origins limit.Origins
	tls     *tlsfront.Front // tls.go; nil without TLS
	secret  [proxyproto.SecretLen]byte
	tlsPort string // the TLS listener's port, for --redirect-https
}

// openEdge sets up the edge state, and with TLS the front (tls.go). Called
// by New after the plain listeners.
func (s *Server) openEdge() error {
	e, err := newEdge(s.cfg.Edge)
	if err != nil {
		return err
	}
	s.edge = e
	if len(s.cfg.Edge.TLS.Listen) == 0 {
		return nil
	}
	f, err := openFront(s, s.cfg.Edge.TLS)
	if err != nil {
		return err
	}
	_, e.tlsPort, _ = net.SplitHostPort(f.Addrs()[0].String())
	e.tls = f
	return nil
}

func newEdge(cfg EdgeConfig) (*edgeState, error) {
	e := &edgeState{cfg: cfg}
	if _, err := rand.Read(e.secret[:]); err != nil {
		return nil, err
	}
	rates, err := limit.NewRates(cfg.RateLimits)
	if err != nil {
		return nil, fmt.Errorf("loop: %v", err)
	}
	e.rates = rates
	e.origins = limit.NewOrigins(cfg.AllowedOrigins)
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

// refuse ends a connection from onPrepare. netpoll has not registered it
// (deferred registration, netpoll patch 9), so the Close detaches nothing
// and logs nothing, and the request that came with the accept
// (TCP_DEFER_ACCEPT) never reaches a handler, let alone a backend.
func refuse(conn netpoll.Connection) {
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
	k := limit.KeyOf(cc.clientIP)
	if !s.edge.perIP.Acquire(k, s.edge.cfg.MaxConnsPerIP) {
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
		s.edge.perIP.Release(cc.ipKey)
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
		b := buffers.Get()
		ex.target = req.AppendTarget(ex.target[:0], head, 0) // the normalized path and the query, in origin form
		close := s.closeAfterEdge(req)
		b.B = http1.AppendRedirectHTTPS(b.B, balancer.HostName(req.Host.Of(head)), e.tlsPort, ex.target, close)
		return s.edgeAnswer(cc, req, b, 301, close), true
	}
	if req.WebSocket {
		origin, ok := req.Get(head, "Origin")
		if e.origins.Refused(req.Host.Of(head), reqPath(req, head), origin, ok) {
			s.m.originRefused.Inc()
			s.m.countReject(403)
			b := buffers.Get()
			b.B = http1.AppendError(b.B, 403, true)
			return s.edgeAnswer(cc, req, b, 403, true), true
		}
	}
	if cc.clientIP.IsValid() {
		if ok, retry := e.rates.Take(req.Host.Of(head), reqPath(req, head), limit.KeyOf(cc.clientIP)); !ok {
			s.m.rateLimited.Inc()
			s.m.countReject(429)
			close := s.closeAfterEdge(req)
			b := buffers.Get()
			b.B = http1.AppendRetryAfter(b.B, 429, retry, close)
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
func (s *Server) edgeAnswer(cc *clientConn, req *http1.Request, b *bytebufferpool.ByteBuffer, status int, close bool) action {
	s.m.countStatus(status)
	cc.status = uint16(status)
	cc.conn.Writer().WriteBinary(b.B)
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
