package loop

import (
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/accesslog"
	"github.com/wsgate/wsgate/tunnel"
)

// The record of an exchange: what the metrics by pool and status and the
// access log (--access-log, Config.AccessLog) need from a request, kept while
// it is served, and turned into counts and a line when it ends. The sink,
// its queue and the JSON are the accesslog package's; the fields are
// chosen here.
//
// A request line:
//
//	{"time":"2025-01-02T15:04:05.123456Z","type":"request","client":"10.0.0.7",
//	 "method":"GET","host":"example.com","path":"/a?b=c","status":200,
//	 "pool":"default","backend":"10.0.0.11:3000","duration_ms":1.234,
//	 "bytes_in":0,"bytes_out":1234}
//
// A tunnel line (when a WebSocket tunnel closes):
//
//	{"time":"…","type":"tunnel","client":"10.0.0.7","host":"example.com",
//	 "path":"/ws","pool":"default","backend":"10.0.0.11:3000",
//	 "duration_ms":60012.5,"bytes_in":512,"bytes_out":2048,"reason":"client_closed"}
//
// bytes_in and bytes_out are body bytes (request and response body as
// framed by Content-Length or chunked; -1 when not known) for a request,
// and the bytes relayed each way for a tunnel. time is when the line was
// written (the end of the request or tunnel), UTC.

// accessRec is what an exchange remembers for its log line and metrics.
// Handler goroutine only; reset after each exchange.
type accessRec struct {
	parsed   bool              // a request head was read
	upstream bool              // the status is the backend's answer
	ws       bool              // a valid WebSocket handshake
	pool     *balancer.Pool    // nil before (or without) a route
	backend  *balancer.Backend // the backend that served it, if any
	start    time.Time         // when the head was complete (only with a log)
	reqBody  int64             // request body bytes by framing; -1 unknown
	// data holds copies of method, host and target (only with a log):
	// data[:m] method, data[m:h] host, data[h:] target.
	data []byte
	m, h int
}

func (r *accessRec) reset() {
	d := r.data[:0]
	if cap(d) > 4<<10 {
		d = nil
	}
	*r = accessRec{data: d}
}

// recordHead is called once a request head is complete: it remembers
// what the log line and the metrics need.
func (s *Server) recordHead(ex *exchange, head []byte) {
	r := &ex.rec
	req := &ex.req
	r.parsed = true
	r.ws = req.WebSocket
	r.reqBody = -1
	switch req.Body() {
	case http1.BodyNone:
		r.reqBody = 0
	case http1.BodyLength:
		r.reqBody = req.ContentLength
	}
	if s.cfg.AccessLog == nil {
		return
	}
	r.start = time.Now()
	r.data = append(r.data[:0], req.Method.Of(head)...)
	r.m = len(r.data)
	r.data = append(r.data, req.Host.Of(head)...)
	r.h = len(r.data)
	r.data = append(r.data, req.Target.Of(head)...)
}

// rejected notes the status an http1 error is answered with (rejectErr
// sends it), and counts a refused WebSocket handshake.
func (s *Server) rejected(cc *clientConn, err error) error {
	cc.status = uint16(http1.StatusOf(err))
	switch err {
	case http1.ErrBadWebSocket:
		s.m.countHandshakeReject(hsBadHandshake)
	case http1.ErrBadWebSocketKey:
		s.m.countHandshakeReject(hsBadKey)
	case http1.ErrBadWebSocketVersion:
		s.m.countHandshakeReject(hsBadVersion)
	}
	return err
}

// exchangeDone runs after every serve: it counts the request by pool and
// status class, counts a refused handshake by reason, writes the access
// log line, and resets the record.
func (s *Server) exchangeDone(cc *clientConn, ex *exchange) {
	r := &ex.rec
	status := int(cc.status)
	cc.status = 0
	if !r.parsed {
		r.reset()
		return
	}
	s.m.countPoolStatus(r.pool, status)
	if r.ws && status != 101 {
		s.m.countHandshakeReject(handshakeReason(r, status, ex.resp.Status))
	}
	if a := s.cfg.AccessLog; a != nil {
		ln := a.Line("request")
		ln.ByteString("client", cc.fwd.ClientIP)
		ln.ByteString("method", r.data[:r.m])
		ln.ByteString("host", r.data[r.m:r.h])
		ln.ByteString("path", r.data[r.h:])
		ln.Int("status", int64(status))
		addPoolBackend(&ln, r.pool, r.backend)
		ln.Millis("duration_ms", time.Since(r.start))
		respBody := int64(-1)
		if r.upstream && !ex.resp.Chunked && ex.resp.ContentLength >= 0 {
			respBody = ex.resp.ContentLength
		}
		if status == 101 {
			respBody = 0
		}
		ln.Int("bytes_in", r.reqBody)
		ln.Int("bytes_out", respBody)
		a.Submit(&ln)
	}
	r.reset()
}

// tunnelRec is what a tunnel's close line needs from its handshake, copied
// when the tunnel starts (the exchange is reused at once): info holds the
// client address, then the host, then the target.
type tunnelRec struct {
	info           []byte
	ipLen, hostEnd int
	pool           *balancer.Pool
}

// tunnelRecord copies what the tunnel's close line needs from ex, which
// still holds the handshake. One allocation per tunnel, only with a log;
// without one the record is empty.
func (s *Server) tunnelRecord(cc *clientConn, ex *exchange) tunnelRec {
	if s.cfg.AccessLog == nil {
		return tunnelRec{}
	}
	r := &ex.rec
	info := make([]byte, 0, len(cc.fwd.ClientIP)+len(r.data)-r.m)
	info = append(info, cc.fwd.ClientIP...)
	ipLen := len(info)
	info = append(info, r.data[r.m:]...)
	return tunnelRec{info: info, ipLen: ipLen, hostEnd: ipLen + r.h - r.m, pool: r.pool}
}

// tunnelClosed runs on the tunnel engine when a tunnel to b ends (after
// the backend's count is released, tunnel.go): it observes the tunnel's
// duration and writes its close line.
func (s *Server) tunnelClosed(b *balancer.Backend, r tunnelRec, st tunnel.Stats) {
	s.m.tunnelDuration.Update(st.Duration.Seconds())
	a := s.cfg.AccessLog
	if a == nil {
		return
	}
	ln := a.Line("tunnel")
	ln.ByteString("client", r.info[:r.ipLen])
	ln.ByteString("host", r.info[r.ipLen:r.hostEnd])
	ln.ByteString("path", r.info[r.hostEnd:])
	addPoolBackend(&ln, r.pool, b)
	ln.Millis("duration_ms", st.Duration)
	ln.Int("bytes_in", st.ClientToBackend)
	ln.Int("bytes_out", st.BackendToClient)
	ln.String("reason", st.Reason.String())
	a.Submit(&ln)
}

// addPoolBackend adds "pool" and "backend", "" for none.
func addPoolBackend(ln *accesslog.Line, p *balancer.Pool, b *balancer.Backend) {
	pool, backend := "", ""
	if p != nil {
		pool = p.Name()
	}
	if b != nil {
		backend = b.Addr()
	}
	ln.String("pool", pool)
	ln.String("backend", backend)
}

// Why a WebSocket handshake did not become a tunnel.
const (
	hsBadHandshake = "bad_handshake"   // not a GET, or has a body (400)
	hsBadKey       = "bad_key"         // Sec-WebSocket-Key missing or invalid (400)
	hsBadVersion   = "bad_version"     // Sec-WebSocket-Version not 13 (426)
	hsNoRoute      = "no_route"        // no route for the host and path (404)
	hsNoBackend    = "no_backend"      // no healthy backend in the pool (503)
	hsConnect      = "connect_failed"  // no backend could be reached (502)
	hsTimeout      = "backend_timeout" // the backend did not answer in time (504)
	hsBad101       = "bad_101"         // a 101 with a wrong Sec-WebSocket-Accept or Upgrade (502)
	hsBadResponse  = "bad_response"    // the backend's answer was not HTTP, or it reset (502)
	hsDeclined     = "declined"        // the backend answered with another status
	hsAborted      = "aborted"         // the client went away before an answer
	hsOther        = "other"           // anything else the proxy refused (413, 431, ...)
)

// handshakeReason classifies a valid handshake that got status instead
// of 101; backendStatus is the status line the backend sent, if any.
func handshakeReason(r *accessRec, status, backendStatus int) string {
	switch {
	case r.upstream:
		return hsDeclined
	case status == 0:
		return hsAborted
	case status == 404:
		return hsNoRoute
	case status == 503:
		return hsNoBackend
	case status == 504:
		return hsTimeout
	case status == 502 && r.backend == nil:
		return hsConnect
	case status == 502 && backendStatus == 101:
		return hsBad101
	case status == 502:
		return hsBadResponse
	}
	return hsOther
}
