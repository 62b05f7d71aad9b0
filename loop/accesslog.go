package loop

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/tunnel"
)

// AccessLog writes one JSON line per request and one per tunnel close
// (--access-log). Lines are built by hand into pooled buffers on the
// goroutine that served the request (no fmt, no reflection, no allocation
// once the pool is warm) and handed to one writer goroutine through a
// bounded channel. When the channel is full (the sink is slower than the
// traffic) the line is dropped and counted: proxying never waits for the
// log.
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
type AccessLog struct {
	lines   chan *[]byte // bounded; owned buffers travel through it
	w       *bufio.Writer
	dropped atomic.Uint64
	written atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

// DefaultAccessLogQueue is the number of lines buffered for the writer.
const DefaultAccessLogQueue = 8192

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// NewAccessLog starts the writer goroutine for w; queue <= 0 means
// DefaultAccessLogQueue. Close flushes and stops it.
func NewAccessLog(w io.Writer, queue int) *AccessLog {
	if queue <= 0 {
		queue = DefaultAccessLogQueue
	}
	a := &AccessLog{lines: make(chan *[]byte, queue), w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *AccessLog) run() {
	defer close(a.done)
	for {
		b, ok := <-a.lines
		if !ok {
			a.w.Flush()
			return
		}
		a.write(b)
		// Write what queued meanwhile, then flush once the queue is empty.
		for more := true; more; {
			select {
			case b, ok := <-a.lines:
				if !ok {
					a.w.Flush()
					return
				}
				a.write(b)
			default:
				more = false
			}
		}
		a.w.Flush()
	}
}

func (a *AccessLog) write(b *[]byte) {
	a.w.Write(*b)
	a.written.Add(1)
	*b = (*b)[:0]
	lineBufs.Put(b)
}

// Close stops accepting lines, writes and flushes what is queued, and
// returns once the writer is done. Lines sent after Close are dropped.
func (a *AccessLog) Close() error {
	a.once.Do(func() {
		close(a.lines)
	})
	<-a.done
	return nil
}

// Dropped is the number of lines dropped because the writer fell behind.
func (a *AccessLog) Dropped() uint64 { return a.dropped.Load() }

// Written is the number of lines handed to the writer's sink.
func (a *AccessLog) Written() uint64 { return a.written.Load() }

// send queues b (owned by the log from here) or drops it.
func (a *AccessLog) send(b *[]byte) {
	defer func() {
		if recover() != nil { // sent after Close: the channel is closed
			a.dropped.Add(1)
		}
	}()
	select {
	case a.lines <- b:
	default:
		a.dropped.Add(1)
		*b = (*b)[:0]
		lineBufs.Put(b)
	}
}

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
		bp := lineBufs.Get().(*[]byte)
		b := appendLineStart(*bp, "request", cc.fwd.ClientIP)
		b = append(b, `,"method":`...)
		b = appendJSONString(b, r.data[:r.m])
		b = append(b, `,"host":`...)
		b = appendJSONString(b, r.data[r.m:r.h])
		b = append(b, `,"path":`...)
		b = appendJSONString(b, r.data[r.h:])
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = appendPoolBackend(b, r.pool, r.backend)
		b = appendDuration(b, time.Since(r.start))
		respBody := int64(-1)
		if r.upstream && !ex.resp.Chunked && ex.resp.ContentLength >= 0 {
			respBody = ex.resp.ContentLength
		}
		if status == 101 {
			respBody = 0
		}
		b = appendBytes(b, r.reqBody, respBody)
		b = append(b, "}\n"...)
		*bp = b
		a.send(bp)
	}
	r.reset()
}

// tunnelDone returns the tunnel's done callback: it releases the backend's
// count (tunnelClosed), observes the tunnel's duration, and logs the close.
// Called by startTunnel while ex still holds the handshake.
//
// head is the length of the 101 response head, which the engine sends as the
// first bytes it owes the client; it is not counted as tunnel traffic.
func (s *Server) tunnelDone(cc *clientConn, ex *exchange, b *balancer.Backend, head int) func(tunnel.Stats) {
	a := s.cfg.AccessLog
	if a == nil {
		return func(st tunnel.Stats) {
			st.BackendToClient = max(st.BackendToClient-int64(head), 0)
			tunnelClosed(b, st)
			s.m.tunnelDuration.Update(st.Duration.Seconds())
		}
	}
	// One allocation per tunnel, only with a log: what the line needs.
	r := &ex.rec
	info := make([]byte, 0, len(cc.fwd.ClientIP)+len(r.data))
	info = append(info, cc.fwd.ClientIP...)
	ipLen := len(info)
	info = append(info, r.data[r.m:]...)
	hostEnd := ipLen + r.h - r.m
	pool := r.pool
	return func(st tunnel.Stats) {
		st.BackendToClient = max(st.BackendToClient-int64(head), 0)
		tunnelClosed(b, st)
		s.m.tunnelDuration.Update(st.Duration.Seconds())
		bp := lineBufs.Get().(*[]byte)
		l := appendLineStart(*bp, "tunnel", info[:ipLen])
		l = append(l, `,"host":`...)
		l = appendJSONString(l, info[ipLen:hostEnd])
		l = append(l, `,"path":`...)
		l = appendJSONString(l, info[hostEnd:])
		l = appendPoolBackend(l, pool, b)
		l = appendDuration(l, st.Duration)
		l = appendBytes(l, st.ClientToBackend, st.BackendToClient)
		l = append(l, `,"reason":"`...)
		l = append(l, st.Reason.String()...)
		l = append(l, "\"}\n"...)
		*bp = l
		a.send(bp)
	}
}

func appendLineStart(b []byte, typ string, client []byte) []byte {
	b = append(b, `{"time":"`...)
	b = time.Now().UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `","client":`...)
	return appendJSONString(b, client)
}

func appendPoolBackend(b []byte, p *balancer.Pool, be *balancer.Backend) []byte {
	b = append(b, `,"pool":`...)
	if p != nil {
		b = appendJSONStr(b, p.Name())
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"backend":`...)
	if be != nil {
		b = appendJSONStr(b, be.Addr())
	} else {
		b = append(b, `""`...)
	}
	return b
}

func appendDuration(b []byte, d time.Duration) []byte {
	b = append(b, `,"duration_ms":`...)
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
}

func appendBytes(b []byte, in, out int64) []byte {
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, in, 10)
	b = append(b, `,"bytes_out":`...)
	return strconv.AppendInt(b, out, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return append(b, '"')
}

// appendJSONStr is appendJSONString for names the proxy itself validated
// (pool names, HOST:PORT): printable ASCII, but escaped all the same.
func appendJSONStr(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= utf8.RuneSelf:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
