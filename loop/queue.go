package loop

import (
	"errors"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// Per-backend max-conns and the queue in front of them (issue 18). The
// waiting itself is the balancer's (Pool.PickWait: FIFO per pool, a freed
// slot goes to the head of the queue, a timeout on the balancer's clock);
// here are the answers and the counters.
//
// A queued request holds its exchange, no upstream socket: nothing is
// dialed before a slot is granted. When the wait ends without a slot the
// client gets 503 with Retry-After, and the connection stays open for its
// next request unless the request said close.
//
// A bodiless request with no input behind it waits without a goroutine
// (Pool.PickAsync): its handler returns with the exchange kept in
// clientConn.park, and the queue's answer wakes the connection's handler
// again (netpoll.Wake, on the runner, under netpoll's processing lock like
// any handler call), which goes on with the exchange (resume). The
// connection is held meanwhile (netpoll.Hold): a drain waits for it, and a
// FIN from the client (its half-close, RFC 9112 9.6) ends its input only,
// so the request is still answered, as HAProxy answers it without option
// abortonclose. A client whose connection is reset or hung up is seen at
// once (netpoll closes the connection), and its request leaves the queue
// without taking a slot (parkGone:
// wsgate_queue_refused_total{reason="client_gone"}). Input that
// comes while the request waits (a pipelined request) calls the handler,
// which then waits for the answer itself, as every queued request did
// before; so does a request whose client had already sent more, or one
// with a body.

// DefaultQueueTimeout is how long a request waits for a backend slot.
const DefaultQueueTimeout = 5 * time.Second

// queueRefused answers a request that found no backend slot within the
// queue timeout (or a full queue) with 503 and Retry-After.
func (s *Server) queueRefused(cc *clientConn, pool *balancer.Pool, err error, close bool) action {
	reason := "timeout"
	if err == balancer.ErrQueueFull {
		reason = "full"
	}
	s.m.set.GetOrCreateCounter(`wsgate_queue_refused_total{pool="` + pool.Name() + `",reason="` + reason + `"}`).Inc()
	secs := int((s.cfg.QueueTimeout + time.Second - 1) / time.Second)
	b := buffers.Get()
	b.B = http1.AppendRetryAfter(b.B, 503, secs, close)
	return s.sendError(cc, b, 503, close) // exchange.go, as fail
}

// queueWait records how long a request waited for its slot (also a wait
// that timed out).
func (m *serverMetrics) queueWait(pool string, d time.Duration) {
	m.set.GetOrCreateHistogram(`wsgate_queue_wait_seconds{pool="` + pool + `"}`).Update(d.Seconds())
}

// errQueued: the request waits in the queue without its handler (pick,
// connect: the exchange is in clientConn.park, and actQueued is returned).
var errQueued = errors.New("queued")

// parkState is the wait of a parked exchange: the queue's answer, given by
// QueueAnswer (with the queue's lock held) and taken by resume or
// parkGone.
type parkState struct {
	cc  *clientConn
	tk  *balancer.Ticket
	pin *balancer.Backend // a wait for the session's node (pin): resume goes on with pinned

	mu       sync.Mutex // guards the fields below
	answered bool
	b        *balancer.Backend
	waited   time.Duration
	err      error
	ch       chan struct{} // a handler waits for the answer (input came meanwhile)
}

func (pk *parkState) reset() {
	pk.cc, pk.tk, pk.pin = nil, nil, nil
	pk.answered, pk.b, pk.waited, pk.err, pk.ch = false, nil, 0, nil, nil
}

// QueueAnswer (balancer.QueueWaiter) takes the queue's answer to a parked
// exchange and wakes its connection's handler, which goes on with it
// (onRequest → resume); or the handler already waiting for it. The queue's
// lock is held: nothing here blocks or calls into the balancer, and ex is
// not touched once the answer is stored (the handler may reuse it).
func (ex *exchange) QueueAnswer(b *balancer.Backend, waited time.Duration, err error) {
	pk := &ex.park
	pk.mu.Lock()
	pk.answered, pk.b, pk.waited, pk.err = true, b, waited, err
	ch, conn := pk.ch, pk.cc.conn
	pk.mu.Unlock()
	if ch != nil {
		close(ch)
		return
	}
	// A closed connection runs no handler: its close callback (parkGone)
	// gives back what the answer brought.
	netpoll.Wake(conn)
}

// answer returns the queue's answer, waiting for it when it has not come
// (the handler was called for input that came meanwhile).
func (pk *parkState) answer() (*balancer.Backend, time.Duration, error) {
	pk.mu.Lock()
	if !pk.answered {
		ch := make(chan struct{})
		pk.ch = ch
		pk.mu.Unlock()
		<-ch
		pk.mu.Lock()
	}
	b, waited, err := pk.b, pk.waited, pk.err
	pk.mu.Unlock()
	return b, waited, err
}

// parkWork gives back what a waiting exchange does not need (the handler
// returns: nothing reads it until resume or parkGone): the parsers and the
// upstream buffer, and ex.out's spare capacity (it holds the request head
// to send).
func (ex *exchange) parkWork() {
	works.Put(ex.exchangeWork)
	ex.exchangeWork = nil
	ex.out = append(make([]byte, 0, len(ex.out)), ex.out...)
}

// unparkWork takes the parsers and a buffer again.
func (ex *exchange) unparkWork() {
	if ex.exchangeWork == nil {
		ex.exchangeWork = works.Get().(*exchangeWork)
	}
}

// resume goes on with an exchange that waited in the queue (serve's part
// after the pick: connect, forward); the handler runs it, the exchange
// taken from cc.park.
func (s *Server) resume(cc *clientConn, ex *exchange) (act action) {
	pk := &ex.park
	b, waited, err := pk.answer()
	ex.unparkWork()
	pin := pk.pin
	pk.reset()
	act = actClose
	defer func() {
		if !act.waits() { // as serve's
			s.exchangeOver(ex)
		}
	}()
	ex.closeAfter = ex.closeAfter || s.draining.Load() // a drain began while it waited: as serve's
	pool, close := ex.pool, ex.body || ex.closeAfter
	ex.mayPark = ex.mayPark && cc.conn.Reader().Len() == 0 // a second wait (another node, after a failed connect): as route decides
	b, err = s.queueAnswered(pool, b, waited, err)
	if pin != nil {
		if b, err = s.pinned(cc, pool, ex, pin, b != nil, err); err == errQueued { // sticky.go
			return actQueued
		}
	}
	uc, act, done := s.connectTo(cc, ex, b, err, pool, close) // exchange.go
	if !done {
		uc, act = s.connect(cc, ex, pool, close)
	}
	if uc == nil {
		return act
	}
	return s.forward(cc, ex, uc)
}

// parkGone ends a parked exchange whose client closed its connection (the
// close callback): the request leaves the queue, and a slot the queue
// granted meanwhile is given back unused. Nothing was dialed for it.
func (s *Server) parkGone(cc *clientConn, ex *exchange) {
	pk := &ex.park
	if pk.tk.Withdraw() {
		s.m.set.GetOrCreateCounter(`wsgate_queue_refused_total{pool="` + ex.pool.Name() + `",reason="client_gone"}`).Inc()
	} else if b, _, _ := pk.answer(); b != nil {
		b.Release() // answered, but the handler never ran: closed connections run none
	}
	pk.reset()
	ex.unparkWork()
	s.exchangeGone(cc, ex)
}

// exchangeGone ends an exchange whose client closed its connection while
// it waited without a handler (parkGone, awaitGone): recorded without a
// status, its counts given back, the exchange pooled.
func (s *Server) exchangeGone(cc *clientConn, ex *exchange) {
	cc.status = 0
	s.exchangeOver(ex)
	s.exchangeDone(cc, ex) // record.go
	ex.reset()
	exchanges.Put(ex)
}
