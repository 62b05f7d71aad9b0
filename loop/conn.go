package loop

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/limit"
)

type ctxKey struct{}

// A client connection's state: busy (its handler runs), idle (waiting in
// the idle wheel), or closed. The idle wheel claims an idle connection by
// compare-and-swap, so it never closes one whose handler just started.
const (
	stateBusy   uint32 = 0
	stateIdle   uint32 = 1
	stateClosed uint32 = 2
)

// clientConn is the per-connection state kept while a client is connected:
// small, and free of buffers, which exchanges borrow only while they run.
type clientConn struct {
	conn       netpoll.Connection // immutable
	srv        *Server            // immutable
	fwd        http1.Forward      // immutable: client address, proto, trust
	acceptedAt time.Time          // immutable

	state atomic.Uint32 // stateBusy, stateIdle or stateClosed
	wheel wheelLinks    // guarded by the idle wheel's mutex

	served int  // requests started; handler goroutine only
	linger bool // close with a lingering close (reject.go); handler goroutine only

	status uint16 // status answered to the current request (record.go); handler goroutine only

	// own is an idle upstream connection that carried this client's request
	// body, kept for this client alone (exchange.go, keepOwn); the close
	// callback closes it. Taken by Swap on either side.
	own atomic.Pointer[upConn]

	// park is the exchange of a request waiting in the max-conns queue with
	// no handler running (queue.go); the handler that resumes it, or the
	// close callback, takes it.
	park atomic.Pointer[exchange]

	// await is the exchange of a WebSocket handshake waiting for its
	// backend's answer with no handler running (await.go). Read and
	// written only under netpoll's processing lock (handlers, RunInline,
	// the close callbacks).
	await *exchange

	// Edge (edge.go, edge_proxy.go). clientIP is set in onPrepare and, by a
	// PROXY header, before the first request; proxy is the header still to
	// read; ipKey/ipHeld are its --max-conns-per-ip count, released by the
	// close callback. Handler goroutine only, once netpoll has handed over.
	clientIP netip.Addr
	ipText   [46]byte // fwd.ClientIP's bytes (an address's longest text form fits)
	proxy    uint8
	frontID  uint64 // the TLS front's id of the connection (a TLS 1.3 one it can hand over); 0: none
	ipHeld   bool
	ipKey    limit.Key
}

// markBusy claims an idle connection for its handler; false when the idle
// wheel closed it first.
func (c *clientConn) markBusy(w *idleWheel) bool {
	if !c.state.CompareAndSwap(stateIdle, stateBusy) && c.state.Load() == stateClosed {
		return false
	}
	w.remove(c)
	return true
}

// markIdle lets the idle wheel close c after d unless a request comes.
func (c *clientConn) markIdle(w *idleWheel, d time.Duration) {
	if c.state.CompareAndSwap(stateBusy, stateIdle) {
		w.add(c, d)
	}
}

// action is what the handler does with the connection after an exchange.
type action uint8

const (
	actKeep   action = iota // wait for the next request
	actClose                // close the connection
	actTunnel               // the connection now belongs to the tunnel engine
	actQueued               // the request waits in the max-conns queue, its exchange in clientConn.park (queue.go)
	actAwait                // the handshake waits for its backend's answer, its exchange in clientConn.await (await.go)
)

// waits reports whether the exchange goes on later, without the handler
// (queued, or awaiting its answer): it is not done, and not given back.
func (a action) waits() bool { return a == actQueued || a == actAwait }

func (s *Server) onPrepare(conn netpoll.Connection) context.Context {
	if !s.admitConn(conn) { // edge.go: --max-conns
		return context.Background()
	}
	cc := &clientConn{conn: conn, srv: s, acceptedAt: time.Now(), wheel: wheelLinks{slot: -1}}
	ip := peerIP(conn.RemoteAddr())
	cc.fwd = http1.Forward{ClientIP: ip.AppendTo(cc.ipText[:0]), Proto: "http", Trusted: s.trusted(ip)}
	s.open.Add(1)
	s.m.accepted.Inc()
	conn.AddCloseCallback(func(netpoll.Connection) error {
		cc.state.Store(stateClosed)
		if own := s.takeOwn(cc); own != nil { // exchange.go
			own.c.Close()
		}
		if ex := cc.park.Swap(nil); ex != nil {
			s.parkGone(cc, ex) // queue.go: the request leaves the queue
		}
		if ex := cc.await; ex != nil {
			s.awaitGone(cc, ex) // await.go: the handshake ends unanswered
		}
		s.idle.remove(cc)
		s.open.Add(-1)
		s.releaseIP(cc) // edge.go
		return nil
	})
	cc.state.Store(stateIdle)
	s.idle.add(cc, s.cfg.HeaderTimeout)
	if !s.prepareEdge(cc, ip) { // edge.go: PROXY header to come, or --max-conns-per-ip now
		refuse(conn)
	}
	return cc // the context netpoll hands to onRequest (below: Value)
}

// A clientConn is its connection's context in netpoll, a context carrying
// only itself: no context.WithValue to allocate per connection.
func (cc *clientConn) Deadline() (time.Time, bool) { return time.Time{}, false }
func (cc *clientConn) Done() <-chan struct{}       { return nil }
func (cc *clientConn) Err() error                  { return nil }
func (cc *clientConn) Value(key any) any {
	if key == (ctxKey{}) {
		return cc
	}
	return nil
}

func peerIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// onRequest runs when a connection has input and no handler running. It
// serves requests while input is buffered, then leaves the connection idle
// (no goroutine) or closes or hands it over.
func (s *Server) onRequest(ctx context.Context, conn netpoll.Connection) error {
	cc, _ := ctx.Value(ctxKey{}).(*clientConn)
	if cc == nil {
		return conn.Close()
	}
	if ex := cc.await; ex != nil {
		// The answer came and the loop could not take it, the time is
		// up, or the client sent more (await.go).
		act, _ := s.awaitStep(cc, ex, false)
		if act != actAwait {
			s.exchangeEnded(cc, ex, act)
		}
		return nil
	}
	ex := cc.park.Swap(nil)
	act := actKeep
	if ex != nil {
		netpoll.Hold(conn, false)
		// The queue answered (netpoll.Wake), or input came while the
		// request waits: it goes on (queue.go).
		act = s.resume(cc, ex)
	} else {
		if conn.Reader().Len() == 0 {
			return nil // a Wake for a request already resumed
		}
		if !cc.markBusy(s.idle) {
			return nil // the idle wheel is closing it
		}
		if cc.proxy != proxyNone && !s.readProxyHeader(cc) { // edge_proxy.go
			return conn.Close()
		}
		ex = exchanges.Get().(*exchange)
		act = s.serve(cc, ex)
	}
	s.exchangeEnded(cc, ex, act)
	return nil
}

// exchangeEnded is the handler's end after an exchange whose answer is
// act: the exchange is recorded and, while the client has sent the next
// request already, that one is served (never from the loop: awaitInline
// ends with a tunnel); then the connection waits, closes, or goes to the
// tunnel engine.
func (s *Server) exchangeEnded(cc *clientConn, ex *exchange, act action) {
	conn := cc.conn
	for !act.waits() {
		s.exchangeDone(cc, ex) // record.go: metrics by pool, log line
		if act != actKeep || conn.Reader().Len() == 0 {
			break
		}
		act = s.serve(cc, ex)
	}
	if act.waits() {
		// The request waits in the queue (cc.park) or for its answer
		// (cc.await), with no goroutine; the connection stays busy (out
		// of the idle wheel).
		return
	}
	ex.reset()
	exchanges.Put(ex)
	switch act {
	case actKeep:
		cc.markIdle(s.idle, s.cfg.KeepAliveTimeout)
	case actClose, actTunnel:
		if act == actClose {
			s.lingerBeforeClose(cc) // reject.go
		}
		// For a tunnel, the close callback registered by startTunnel takes
		// the socket over once netpoll has let go of it.
		if act != actTunnel || !detachTunnel(cc) { // tunnel.go
			conn.Close()
		}
	}
}

const bufSize = 32 << 10

// exchange is the working memory of one request/response exchange, pooled:
// a connection holds one only while an exchange runs.
type exchange struct {
	*exchangeWork                              // parsers and the upstream buffer; given back while the request waits in the queue (park)
	out           []byte                       // heads and request-body batches
	wsKey         []byte                       // the client's Sec-WebSocket-Key, when ws
	ws            bool                         // the request is a WebSocket handshake
	http10        bool                         // the request is HTTP/1.0
	body          bool                         // the request has a body (its connection is kept by keepOwn, not pooled)
	tried         []*balancer.Backend          // backends that failed to connect, for this request
	skip          func(*balancer.Backend) bool // reports membership in tried; bound once
	target        []byte                       // the request target a ,strip route forwards
	sticky        stickyState                  // the sticky decision (sticky.go); reset per request by stickyRequest
	rec           accessRec                    // for the access log and metrics (record.go); reset by exchangeDone

	// What forward needs of the request, kept here (not in serve's
	// locals) so that it can go on after a wait in the queue.
	pool       *balancer.Pool
	kind       http1.BodyKind
	cl         int64 // Content-Length
	closeAfter bool  // the connection closes after this exchange
	isHead     bool
	replayable bool // no body, a safe method: may be replayed on a fresh connection
	expect     bool // answer 100 Continue before the body
	mayPark    bool // a wait in the queue may return from the handler (queue.go)
	park       parkState

	// The wait for a WebSocket backend's answer without the handler
	// (await.go): the backend connection, the answer's bytes in buf, and
	// whether a handler is to go on with it. awaitCC is the connection
	// the timer wakes (nil: none); the timer and its callback stay with
	// the pooled exchange.
	awaitUC     *upConn
	awaitN      int
	awaitHanded bool
	awaitCC     atomic.Pointer[clientConn]
	awaitDue    atomic.Int64 // the wait's deadline (ns since awaitEpoch), for the timer
	awaitTimer  *time.Timer
}

// exchangeWork is the part of an exchange that a request waiting in the
// max-conns queue does not need (queue.go): most of the exchange's memory.
type exchangeWork struct {
	req    http1.Request
	resp   http1.Response
	chunks http1.ChunkScanner
	buf    []byte // upstream reads; len bufSize
}

var works = sync.Pool{New: func() any { return &exchangeWork{buf: make([]byte, bufSize)} }}

var exchanges = sync.Pool{New: func() any {
	ex := &exchange{exchangeWork: works.Get().(*exchangeWork), out: make([]byte, 0, 4<<10), wsKey: make([]byte, 0, 32)}
	ex.skip = func(b *balancer.Backend) bool { return slices.Contains(ex.tried, b) }
	return ex
}}

func (ex *exchange) reset() {
	clear(ex.tried)
	ex.tried = ex.tried[:0]
	ex.ws, ex.http10, ex.body = false, false, false
	ex.pool, ex.mayPark = nil, false
	ex.park.reset()
	ex.awaitUC, ex.awaitN, ex.awaitHanded = nil, 0, false
	ex.wsKey = ex.wsKey[:0]
	ex.sticky.reset()
	if cap(ex.out) > 4*bufSize { // an unusually large head grew it
		ex.out = make([]byte, 0, bufSize)
	}
}
