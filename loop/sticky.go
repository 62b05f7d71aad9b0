package loop

// Stickiness in the exchange (balancer/sticky.go has the token scheme):
//
//   - auto/sid: an Engine.IO polling handshake (no sid, not a WebSocket)
//     is picked by the pool's policy, and the sid in the 200 response gets
//     "." + the node's token (relayHandshake; the response must have a
//     Content-Length and fit in the exchange buffer with its head, else it is
//     forwarded untouched and counted). A request whose sid carries a token
//     goes to that node when it is in the pool and usable, with the token
//     removed from the target, so the backend never sees it; otherwise the
//     pool's policy picks and wsgate_sticky_misses_total{reason} counts it.
//   - cookie: a request whose cookie "wsgate_POOL" names a usable node goes
//     there; every response from another node than the cookie named (or to a
//     request without one) sets the cookie (HttpOnly, SameSite=Lax, Path=/,
//     Secure on https; a session cookie). The cookie is forwarded as sent.
//   - ip: rendezvous hashing of the client address; the peer's, or for a
//     peer in --trusted-proxies the X-Forwarded-For entry nearest to us that
//     is not itself a trusted proxy.

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/eio"
)

// Sticky miss reasons (wsgate_sticky_misses_total{reason}).
const (
	missUntagged    = "untagged"    // an Engine.IO sid without a token
	missUnknown     = "unknown"     // a token (sid or cookie) that names no backend of the pool now
	missUnhealthy   = "unhealthy"   // the named backend is not usable
	missUnreachable = "unreachable" // the named backend could not be connected to
)

// stickyState is one exchange's sticky decision. Owned by the exchange; its
// buffers keep their capacity across exchanges.
type stickyState struct {
	pool      *balancer.Pool
	want      *balancer.Backend // the node the request names, until the first pick
	pinned    *balancer.Backend // the node pinned by the first pick, until a second pick
	cookieB   *balancer.Backend // StickyCookie: the node the request's cookie named
	handshake bool              // tag the sid of the response
	upgrade   bool              // a WebSocket upgrade of a session (sid set)
	cookie    bool              // StickyCookie: maybe set the cookie
	ip        bool              // StickyIP: pick by ipKey
	ipKey     []byte            // client address, canonical text
	sid       []byte            // the request's sid, untagged
	target    []byte            // the target without the token
	body      []byte            // the tagged handshake body
	fwd       http1.Forward     // the Forward with Target set to target
	// ref is the polling session the request joined (it shares the
	// session's count on pinned instead of adding its own); stickyDone,
	// a second pick or an upgrade ends the join.
	ref *balancer.Session
}

func (st *stickyState) reset() {
	st.pool, st.want, st.pinned, st.cookieB, st.ref = nil, nil, nil, nil, nil
	st.handshake, st.upgrade, st.cookie, st.ip = false, false, false, false
	st.ipKey, st.sid, st.target, st.body = st.ipKey[:0], st.sid[:0], st.target[:0], st.body[:0]
	st.fwd = http1.Forward{}
	if cap(st.body) > 4<<10 {
		st.body = nil
	}
}

// PollingSessions is the number of Engine.IO sessions counted in their
// polling phase (each also counts in its backend's Active).
func (s *Server) PollingSessions() int { return s.sticky.PollingSessions() }

// stickyRequest classifies the request (parsed from head, routed to pool)
// for the sticky mode and returns the Forward to use: fwd, or a copy whose
// Target has the sid's token removed. fwd.Target, when set, is the target
// to be sent (a stripped route prefix, say) and is read instead of the
// request's.
func (s *Server) stickyRequest(cc *clientConn, ex *exchange, head []byte, pool *balancer.Pool, fwd *http1.Forward) *http1.Forward {
	st := &ex.sticky
	st.reset()
	st.pool = pool
	req := &ex.req
	mode := s.sticky.Mode()
	switch mode {
	case balancer.StickyNone:
		return fwd
	case balancer.StickyCookie:
		st.cookie = true
		if v := cookieValue(req, head, s.sticky.CookieName(pool)); v != nil {
			if b := s.sticky.Lookup(pool, v); b != nil {
				st.want, st.cookieB = b, b
			} else {
				s.m.stickyMiss(missUnknown)
			}
		}
		return fwd
	case balancer.StickyIP:
		st.ip = true
		st.ipKey = s.clientKey(st.ipKey[:0], cc, req, head)
		return fwd
	}

	target := fwd.Target
	if target == nil {
		target = req.Target.Of(head)
	}
	q := eio.ParseTarget(target)
	if mode == balancer.StickyAuto && !q.Path && !q.EIO || mode == balancer.StickySID && !q.EIO && !q.HasSID {
		return fwd
	}
	if !q.HasSID {
		st.handshake = !req.WebSocket && !q.WebSocket && !q.JSONP && req.IsMethod(head, "GET")
		return fwd
	}
	sid, tok, ok := balancer.CutToken(target[q.SIDStart:q.SIDEnd])
	st.sid = append(st.sid[:0], sid...)
	st.upgrade = req.WebSocket
	if !st.upgrade {
		s.sticky.SessionSeen(st.sid)
	}
	if !ok {
		s.m.stickyMiss(missUntagged)
		return fwd
	}
	if b := s.sticky.Lookup(pool, tok); b != nil {
		st.want = b
	} else {
		s.m.stickyMiss(missUnknown)
	}
	st.target = append(st.target[:0], target[:q.SIDStart+len(sid)]...)
	st.target = append(st.target, target[q.SIDEnd:]...)
	st.fwd = *fwd
	st.fwd.Target = st.target
	return &st.fwd
}

// pick chooses the backend for the exchange's next connection attempt: the
// node the request names, the first time, when it is usable; else by client
// address (StickyIP) or the pool's policy. Like Pool.Pick it counts one
// against the backend returned. When every backend of the pool is at its
// max-conns (or, for a WebSocket handshake, out of handshake tokens), the
// policy's pick waits in the pool's FIFO queue up to --queue-timeout
// (Pool.PickWait); err then says why nothing was picked (balancer's
// ErrQueueTimeout, ErrQueueFull). A request for a session whose node is
// healthy but full waits in the queue for that node alone: no other node
// knows the session.
func (s *Server) pick(cc *clientConn, pool *balancer.Pool, ex *exchange) (*balancer.Backend, error) {
	st := &ex.sticky
	s.sticky.Sweep()
	if b := st.want; b != nil {
		st.want = nil
		ok, err := s.pin(cc, pool, b, ex)
		if err == errQueued {
			return nil, err // queue.go: resume calls pinned
		}
		return s.pinned(cc, pool, ex, b, ok, err)
	} else if st.pinned != nil {
		// The pinned node could not be reached; its Pick is released.
		st.pinned = nil
		if st.ref != nil {
			s.sticky.Leave(st.ref)
			st.ref = nil
		}
		s.m.stickyMiss(missUnreachable)
	}
	return s.pickPolicy(cc, pool, ex)
}

// pinned is pick's step after pin's answer for the session's node b: b
// when it took the request, else the policy's pick.
func (s *Server) pinned(cc *clientConn, pool *balancer.Pool, ex *exchange, b *balancer.Backend, ok bool, err error) (*balancer.Backend, error) {
	if err != nil {
		return nil, err
	}
	st := &ex.sticky
	if ok {
		st.pinned = b
		s.m.stickyHits.Inc()
		if len(st.sid) > 0 {
			st.ref = s.sticky.Join(st.sid, b)
		}
		return b, nil
	}
	s.m.stickyMiss(missUnhealthy)
	return s.pickPolicy(cc, pool, ex)
}

// pickPolicy picks by client address (StickyIP) or the pool's policy.
func (s *Server) pickPolicy(cc *clientConn, pool *balancer.Pool, ex *exchange) (*balancer.Backend, error) {
	if ex.sticky.ip {
		return s.sticky.PickHash(pool, ex.sticky.ipKey, ex.skip), nil
	}
	return s.pickWait(cc, pool, ex, ex.skip)
}

// pickWait is Pool.PickWait with the queue's wait recorded. No usable
// backend is not an error here (nil, nil): the caller answers 503, or 502
// when it has tried some. When ex.mayPark, a wait returns errQueued at
// once instead, with the exchange kept in cc.park until the queue answers
// (queue.go).
func (s *Server) pickWait(cc *clientConn, pool *balancer.Pool, ex *exchange, skip func(*balancer.Backend) bool) (*balancer.Backend, error) {
	if ex.mayPark {
		ex.park.cc = cc
		b, err, tk := pool.PickAsync(skip, ex.ws, s.cfg.QueueTimeout, ex)
		if tk == nil {
			return s.queueAnswered(pool, b, 0, err)
		}
		ex.park.tk = tk
		ex.parkWork()
		// Held: not idle to a drain, and a FIN (the client's half-close)
		// ends its input, not the connection (netpoll patch 7).
		netpoll.Hold(cc.conn, true)
		cc.park.Store(ex)
		cc.conn.Reader().Release() // the head is copied out (ex.out): its input buffer goes
		return nil, errQueued
	}
	b, waited, err := pool.PickWait(skip, ex.ws, s.cfg.QueueTimeout)
	return s.queueAnswered(pool, b, waited, err)
}

// queueAnswered records the queue's wait for pickWait's answer.
func (s *Server) queueAnswered(pool *balancer.Pool, b *balancer.Backend, waited time.Duration, err error) (*balancer.Backend, error) {
	if waited > 0 || err == balancer.ErrQueueTimeout {
		s.m.queueWait(pool.Name(), waited)
	}
	if err == balancer.ErrNoBackend {
		err = nil
	}
	return b, err
}

// stickyDone runs when an exchange ends, after its backend's Pick is
// released: a request that shared its session's count gives it back.
func (s *Server) stickyDone(ex *exchange) {
	if st := &ex.sticky; st.ref != nil {
		s.sticky.Leave(st.ref)
		st.ref = nil
	}
}

// stickyResponse is called with each response head (out) about to go to
// the client from backend b: it adds the cookie under StickyCookie, and
// ends the polling phase of a session whose upgrade succeeded.
func (s *Server) stickyResponse(cc *clientConn, ex *exchange, b *balancer.Backend, out []byte) []byte {
	st := &ex.sticky
	if st.upgrade && ex.resp.Status == 101 {
		if st.ref != nil {
			s.sticky.Upgraded(st.ref) // the session's count becomes the tunnel's
			st.ref = nil
		} else {
			s.sticky.SessionUpgraded(st.sid)
		}
	}
	if !st.cookie || b == st.cookieB || len(out) < 4 {
		return out
	}
	out = out[:len(out)-2] // before the empty line
	out = append(out, "Set-Cookie: "...)
	out = append(out, s.sticky.CookieName(st.pool)...)
	out = append(out, '=')
	out = s.sticky.AppendToken(out, st.pool, b)
	out = append(out, "; Path=/; HttpOnly; SameSite=Lax"...)
	if cc.fwd.Proto == "https" {
		out = append(out, "; Secure"...)
	}
	return append(out, "\r\n\r\n"...)
}

// relayHandshake relays the response to an Engine.IO handshake with the
// node's token added to the sid. A response that is not a 200 with a
// Content-Length fitting in ex.buf, or whose body is not an open packet, is
// relayed untouched by relayResponse.
func (s *Server) relayHandshake(cc *clientConn, ex *exchange, uc *upConn, nbuf int, closeAfter bool) action {
	resp := &ex.resp
	st := &ex.sticky
	if resp.Status != 200 || resp.Body(false) != http1.BodyLength || resp.ContentLength > int64(len(ex.buf)-resp.HeadLen) {
		s.m.stickyUntagged.Inc()
		return s.relayResponse(cc, ex, uc, nbuf, false, closeAfter)
	}
	end := resp.HeadLen + int(resp.ContentLength)
	if nbuf < end {
		uc.c.SetReadDeadline(time.Now().Add(s.cfg.ResponseTimeout))
		for nbuf < end {
			m, err := uc.c.Read(ex.buf[nbuf:end])
			nbuf += m
			if err != nil && nbuf < end {
				status := s.readFailed(err) // exchange.go
				s.cfg.Logf("backend %s: handshake body: %v", uc.b.Addr(), err)
				s.drop(uc, actClose)
				return s.fail(cc, status, true)
			}
		}
	}
	tok := s.sticky.AppendToken(st.target[:0], st.pool, uc.b) // st.target is free: a handshake has no sid
	body, sid, ttl, ok := eio.TagHandshake(st.body[:0], ex.buf[resp.HeadLen:end], tok)
	if !ok {
		s.m.stickyUntagged.Inc()
		return s.relayResponse(cc, ex, uc, nbuf, false, closeAfter)
	}
	st.body, st.target = body, tok
	s.m.stickyTagged.Inc()
	s.sticky.SessionStarted(sid, uc.b, ttl)

	s.appendHead(ex, nbuf, closeAfter) // exchange.go
	ex.out = setContentLength(ex.out, len(body))
	ex.out = append(ex.out, body...)
	// The backend's part is over (its whole response is in ex.buf): its
	// pick is released before the client gets the sid, so the session's
	// next request, or the next handshake, never sees it still in flight.
	if nbuf != end {
		s.m.upstreamError(upUnsolicited) // bytes beyond the response: never reused
	}
	s.releaseUpstream(cc, ex, uc, !resp.Close && nbuf == end, closeAfter) // exchange.go
	w := cc.conn.Writer()
	w.WriteBinary(ex.out)
	if w.Flush() != nil || closeAfter {
		return actClose
	}
	return actKeep
}

// setContentLength rewrites, in place, the value of every Content-Length
// line of the head in out (as AppendResponse writes it: "Name: value\r\n"
// lines ending in an empty line) to n.
func setContentLength(out []byte, n int) []byte {
	var num [20]byte
	val := strconv.AppendInt(num[:0], int64(n), 10)
	i := bytes.Index(out, []byte("\r\n")) + 2 // after the status line
	for i > 1 && i < len(out) {
		e := bytes.Index(out[i:], []byte("\r\n"))
		if e <= 0 {
			break // the empty line, or no line end
		}
		line := out[i : i+e]
		if c := bytes.IndexByte(line, ':'); c == len("Content-Length") && http1.EqualFold(line[:c], "content-length") {
			vs := i + c + 1
			for vs < i+e && (out[vs] == ' ' || out[vs] == '\t') {
				vs++
			}
			tail := append([]byte(nil), out[i+e:]...)
			out = append(append(out[:vs], val...), tail...)
			e = vs - i + len(val)
		}
		i += e + 2
	}
	return out
}

// cookieValue returns the value of cookie name in the request's Cookie
// headers, or nil.
func cookieValue(req *http1.Request, head []byte, name string) []byte {
	for i := 0; i < req.N; i++ {
		h := req.Headers[i]
		if !http1.EqualFold(h.Name.Of(head), "cookie") {
			continue
		}
		v := h.Value.Of(head)
		for len(v) > 0 {
			p := v
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				p, v = v[:j], v[j+1:]
			} else {
				v = nil
			}
			p = bytes.TrimLeft(p, " \t")
			if len(p) > len(name) && p[len(name)] == '=' && string(p[:len(name)]) == name {
				return bytes.TrimRight(p[len(name)+1:], " \t")
			}
		}
	}
	return nil
}

// clientKey appends the client address for StickyIP: the peer's address,
// or, when the peer is a trusted proxy, the X-Forwarded-For entry nearest
// to us that is not a trusted proxy itself (the leftmost when all are).
func (s *Server) clientKey(dst []byte, cc *clientConn, req *http1.Request, head []byte) []byte {
	if !cc.fwd.Trusted {
		return append(dst, cc.fwd.ClientIP...)
	}
	var found, leftmost netip.Addr
	// Walk the X-Forwarded-For values from the last header backwards, each
	// from its last entry backwards.
	for i := req.N - 1; i >= 0 && !found.IsValid(); i-- {
		h := req.Headers[i]
		if !http1.EqualFold(h.Name.Of(head), "x-forwarded-for") {
			continue
		}
		v := h.Value.Of(head)
		for len(v) > 0 {
			e := v
			if j := bytes.LastIndexByte(v, ','); j >= 0 {
				e, v = v[j+1:], v[:j]
			} else {
				v = nil
			}
			a, ok := parseForwardedAddr(bytes.TrimSpace(e))
			if !ok {
				continue
			}
			leftmost = a
			if !s.trusted(a) {
				found = a
				break
			}
		}
	}
	switch {
	case found.IsValid():
		return found.AppendTo(dst)
	case leftmost.IsValid():
		return leftmost.AppendTo(dst)
	}
	return append(dst, cc.fwd.ClientIP...)
}

// parseForwardedAddr reads an X-Forwarded-For entry: an address, possibly
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwardedAddr(b []byte) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(string(b)); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// pin counts one against the session's own node b when it takes the
// request: usable, not skipped, below its max-conns and, for a WebSocket
// handshake, with a handshake token (--max-handshakes-per-backend). A
// healthy node that is only full is waited for in the pool's queue, with
// every other node skipped. false, nil: b cannot take it (the caller picks
// another); an error: the wait ended without a slot (errQueued: it goes
// on without the handler, queue.go).
func (s *Server) pin(cc *clientConn, pool *balancer.Pool, b *balancer.Backend, ex *exchange) (bool, error) {
	if ex.ws && s.sticky.PinUpgrade(b, ex.skip) || !ex.ws && s.sticky.Pin(b, ex.skip) {
		return true, nil
	}
	if !b.Healthy() || ex.skip(b) {
		return false, nil
	}
	got, err := s.pickWait(cc, pool, ex, func(x *balancer.Backend) bool { return x != b || ex.skip(x) })
	if err == errQueued {
		ex.park.pin = b // resume goes on with pinned
	}
	return got != nil, err
}
