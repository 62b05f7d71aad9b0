package loop

import (
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/valyala/bytebufferpool"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/tunnel"
)

// clientFault is a failure on the client's side of an exchange: the status
// to answer (0: answer nothing, just close).
type clientFault struct{ status int }

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// serve reads one request head, forwards the exchange and says what to do
// with the connection next.
func (s *Server) serve(cc *clientConn, ex *exchange) action {
	conn := cc.conn
	r := conn.Reader()
	var deadline time.Time // for the head; taken when it has to be waited for
	if cc.served == 0 {
		deadline = cc.acceptedAt.Add(s.cfg.HeaderTimeout)
	}
	cc.served++

	// Read the head: parse what is buffered, and wait for more only while
	// the head is incomplete and the header timeout has not passed.
	req := &ex.req
	var head []byte
	for {
		n := min(r.Len(), s.cfg.MaxHeaderBytes+1)
		buf, err := r.Peek(n)
		if err != nil {
			return actClose
		}
		perr := req.Parse(buf, &s.reqLim)
		if perr == nil {
			head = buf
			break
		}
		if perr != http1.ErrNeedMore {
			return s.rejectErr(cc, s.rejected(cc, perr)) // record.go: notes the status
		}
		if n > s.cfg.MaxHeaderBytes {
			return s.reject(cc, 431)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(s.cfg.HeaderTimeout)
		}
		conn.SetReadDeadline(deadline)
		_, err = r.Peek(n + 1)
		conn.SetReadDeadline(time.Time{})
		if err != nil {
			if errors.Is(err, netpoll.ErrReadTimeout) {
				return s.reject(cc, 408)
			}
			return actClose
		}
	}

	s.inflight.Add(1)
	act := actClose
	defer func() {
		if !act.waits() { // a queued exchange goes on in resume (queue.go), an awaiting one in awaitStep (await.go)
			s.exchangeOver(ex)
		}
	}()
	s.recordHead(ex, head) // record.go
	act = s.route(cc, ex, head)
	return act
}

// route checks, routes and forwards the request whose head is parsed in
// ex.req, up to the backend's pick; then forward does the rest. The state
// forward needs is kept in ex, so that a request that waits in the
// max-conns queue can return from the handler (actQueued) and go on later
// (queue.go).
func (s *Server) route(cc *clientConn, ex *exchange, head []byte) action {
	r := cc.conn.Reader()
	req := &ex.req
	// edge.go: --redirect-https, --allowed-origin, --rate-limit
	if act, done := s.edgeRequest(cc, ex, head); done {
		return act
	}

	bodyKind := req.Body()
	ex.closeAfter = req.Close || s.draining.Load()
	if bodyKind == http1.BodyLength && s.cfg.MaxBodyBytes > 0 && req.ContentLength > s.cfg.MaxBodyBytes {
		return s.reject(cc, 413)
	}
	pool, strip := s.cfg.Balancer.Route(req.Host.Of(head), reqPath(req, head))
	ex.rec.pool = pool
	if pool == nil {
		return s.reject(cc, 404)
	}
	ex.pool = pool
	ex.isHead = req.IsMethod(head, "HEAD")
	ex.replayable = bodyKind == http1.BodyNone &&
		(req.IsMethod(head, "GET") || ex.isHead || req.IsMethod(head, "OPTIONS") || req.IsMethod(head, "TRACE"))
	if ex.ws = req.WebSocket; ex.ws {
		ex.wsKey = append(ex.wsKey[:0], req.WSKey.Of(head)...)
	}
	ex.expect = req.Expect100 && bodyKind != http1.BodyNone
	ex.http10 = req.Minor == 0
	ex.kind, ex.cl = bodyKind, req.ContentLength
	fwd := cc.fwd
	if strip > 0 || req.TargetChanged() {
		// The backend is sent the normalized path every decision was made
		// on (http1.Request.Path), in origin form; a ,strip route's prefix
		// goes, the query stays.
		ex.target = req.AppendTarget(ex.target[:0], head, strip)
		fwd.Target = ex.target
	}
	ex.out = http1.AppendRequest(ex.out[:0], head, req, s.stickyRequest(cc, ex, head, pool, &fwd)) // sticky.go
	r.Skip(req.HeadLen)
	if err := s.precheckBody(cc, ex, bodyKind); err != nil {
		return s.rejectErr(cc, s.rejected(cc, err)) // nothing sent upstream yet (reject.go)
	}
	ex.body = bodyKind != http1.BodyNone // request body bytes not yet consumed
	// A bodiless request with nothing behind it may wait in the queue
	// without its handler (queue.go); one whose client already sent more
	// waits in the handler, as the input would call it again at once.
	ex.mayPark = !ex.body && r.Len() == 0 && !s.draining.Load()
	uc, act := s.connect(cc, ex, pool, ex.body || ex.closeAfter)
	if uc == nil {
		return act
	}
	return s.forward(cc, ex, uc)
}

// forward sends the request to uc and relays the answer.
func (s *Server) forward(cc *clientConn, ex *exchange, uc *upConn) action {
	conn := cc.conn
	pool, bodyKind, cl, closeAfter := ex.pool, ex.kind, ex.cl, ex.closeAfter
	bodyLeft := ex.body
	ex.mayPark = false // a connect from here on (a stale connection replaced) waits in the handler
	b := uc.b
	ex.rec.backend = b

	if ex.expect {
		conn.Writer().WriteBinary(continue100)
		if conn.Writer().Flush() != nil {
			return s.drop(uc, actClose)
		}
	}

	// Send the request; then read the response head. A pooled connection that
	// turns out stale before anything came back is replaced by a fresh one
	// once, when the request can be replayed (no body, safe method).
	var nbuf int
	for attempt := 0; ; attempt++ {
		fault, uerr := s.sendRequest(cc, ex, uc, bodyKind, cl)
		if fault != nil {
			s.drop(uc, actClose)
			if fault.status != 0 {
				return s.reject(cc, fault.status)
			}
			return actClose
		}
		status := 502
		if uerr == nil {
			bodyLeft = false
			if attempt == 0 {
				if act, ok := s.startAwait(cc, ex, uc); ok { // await.go: the answer is waited for without the handler
					return act
				}
			}
			var unsent []byte // a bodiless request's head goes out with the wait for the answer
			if bodyKind == http1.BodyNone {
				unsent = ex.out[uc.headSent():] // less what went with the connect (dialPending): maybe all of it
			}
			nbuf, status, uerr = s.readResponseHead(cc, ex, uc, unsent, 0)
		} else {
			s.m.upstreamError(upSendFail)
		}
		if uerr == nil {
			break
		}
		if attempt == 0 && uc.reused && ex.replayable && nbuf == 0 && status != 0 && isStale(uerr) {
			uc.c.Close()
			fresh, err := s.ups.dial(b, s.cfg.ConnectTimeout, s.tunnelsFor(cc, ex), firstSend(ex))
			if err != nil { // as a failed connect: the next backend is tried
				s.connectFailed(b, ex, err)
				var act action
				if fresh, act = s.connect(cc, ex, pool, closeAfter); fresh == nil {
					return act
				}
				b = fresh.b
				ex.rec.backend = b
			}
			uc = fresh
			continue
		}
		return s.headFailed(cc, uc, status, uerr, closeAfter || bodyLeft)
	}
	return s.afterHead(cc, ex, uc, nbuf, closeAfter)
}

// headFailed answers the client for a response head that could not be
// read (status from readResponseHead; 0: part of a response went out
// already) and closes uc.
func (s *Server) headFailed(cc *clientConn, uc *upConn, status int, uerr error, close bool) action {
	b := uc.b
	s.cfg.Logf("backend %s: %v", b.Addr(), uerr)
	if status == 504 {
		b.ReportFailure() // passive health: response timeout
	}
	s.drop(uc, actClose)
	if status == 0 {
		return actClose // the client already got part of a response
	}
	return s.fail(cc, status, close)
}

// afterHead goes on with the response head read into ex.buf[:nbuf] (and
// parsed into ex.resp): a 101 starts the tunnel, anything else is relayed.
func (s *Server) afterHead(cc *clientConn, ex *exchange, uc *upConn, nbuf int, closeAfter bool) action {
	b := uc.b
	resp := &ex.resp
	if resp.Status == 101 {
		if !ex.ws {
			s.m.upstreamError(upBadResp)
			s.drop(uc, actClose)
			return s.fail(cc, 502, true)
		}
		if err := resp.CheckWebSocket(ex.buf[:nbuf], ex.wsKey); err != nil {
			s.m.upstreamError(upBadResp)
			s.cfg.Logf("backend %s: %v", b.Addr(), err)
			s.drop(uc, actClose)
			return s.fail(cc, 502, true)
		}
		return s.startTunnel(cc, ex, uc, nbuf)
	}
	if ex.ws {
		// The backend declined the upgrade. The client may already be sending
		// frames; none of them may reach anything, so the connection ends
		// with this response.
		closeAfter = true
	}
	s.m.countStatus(resp.Status)
	cc.status, ex.rec.upstream = uint16(resp.Status), true
	if ex.sticky.handshake {
		return s.relayHandshake(cc, ex, uc, nbuf, closeAfter) // sticky.go: tags the sid
	}
	return s.relayResponse(cc, ex, uc, nbuf, ex.isHead, closeAfter)
}

// armDeadline gives uc's reads and writes the response timeout from now. A
// deadline set by an earlier exchange that is still within deadlineSlack of
// that is kept: a keep-alive connection then costs no timer change per
// request, and the timeout is honoured to within the slack.
func (s *Server) armDeadline(uc *upConn) {
	now := time.Now()
	rt := s.cfg.ResponseTimeout
	if uc.deadline.Sub(now) >= rt-min(rt/10, deadlineSlack) {
		return
	}
	uc.deadline = now.Add(rt)
	uc.c.SetDeadline(uc.deadline)
}

// deadlineSlack bounds how much shorter than --response-timeout a reused
// deadline may be (a tenth of it when that is less).
const deadlineSlack = time.Second

// exchangeOver ends an exchange's part in the counts, once, wherever it
// ends (serve, resume, the wait without a handler, a client gone): its
// sticky state (sticky.go: after the backend's Release) and its place in
// InFlight.
func (s *Server) exchangeOver(ex *exchange) {
	s.stickyDone(ex)
	s.inflight.Add(-1)
}

// connect picks a backend for the request and connects to it; a backend
// that cannot be reached is skipped for this request and the next one is
// tried. With no connection, the client has been answered and act says
// what to do with its connection (close: it will be closed after the answer).
// A connection this client owns (keepOwn) is taken when the pick is its
// backend, and closed otherwise.
func (s *Server) connect(cc *clientConn, ex *exchange, pool *balancer.Pool, close bool) (*upConn, action) {
	for {
		b, err := s.pick(cc, pool, ex) // sticky.go: the node the request names, else the pool's pick (queued at max-conns)
		if err == errQueued {
			return nil, actQueued // queue.go: resume goes on
		}
		if uc, act, done := s.connectTo(cc, ex, b, err, pool, close); done {
			return uc, act
		}
	}
}

// connectTo is connect's step for one pick's answer (b, err): done false
// when b could not be reached and the next backend is to be tried.
func (s *Server) connectTo(cc *clientConn, ex *exchange, b *balancer.Backend, err error, pool *balancer.Pool, close bool) (uc *upConn, act action, done bool) {
	if err != nil {
		return nil, s.queueRefused(cc, pool, err, close), true
	}
	if b == nil {
		if len(ex.tried) == 0 {
			return nil, s.fail(cc, 503, close), true
		}
		return nil, s.fail(cc, 502, close), true
	}
	if own := s.takeOwn(cc); own != nil {
		if own.b == b && own.reusable(time.Now(), s.ups.idleFor, s.m) {
			return own, actKeep, true
		}
		own.c.Close()
	}
	uc, err = s.ups.get(b, s.cfg.ConnectTimeout, s.tunnelsFor(cc, ex), firstSend(ex))
	if err == nil {
		return uc, actKeep, true
	}
	// Out of files, or the tunnel engine failed (pending.go): no backend
	// is at fault, none is tried next.
	var ee *errEngine
	if local := errors.As(err, &ee); local || outOfFiles(err) {
		s.m.upstreamError(upConnErr)
		if local {
			s.cfg.Logf("%v", err)
		} else {
			s.logOutOfFiles("connecting to a backend", err)
		}
		b.Release()
		return nil, s.fail(cc, 503, true), true
	}
	s.connectFailed(b, ex, err)
	return nil, actKeep, false
}

// tunnelsFor returns the tunnel engine when the exchange's new backend
// socket should be dialed onto its loop (pending.go): a WebSocket
// handshake on a connection whose tunnel is a plain one (TLS 1.3
// connections the engine takes over with their records hand over a
// socket fd of their own).
func (s *Server) tunnelsFor(cc *clientConn, ex *exchange) *tunnel.Engine {
	if ex.ws && cc.frontID == 0 {
		return s.cfg.Tunnels
	}
	return nil
}

// firstSend returns the request head a new backend socket may send with
// its connect (upstreams.dial): a bodiless request's, complete in ex.out
// from route on (nothing writes ex.out between route and the send; a
// request that waited in the queue kept it, queue.go). A request with a
// body keeps its head for sendRequest, which sends the body after it.
func firstSend(ex *exchange) []byte {
	if ex.kind == http1.BodyNone {
		return ex.out
	}
	return nil
}

// connectFailed accounts for a failed connect to b: passive health, metrics,
// the log, b's pick released, and b skipped for the rest of the exchange.
func (s *Server) connectFailed(b *balancer.Backend, ex *exchange, err error) {
	kind := dialErrKind(err)
	s.m.upstreamError(kind)
	b.ReportFailure() // passive health: refused, timed out or failed connects
	s.cfg.Logf("backend %s: %s: %v", b.Addr(), kind, err)
	b.Release()
	ex.tried = append(ex.tried, b)
}

// sendRequest writes the head in ex.out and then the request body, as it
// arrives from the client, to uc.
func (s *Server) sendRequest(cc *clientConn, ex *exchange, uc *upConn, kind http1.BodyKind, cl int64) (*clientFault, error) {
	r := cc.conn.Reader()
	if kind == http1.BodyNone {
		// readResponseHead writes the head in ex.out (kept there: a stale
		// pooled connection may need it again) as it starts to wait for the
		// answer. One deadline covers the write and the response head that
		// follows (readResponseHead leaves it be): one timer, not two.
		s.armDeadline(uc)
		return nil, nil
	}
	out := ex.out
	defer func() { ex.out = out[:0] }()
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		uc.c.SetWriteDeadline(time.Now().Add(s.cfg.ResponseTimeout))
		_, err := uc.c.Write(out)
		out = out[:0]
		// What was sent is copied out of the client's input: release it, so
		// that netpoll reads more of the body (it stops at readThreshold).
		r.Release()
		return err
	}
	// wait blocks until the client sends more body bytes.
	wait := func() *clientFault {
		cc.conn.SetReadDeadline(time.Now().Add(s.cfg.ResponseTimeout))
		_, err := r.Peek(1)
		cc.conn.SetReadDeadline(time.Time{})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, netpoll.ErrReadTimeout):
			return &clientFault{408}
		}
		return &clientFault{}
	}
	switch kind {
	case http1.BodyLength:
		for remaining := cl; ; {
			if take := min(int64(r.Len()), remaining, int64(max(bufSize-len(out), 0))); take > 0 {
				p, _ := r.Next(int(take))
				out = append(out, p...)
				remaining -= take
			}
			if remaining == 0 || r.Len() == 0 || len(out) >= bufSize {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			if remaining == 0 {
				break
			}
			if r.Len() == 0 {
				if f := wait(); f != nil {
					return f, nil
				}
			}
		}
	case http1.BodyChunked:
		sc := &ex.chunks
		sc.Reset()
		for done := false; !done; {
			if n := min(r.Len(), max(bufSize-len(out), 0)); n > 0 {
				p, _ := r.Peek(n)
				used, fin, err := sc.Scan(p)
				out = append(out, p[:used]...)
				r.Skip(used)
				if err != nil {
					return &clientFault{http1.StatusOf(err)}, nil
				}
				if s.cfg.MaxBodyBytes > 0 && sc.Committed() > s.cfg.MaxBodyBytes { // announced, not yet sent
					return &clientFault{413}, nil
				}
				done = fin
			}
			if done || r.Len() == 0 || len(out) >= bufSize {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			if !done && r.Len() == 0 {
				if f := wait(); f != nil {
					return f, nil
				}
			}
		}
	}
	r.Release()
	uc.c.SetReadDeadline(time.Now().Add(s.cfg.ResponseTimeout)) // for the response head
	return nil, nil
}

// readResponseHead reads from uc until ex.resp holds a final response head
// (interim 1xx responses other than 101 are passed to the client, except
// 100 Continue, which the proxy answers itself). It returns the bytes read
// into ex.buf and, on failure, the status the client should get (0 when
// the client already received part of a response). sendRequest has set
// the read deadline. A request head in unsent is written first, in the
// same call as the wait for the answer (upConn.roundTrip). have bytes of
// the answer are in ex.buf already (a wait that began in await.go): they
// are parsed before anything more is read.
func (s *Server) readResponseHead(cc *clientConn, ex *exchange, uc *upConn, unsent []byte, have int) (nbuf, status int, err error) {
	buf := ex.buf
	nbuf = have
	sentInterim := false
	for {
		var m int
		var rerr error
		if have > 0 {
			have = 0
		} else if unsent != nil {
			var serr error
			m, serr, rerr = uc.roundTrip(unsent, buf)
			unsent = nil
			if serr != nil {
				s.m.upstreamError(upSendFail)
				return 0, 502, serr
			}
		} else {
			m, rerr = uc.c.Read(buf[nbuf:])
		}
		nbuf += m
		for nbuf > 0 {
			perr := ex.resp.Parse(buf[:nbuf], &s.respLim)
			if perr == http1.ErrNeedMore {
				if nbuf == len(buf) {
					s.m.upstreamError(upBadResp)
					return nbuf, statusAfter(sentInterim, 502), errors.New("response head too large")
				}
				break
			}
			if perr != nil {
				s.m.upstreamError(upBadResp)
				return nbuf, statusAfter(sentInterim, 502), perr
			}
			if ex.resp.Status >= 200 || ex.resp.Status == 101 {
				return nbuf, 0, nil
			}
			if ex.resp.Status != 100 {
				ex.out = http1.AppendResponse(ex.out[:0], buf[:nbuf], &ex.resp, false)
				cc.conn.Writer().WriteBinary(ex.out)
				if cc.conn.Writer().Flush() != nil {
					return nbuf, 0, errors.New("client gone")
				}
				sentInterim = true
			}
			nbuf = copy(buf, buf[ex.resp.HeadLen:nbuf])
		}
		if rerr != nil {
			return nbuf, statusAfter(sentInterim, s.readFailed(rerr)), rerr
		}
	}
}

// readFailed counts a failed read from a backend and returns the status
// the client gets for it: 504 when the backend did not answer in time,
// 502 otherwise.
func (s *Server) readFailed(err error) int {
	if isTimeout(err) {
		s.m.upstreamError(upTimeout)
		return 504
	}
	s.m.upstreamError(upReset)
	return 502
}

func statusAfter(sentInterim bool, status int) int {
	if sentInterim {
		return 0
	}
	return status
}

// isStale reports whether err is what a request on a connection the backend
// had already closed gets.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// relayResponse sends the response head and streams its body to the client,
// reading the backend only as fast as the client takes the bytes.
func (s *Server) relayResponse(cc *clientConn, ex *exchange, uc *upConn, nbuf int, isHead, closeAfter bool) action {
	resp := &ex.resp
	kind := resp.Body(isHead)
	if kind == http1.BodyUntilClose {
		closeAfter = true
	}
	buf := ex.buf
	w := cc.conn.Writer()
	s.appendHead(ex, nbuf, closeAfter)
	ex.out = s.stickyResponse(cc, ex, uc.b, ex.out) // sticky.go: cookie
	w.WriteBinary(ex.out)
	data := buf[resp.HeadLen:nbuf]
	reusable := !resp.Close
	// leftover accounts for bytes read beyond the response's end (a second
	// response in the same segment): the stream is not to be trusted, so
	// the connection is never reused, and they never reach the client.
	leftover := func() bool {
		s.m.upstreamError(upUnsolicited)
		return false
	}

	// next flushes what was written to the client (blocking while it does not
	// read: that is the backpressure) and reads more of the body into buf.
	clientGone := false
	next := func(limit int64) ([]byte, error) {
		if cc.conn.Writer().Flush() != nil {
			clientGone = true
			return nil, errClientGone
		}
		uc.c.SetReadDeadline(time.Now().Add(s.cfg.ResponseTimeout))
		n := len(buf)
		if limit >= 0 && limit < int64(n) {
			n = int(limit)
		}
		m, err := uc.c.Read(buf[:n])
		return buf[:m], err
	}

	complete := true
	switch kind {
	case http1.BodyNone:
		if len(data) > 0 {
			reusable = leftover()
		}
	case http1.BodyLength:
		remaining := resp.ContentLength
		if int64(len(data)) > remaining {
			reusable = leftover()
			data = data[:remaining]
		}
		for {
			w.WriteBinary(data)
			remaining -= int64(len(data))
			if remaining == 0 {
				break
			}
			var err error
			data, err = next(remaining)
			if err != nil && len(data) == 0 {
				complete = false
				break
			}
		}
	case http1.BodyChunked:
		sc := &ex.chunks
		sc.Reset()
		for {
			n, done, err := sc.Scan(data)
			w.WriteBinary(data[:n])
			if err != nil {
				s.m.upstreamError(upBadResp)
				complete = false
				break
			}
			if done {
				if n < len(data) {
					reusable = leftover()
				}
				break
			}
			var rerr error
			data, rerr = next(-1)
			if rerr != nil && len(data) == 0 {
				complete = false
				break
			}
		}
	case http1.BodyUntilClose:
		reusable = false
		for {
			w.WriteBinary(data)
			var err error
			data, err = next(-1)
			if err != nil && len(data) == 0 {
				complete = clientGone == false && errors.Is(err, io.EOF)
				break
			}
		}
	}
	if !clientGone && cc.conn.Writer().Flush() != nil {
		clientGone = true
	}
	if !complete || clientGone {
		// A truncated body never gets its end: the client must see the
		// connection close instead.
		return s.drop(uc, actClose)
	}
	s.releaseUpstream(cc, ex, uc, reusable, closeAfter)
	if closeAfter {
		return actClose
	}
	return actKeep
}

// appendHead puts the response head for the client in ex.out, from the
// backend's in ex.buf[:nbuf].
func (s *Server) appendHead(ex *exchange, nbuf int, closeAfter bool) {
	if ex.http10 && !closeAfter {
		// An HTTP/1.0 client that asked for keep-alive must be told it got it.
		ex.out = http1.AppendResponseKeepAlive(ex.out[:0], ex.buf[:nbuf], &ex.resp)
	} else {
		ex.out = http1.AppendResponse(ex.out[:0], ex.buf[:nbuf], &ex.resp, closeAfter)
	}
}

// releaseUpstream ends the backend's part of a complete exchange: its pick
// is released, and a connection that can carry another request goes back,
// to the client that owns it when the request had a body (keepOwn), else
// to the idle pool; any other is closed.
func (s *Server) releaseUpstream(cc *clientConn, ex *exchange, uc *upConn, reusable, closeAfter bool) {
	switch {
	case !reusable || ex.body && closeAfter:
		s.drop(uc, actKeep)
	case ex.body:
		uc.b.Release()
		s.keepOwn(cc, uc)
	default:
		uc.b.Release()
		s.ups.put(uc)
	}
}

// keepOwn keeps a connection that carried a request body for the next
// request of the same client, instead of the shared idle pool. A backend
// that read less of the body than was sent (one that ignores
// Content-Length, say) may take the rest as a request of its own and
// answer it later, after the peek before reuse found nothing: that answer
// then reaches the client that sent the body, never another one. The
// client's close callback closes it (onPrepare), as does the next request
// when it goes to another backend (connect). At most MaxIdleUpstream
// connections are owned at once, all clients together; past that, such a
// connection is closed after its response.
func (s *Server) keepOwn(cc *clientConn, uc *upConn) {
	if s.ups.owned.Add(1) > int64(s.ups.maxIdle) {
		s.ups.owned.Add(-1)
		uc.c.Close()
		return
	}
	uc.idleAt = time.Now()
	if old := cc.own.Swap(uc); old != nil {
		s.ups.owned.Add(-1)
		old.c.Close()
	}
	// The close callback sets stateClosed before it takes own: either it
	// took uc, or uc was stored after it ran and is closed here.
	if cc.state.Load() == stateClosed {
		if o := s.takeOwn(cc); o != nil {
			o.c.Close()
		}
	}
}

// takeOwn takes the connection cc owns, if any.
func (s *Server) takeOwn(cc *clientConn) *upConn {
	o := cc.own.Swap(nil)
	if o != nil {
		s.ups.owned.Add(-1)
	}
	return o
}

var errClientGone = errors.New("client gone")

// drop closes an upstream connection that cannot be reused, releases its
// backend, and returns act.
func (s *Server) drop(uc *upConn, act action) action {
	uc.c.Close()
	uc.b.Release()
	return act
}

// reject answers a request the proxy refuses itself, and closes.
func (s *Server) reject(cc *clientConn, status int) action {
	s.m.countReject(status)
	return s.fail(cc, status, true)
}

// fail sends a short error response; the connection stays open only when
// close is false.
func (s *Server) fail(cc *clientConn, status int, close bool) action {
	b := buffers.Get()
	b.B = http1.AppendError(b.B, status, close)
	return s.sendError(cc, b, status, close)
}

// sendError sends the error response in b (returning b to its pool), as
// fail does.
func (s *Server) sendError(cc *clientConn, b *bytebufferpool.ByteBuffer, status int, close bool) action {
	s.m.countStatus(status)
	cc.status = uint16(status)
	cc.conn.Writer().WriteBinary(b.B)
	err := cc.conn.Writer().Flush()
	buffers.Put(b)
	if close && err == nil {
		cc.linger = true // the client may still be sending: see reject.go
	}
	if close || err != nil {
		return actClose
	}
	return actKeep
}

// startTunnel finishes a verified upgrade: the 101 goes to the client, and
// both sockets move to the tunnel engine, with the bytes either side sent
// early (the backend's first frame, the client's pipelined frames).
func (s *Server) startTunnel(cc *clientConn, ex *exchange, uc *upConn, nbuf int) action {
	b := uc.b
	resp := &ex.resp
	ex.out = http1.AppendResponse(ex.out[:0], ex.buf[:nbuf], resp, false)
	ex.out = s.stickyResponse(cc, ex, b, ex.out) // sticky.go: cookie; a session's polling phase ends
	// The 101 goes out through the tunnel engine, as the first of the bytes
	// it owes the client (followed by any the backend sent behind its 101):
	// a client may send frames as soon as it has the 101, and it must not
	// get it before netpoll has stopped reading the socket, or netpoll could
	// read those frames into a buffer nobody reads again.
	toClient := make([]byte, 0, len(ex.out)+nbuf-resp.HeadLen) // ex is reused once the handler returns
	toClient = append(toClient, ex.out...)
	toClient = append(toClient, ex.buf[resp.HeadLen:nbuf]...)
	ps := uc.pendingOf() // a socket on the engine's loop moves as it is (pending.go)
	upfd := -1
	if ps == nil {
		var err error
		if upfd, err = uc.takeFd(); err != nil {
			s.logTunnelErr(err)
			b.Release()
			return actClose
		}
	}
	s.m.countStatus(101)
	cc.status = 101
	done := s.tunnelDone(cc, ex, b, len(ex.out)) // tunnel.go: releases b's count, then the record's duration and log line
	// netpoll runs close callbacks after it has stopped polling the socket
	// and before it would close it, newest first: this one takes the client
	// socket and whatever input netpoll had already read.
	cc.conn.AddCloseCallback(func(c netpoll.Connection) error {
		// First the socket, then the input: TakeFd waits until netpoll's
		// poller has stopped reading it.
		fd, err := netpoll.TakeFd(c) // a connection onRequest detached (detachTunnel); a TLS front's is not
		taken := err == nil
		var toBackend []byte
		if n := c.Reader().Len(); n > 0 {
			toBackend, _ = c.Reader().Next(n)
		}
		if cc.frontID != 0 && s.takeOverTLS(cc, c, b, upfd, toBackend, toClient, done) { // tls.go
			return nil
		}
		if !taken {
			fd, err = dupFd(c) // tunnel.go
		}
		if err != nil { // the client never got its 101; closing tells it
			s.logTunnelErr(err)
			if ps != nil {
				ps.Close()
			} else {
				closeFd(upfd)
			}
			b.Release()
			return nil
		}
		if ps != nil {
			err = s.addPendingTunnel(b, fd, ps, toBackend, toClient, done) // pending.go: counts the tunnel on b
		} else {
			err = s.addTunnel(b, fd, upfd, toBackend, toClient, done) // tunnel.go: counts the tunnel on b
		}
		if err != nil {
			s.logTunnelErr(err)
		}
		return nil
	})
	return actTunnel
}
