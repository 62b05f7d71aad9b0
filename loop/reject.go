package loop

import (
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/http1"
)

// Lingering close. A connection closed while the client is still sending (the
// body of a request refused with 413, requests pipelined behind one that got
// 400) makes the kernel answer with RST, and an RST can destroy the error
// response in flight: the client's kernel drops what its application has not
// read yet, and a client still blocked writing its body gets EPIPE/ECONNRESET
// instead of the answer. So before closing, the proxy shuts down its sending
// side (the client sees FIN after the response) and reads and discards what
// the client still sends, until the client closes too, or it stays silent for
// lingerIdle, or lingerMax has passed (nginx: lingering_timeout 5s,
// lingering_time 30s; net/http: a fixed 500 ms after CloseWrite).
const (
	lingerIdle = 1 * time.Second
	lingerMax  = 5 * time.Second
)

// rejectErr answers a request refused with an http1 error (err's status, plus
// the headers that status needs, such as Sec-WebSocket-Version with a 426),
// and closes the connection after a lingering close.
func (s *Server) rejectErr(cc *clientConn, err error) action {
	status := http1.StatusOf(err)
	s.m.countReject(status)
	s.m.countStatus(status)
	b := buffers.Get()
	b.B = http1.AppendRejection(b.B, err, true)
	cc.conn.Writer().WriteBinary(b.B)
	if cc.conn.Writer().Flush() == nil {
		cc.linger = true
	}
	buffers.Put(b)
	return actClose
}

// linger shuts down the sending side of the client connection (everything
// written must have been flushed) and discards input until the client closes,
// is silent for lingerIdle, or lingerMax has passed. The caller closes the
// connection afterwards. Holds the handler goroutine (and no exchange
// buffers beyond netpoll's input buffer, released as it goes) meanwhile.
func (s *Server) linger(cc *clientConn) {
	if cw, ok := cc.conn.(interface{ CloseWrite() error }); ok { // TLS (tlsfront.Conn13): close_notify first
		if cw.CloseWrite() != nil {
			return
		}
	} else if nc, ok := cc.conn.(netpoll.Conn); !ok || unix.Shutdown(nc.Fd(), unix.SHUT_WR) != nil {
		return // not connected any more: nothing to protect
	}
	r := cc.conn.Reader()
	end := time.Now().Add(lingerMax)
	for {
		if n := r.Len(); n > 0 {
			r.Skip(n)
			r.Release()
		}
		now := time.Now()
		if !now.Before(end) {
			break
		}
		d := now.Add(lingerIdle)
		if d.After(end) {
			d = end
		}
		cc.conn.SetReadDeadline(d)
		if _, err := r.Peek(1); err != nil {
			break // EOF, timeout or reset
		}
	}
	cc.conn.SetReadDeadline(time.Time{})
}

// lingerBeforeClose lingers when an error answer was sent (cc.linger) or the
// client has sent bytes that will never be read (requests pipelined behind a
// "Connection: close" one): closing on unread input is what turns a FIN into
// an RST. It runs after the exchange's buffers went back to their pool.
func (s *Server) lingerBeforeClose(cc *clientConn) {
	if cc.linger || cc.conn.Reader().Len() > 0 {
		cc.linger = false
		s.linger(cc)
	}
}

// precheckBody scans the chunked body bytes that arrived together with the
// head (at most bufSize of them) before anything is sent upstream, so that a
// malformed chunked body, or one over MaxBodyBytes, that came in the same
// packets as its head is refused with nothing forwarded. Bytes that arrive
// later are checked while they are forwarded (sendRequest), where an error
// leaves the backend with an incomplete body and a closed connection. Call it
// after the head was skipped; it leaves the input where it is.
func (s *Server) precheckBody(cc *clientConn, ex *exchange, kind http1.BodyKind) error {
	r := cc.conn.Reader()
	n := min(r.Len(), bufSize)
	if kind != http1.BodyChunked || n == 0 {
		return nil
	}
	p, err := r.Peek(n)
	if err != nil {
		return nil // sendRequest meets the same error
	}
	sc := &ex.chunks
	sc.Reset()
	defer sc.Reset()
	if _, _, err := sc.Scan(p); err != nil {
		return err
	}
	if s.cfg.MaxBodyBytes > 0 && sc.Committed() > s.cfg.MaxBodyBytes {
		return http1.ErrBodyTooLarge
	}
	return nil
}
