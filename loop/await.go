package loop

import (
	"context"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// The wait for a WebSocket backend's 101, without a goroutine.
//
// A handshake whose backend socket is on the tunnel engine's loop
// (pending.go) and whose head went out with the connect has nothing left
// to do but wait for the answer. Its handler used to wait for it, parked
// on the Pending; the loop, woken by the answer, woke the handler; the
// handler verified the 101 and queued the pair on the loop, which was
// woken again to add the tunnel: three goroutine switches and a timer
// change per handshake, on top of the poller's hand-off to the handler.
//
// Now the handler returns (actAwait), leaving the exchange in cc.await
// and the connection held (netpoll.HoldUnpolled: not idle, a drain waits
// for it, a client's FIN ends its input only, and a connection not yet
// registered with netpoll's poller, as on its first request, stays so for
// the wait, as it did while the handler waited). The Pending tells the loop's
// goroutine of its events (tunnel.Notifier: clientConn.PendingReady),
// which runs awaitStep there under the connection's processing lock
// (netpoll.RunInline, patch 12), as a handler would run it: it reads the
// answer and, for a verified 101, starts the tunnel there. The tunnel is
// queued on the loop that is running, which adds it after the batch
// without a wake-up.
//
// Everything else goes on in a handler, as before: an answer that is not
// a verified 101 (an error page, an interim response, a 101 without the
// right Sec-WebSocket-Accept), a read error or EOF, a head split over
// reads that fills the buffer (awaitStep hands it to the runner, which
// waits as forward always did: awaitBlocking). So does the wait when the
// client sends input meanwhile (netpoll calls the handler for it), when
// the response timeout passes (the exchange's timer wakes the handler,
// whose read then times out: 504), and when the loop could not run
// awaitStep because a handler was running (RunInline then has the
// handler called once more), and when the engine stops (Pending.Dead:
// 502). On a registered connection (keep-alive) a client that resets or
// hangs up ends the wait in the close callback (awaitGone); on one not
// registered, its tunnel finds it gone and ends at once. All of these run
// under the processing lock, so cc.await has one owner at a time.

// startAwait leaves the exchange waiting for uc's answer without the
// handler, when it can (ok): a WebSocket handshake on a plain connection
// with its backend socket on the engine's loop, its head sent in full
// with the connect, and no input from the client behind it.
func (s *Server) startAwait(cc *clientConn, ex *exchange, uc *upConn) (act action, ok bool) {
	ps := uc.pendingOf()
	if ps == nil || ps.sent != len(ex.out) || !ex.ws || cc.frontID != 0 || ex.kind != http1.BodyNone ||
		cc.conn.Reader().Len() != 0 || s.draining.Load() {
		return 0, false
	}
	if ps.p.Notify(cc) {
		// An event since the connect: the answer may be in; read it here.
		ps.p.Notify(nil)
		return 0, false
	}
	ex.awaitUC, ex.awaitN = uc, 0
	cc.await = ex
	netpoll.HoldUnpolled(cc.conn, true) // not registered with the poller for the wait (patch 12)
	if !uc.deadline.IsZero() {          // armDeadline's: the response timeout
		ex.awaitDue.Store(int64(uc.deadline.Sub(awaitEpoch))) // before awaitCC: see awaitExpired
		ex.awaitCC.Store(cc)
		d := time.Until(uc.deadline)
		if ex.awaitTimer == nil {
			ex.awaitTimer = time.AfterFunc(d, ex.awaitExpired)
		} else {
			ex.awaitTimer.Reset(d)
		}
	}
	s.awaitStarted.Add(1)
	return actAwait, true
}

// PendingReady (tunnel.Notifier) runs on the engine's loop when the
// backend socket of cc's waiting handshake has an event.
//
// A panic is logged and the loop goes on, as the runner's workers do
// (runTask): RunInline has closed the connection. An exchange that
// panicked after awaitEnd is not accounted (InFlight, its record), as a
// handler's panic leaves its own.
func (cc *clientConn) PendingReady() {
	runTask(func() { netpoll.RunInline(cc.conn, awaitInline) }) // runner.go
}

// awaitInline is PendingReady's step under the processing lock; true
// asks for the handler (on the runner).
func awaitInline(ctx context.Context, _ netpoll.Connection) (wake bool) {
	cc, _ := ctx.Value(ctxKey{}).(*clientConn) // as onRequest reads it
	if cc == nil || cc.await == nil {
		return false // ended meanwhile (a handler, the close callback)
	}
	ex := cc.await
	act, handoff := cc.srv.awaitStep(cc, ex, true)
	if handoff || act == actAwait {
		return handoff
	}
	cc.srv.awaitOnLoop.Add(1)
	cc.srv.exchangeEnded(cc, ex, act) // actTunnel: startTunnel of a Pending never closes
	return false
}

// AwaitCounts returns how many handshakes waited for their backend's
// answer without the handler, and how many of them the tunnel engine's
// loop finished (the rest went on in a handler: await.go).
func (s *Server) AwaitCounts() (waited, onLoop int64) {
	return s.awaitStarted.Load(), s.awaitOnLoop.Load()
}

// awaitEpoch is where awaitDue counts from, on the monotonic clock (as
// the timer does: a wall clock set back must not hold a due wake).
var awaitEpoch = time.Now()

// awaitExpired is the exchange's timer: the response timeout passed while
// it waited; the handler goes on with it (and times out its read). A
// timer that fired as its wait ended otherwise may run once the pooled
// exchange waits for another connection already: that wait is not due
// yet (awaitDue is stored before awaitCC, so a callback that sees the new
// connection sees its deadline), and nothing is woken.
func (ex *exchange) awaitExpired() {
	if cc := ex.awaitCC.Load(); cc != nil && int64(time.Since(awaitEpoch)) >= ex.awaitDue.Load() {
		netpoll.Wake(cc.conn) // one that ended meanwhile finds nothing to do
	}
}

// awaitStep goes on with the waiting exchange ex, under the processing
// lock: on the loop (inline) or in the handler. It reads what the
// backend sent; a verified 101 starts the tunnel. Inline, anything else
// is handed to the handler (handoff), which waits as forward waits
// (awaitBlocking); so is, in the handler, a wait whose client sent input
// or whose time is up. actAwait: still waiting.
func (s *Server) awaitStep(cc *clientConn, ex *exchange, inline bool) (act action, handoff bool) {
	uc := ex.awaitUC
	ps := uc.pendingOf()
	if ps.p.Dead() { // the engine stopped: the handler's read or wait answers (502)
		return s.awaitElsewhere(cc, ex, inline)
	}
	if !inline && (ex.awaitHanded || cc.conn.Reader().Len() > 0 || !time.Now().Before(uc.deadline) && !uc.deadline.IsZero()) {
		return s.awaitBlocking(cc, ex), false
	}
	resp := &ex.resp
	perr := http1.ErrNeedMore
	// Read until the head is whole, or the socket has nothing more: its
	// registration is edge-triggered, so a FIN that came with the last
	// bytes of a partial head brings no event of its own (a backend that
	// sends half a head and closes must not wait for the timeout).
	for perr == http1.ErrNeedMore && ex.awaitN < len(ex.buf) {
		n, err := rawsys.Read(ps.fd, ex.buf[ex.awaitN:])
		if err == unix.EAGAIN {
			return actAwait, false // the rest has not come (or a Wake with nothing new)
		}
		if err != nil || n == 0 {
			return s.awaitElsewhere(cc, ex, inline) // readResponseHead reads it again and answers
		}
		ex.awaitN += n
		perr = resp.Parse(ex.buf[:ex.awaitN], &s.respLim)
	}
	if perr != nil || resp.Status != 101 || resp.CheckWebSocket(ex.buf[:ex.awaitN], ex.wsKey) != nil {
		return s.awaitElsewhere(cc, ex, inline)
	}
	s.awaitEnd(cc, ex)
	act = s.startTunnel(cc, ex, uc, ex.awaitN)
	s.exchangeOver(ex) // exchange.go, as serve's end
	return act, false
}

// awaitElsewhere: the answer needs a handler (inline: handoff; the loop
// tells no more of the socket's events, the handler waits on them).
func (s *Server) awaitElsewhere(cc *clientConn, ex *exchange, inline bool) (action, bool) {
	if inline {
		ex.awaitHanded = true
		ex.awaitUC.pendingOf().p.Notify(nil)
		return actAwait, true
	}
	return s.awaitBlocking(cc, ex), false
}

// awaitBlocking ends the wait without the handler and goes on as forward
// does: the answer read (from what is in ex.buf), then relayed or the
// tunnel started.
func (s *Server) awaitBlocking(cc *clientConn, ex *exchange) action {
	s.awaitEnd(cc, ex)
	uc := ex.awaitUC
	nbuf, status, uerr := s.readResponseHead(cc, ex, uc, nil, ex.awaitN)
	var act action
	if uerr != nil {
		act = s.headFailed(cc, uc, status, uerr, ex.closeAfter)
	} else {
		act = s.afterHead(cc, ex, uc, nbuf, ex.closeAfter)
	}
	s.exchangeOver(ex) // exchange.go, as serve's end
	return act
}

// awaitEnd ends what the wait holds besides the exchange: cc.await, the
// timer, the loop's notices, the hold.
func (s *Server) awaitEnd(cc *clientConn, ex *exchange) {
	cc.await = nil
	ex.awaitCC.Store(nil)
	if ex.awaitTimer != nil {
		ex.awaitTimer.Stop()
	}
	netpoll.HoldUnpolled(cc.conn, false)
	if ps := ex.awaitUC.pendingOf(); ps != nil {
		ps.p.Notify(nil)
	}
}

// awaitGone ends a wait whose client closed its connection (the close
// callback): the backend socket is closed and its backend released; the
// exchange is recorded without a status, as a client gone.
func (s *Server) awaitGone(cc *clientConn, ex *exchange) {
	s.awaitEnd(cc, ex)
	s.drop(ex.awaitUC, actClose)
	s.exchangeGone(cc, ex) // queue.go
}
