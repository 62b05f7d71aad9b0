package tlsfront

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// Conn13 is a TLS 1.3 connection whose HTTP phase is served in the front's
// own goroutine, with no inner socket: it implements netpoll.Connection
// over the client's socket and wsgate's record layer (tunnel/tlsrec), so
// the reactor's exchange code (Config.Prepare and Config.Request, the same
// functions netpoll calls for a plain connection) runs on it unchanged.
//
// Input is pulled: records are read and opened only when the exchange
// wants more than is buffered (Peek, Next, ...) or, between exchanges,
// when the goroutine waits for the next request (with no buffer held).
// Output is sealed in place: WriteBinary lays plaintext out as records
// (header room, content, room for the type and tag), Flush seals the open
// one and writes them all with one system call.
//
// The stream starts with a PROXY v2 header (as on the inner socket, with
// the front's secret and the connection id), so the reactor learns the
// client, https and the id exactly as for a relayed connection.
//
// Records: KeyUpdate is answered (in order with our records), and ours is
// sent at the key's usage limit; close_notify and EOF end the input
// (writes go on; a reader waiting for more gets netpoll.ErrEOF; what
// follows close_notify is ignored), a record that fails gets a fatal alert
// and ends the connection (nothing of it is read), a client's alert ends
// it. Takeover hands the socket and the record state to the tunnel engine
// from the close callback of a verified upgrade.
//
// One goroutine runs a Conn13 (its handler and its waits); Close may come
// from others (the idle wheel, a drain): it marks the connection closed
// and puts the socket's read deadline in the past, and the goroutine
// closes it, running the close callbacks, once no handler runs.
type Conn13 struct {
	f  *Front
	id uint64
	c  *net.TCPConn // the client's socket
	cs *sysConn     // c's raw reads and writes
	rd *tlsrec.Half // the client's direction
	wr *tlsrec.Half // ours

	ctx context.Context

	// Input: in[r:w] is plaintext not yet read, in[w:cw] ciphertext not
	// yet opened (a partial record). inp is in's pool entry (nil when in
	// was allocated). handed: slices of in were handed out since the last
	// Release, so in may not move or be reused.
	in         []byte
	inp        *[]byte
	r, w, cw   int
	handed     bool
	inEnded    bool      // close_notify or EOF: no more input
	inErr      error     // the input failed (bad record, client's alert, reset)
	rdl, rdlOn time.Time // the read deadline asked for (SetReadDeadline), and the one set on c

	// Output: out holds sealed records and, from rec (-1: none), the record
	// being filled (header room, then content). mal holds the slices
	// Malloc handed out, in order with copies of what was written behind
	// the first of them: laid out on Flush (a Malloc'd slice may be filled
	// until then); malN is their length.
	out     []byte
	outp    *[]byte
	rec     int
	mal     [][]byte
	malN    int
	wdl     time.Time // the write deadline set on c
	werr    error
	wclosed bool // close_notify sent (CloseWrite)

	busy   atomic.Bool // a handler runs
	closed atomic.Bool
	cbs    []netpoll.CloseCallback
	done   bool // closed and the callbacks ran
	taken  bool // Takeover took the socket

	readFn func(fd uintptr) bool
	rn     int
	rerr   error
}

// ioBufSize is the size of a Conn13's pooled buffers: a 16 KiB request
// head, or a 32 KiB response batch as records, and a whole record's room.
const ioBufSize = 48 << 10

var ioBufs = sync.Pool{New: func() any { b := make([]byte, ioBufSize); return &b }}

// recRoom is the free room a read needs: one record of the largest size.
const recRoom = tlsrec.HeaderLen + tlsrec.MaxCipher

var errClientAlert = errors.New("tls: alert from the client")

func newConn13(f *Front, id uint64, c *net.TCPConn, cs *sysConn, rd, wr *tlsrec.Half, rc *recConn, hdr []byte) *Conn13 {
	a := &Conn13{f: f, id: id, c: c, cs: cs, rd: rd, wr: wr, rec: -1}
	a.readFn = func(fd uintptr) bool {
		fresh := false
		if a.in == nil {
			a.inp = ioBufs.Get().(*[]byte)
			a.in = *a.inp
			fresh = true
		}
		n, err := rawsys.Read(int(fd), a.in[a.cw:])
		if err == unix.EAGAIN {
			if fresh { // no buffer held while waiting
				ioBufs.Put(a.inp)
				a.in, a.inp = nil, nil
			}
			return false
		}
		a.rn, a.rerr = n, err
		return true
	}
	// The PROXY header as plaintext, then what the client sent behind its
	// Finished, opened.
	pending := 0
	if rc.buf != nil && rc.r < rc.w {
		pending = rc.w - rc.r
	}
	a.inp = ioBufs.Get().(*[]byte)
	a.in = *a.inp
	if len(hdr)+pending+recRoom > len(a.in) {
		a.in = make([]byte, len(hdr)+pending+recRoom)
		ioBufs.Put(a.inp)
		a.inp = nil
	}
	a.w = copy(a.in, hdr)
	a.r = 0
	a.cw = a.w + copy(a.in[a.w:], (*rc.buf)[rc.r:rc.r+pending])
	rc.release()
	return a
}

// serve runs the connection: Prepare, then Request whenever plaintext is
// buffered, waiting for more in between, until it is closed, its input
// ends or fails, or the front drains.
func (a *Conn13) serve() {
	defer a.finish()
	if a.cw > a.w {
		a.process()
	}
	for {
		if a.closed.Load() {
			return
		}
		if a.w == a.r {
			if a.inEnded || a.inErr != nil || a.f.draining.Load() {
				return
			}
			a.idle()
			var dl time.Time
			if a.cw > a.w { // a partial record: it may not trickle for ever
				dl = time.Now().Add(a.f.cfg.ResponseTimeout)
			}
			if err := a.readMore(dl); err != nil && !a.inEnded {
				return
			}
			continue
		}
		a.busy.Store(true)
		a.f.cfg.Request(a.ctx, a)
		a.busy.Store(false)
		if a.f.draining.Load() && a.w == a.r {
			a.Close()
		}
	}
}

// idle gives the buffers back between exchanges (the input's only when it
// holds no partial record), with nothing handed out any more.
func (a *Conn13) idle() {
	a.handed = false
	if a.r == a.w && a.cw > a.w && a.w > 0 { // keep the partial record at the start
		a.cw = copy(a.in, a.in[a.w:a.cw])
		a.r, a.w = 0, 0
	}
	if a.cw == 0 {
		a.releaseIn()
	}
	a.releaseOut()
}

func (a *Conn13) releaseIn() {
	if a.inp != nil {
		ioBufs.Put(a.inp)
	}
	a.in, a.inp, a.r, a.w, a.cw = nil, nil, 0, 0, 0
}

func (a *Conn13) releaseOut() {
	if len(a.out) > 0 {
		return
	}
	if a.outp != nil {
		ioBufs.Put(a.outp)
	}
	a.out, a.outp = nil, nil
}

// finish closes the connection: the close callbacks (newest first), then,
// unless Takeover took it, close_notify and the socket.
func (a *Conn13) finish() {
	a.closed.Store(true)
	a.done = true
	for i := len(a.cbs) - 1; i >= 0; i-- {
		a.cbs[i](a)
	}
	a.cbs = nil
	a.f.live.Delete(a.id)
	if !a.taken {
		if a.inErr == nil && a.werr == nil && !a.wclosed {
			a.commitMal()
			a.sealRec()
			a.ensureOut(tlsrec.HeaderLen + 2 + 1 + tlsrec.TagLen)
			a.out = a.wr.Seal(a.out, tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelWarning, tlsrec.AlertCloseNotify))
			a.wdl = time.Time{}
			a.c.SetWriteDeadline(time.Now().Add(time.Second))
			a.cs.Write(a.out)
		}
	}
	a.c.Close() // after a Takeover, the engine's duplicate keeps the socket: no FIN
	a.out = a.out[:0]
	a.mal = nil
	a.releaseOut()
	a.releaseIn()
}

// setReadDeadline sets c's read deadline to t, unless the connection has
// been closed: then it stays in the past (Close puts it there after
// marking it closed, so one of the two sets it last, and both leave it past).
func (a *Conn13) setReadDeadline(t time.Time) {
	a.c.SetReadDeadline(t)
	a.rdlOn = t
	if a.closed.Load() {
		a.c.SetReadDeadline(aLongTimeAgo)
	}
}

// readMore reads the socket once (waiting until dl; zero: no limit) and
// opens the whole records read.
func (a *Conn13) readMore(dl time.Time) error {
	if a.closed.Load() {
		return netpoll.ErrConnClosed
	}
	if a.in != nil && len(a.in)-a.cw < recRoom {
		a.grow()
	}
	if !dl.Equal(a.rdlOn) {
		a.setReadDeadline(dl)
	}
	a.rn, a.rerr = 0, nil
	if err := a.cs.rc.Read(a.readFn); err != nil {
		if a.closed.Load() {
			return netpoll.ErrConnClosed
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return netpoll.ErrReadTimeout
		}
		a.inErr = err
		return err
	}
	switch {
	case a.rerr != nil:
		a.inErr = os.NewSyscallError("read", a.rerr)
		return a.inErr
	case a.rn == 0: // EOF without close_notify
		if a.cw > a.w {
			a.inErr = tlsrec.ErrShortRecord // in the middle of a record
			return a.inErr
		}
		a.inEnded = true
		return netpoll.ErrEOF
	}
	a.cw += a.rn
	a.process()
	return nil
}

// grow makes room for a record behind in[:cw]: in place when nothing is
// handed out, else in a new buffer (the old one stays with the slices
// handed out).
func (a *Conn13) grow() {
	if !a.handed && a.r > 0 {
		a.cw = copy(a.in, a.in[a.r:a.cw])
		a.w -= a.r
		a.r = 0
		if len(a.in)-a.cw >= recRoom {
			return
		}
	}
	n := max(2*len(a.in), a.cw-a.r+recRoom)
	var nb []byte
	var np *[]byte
	if n <= ioBufSize {
		np = ioBufs.Get().(*[]byte)
		nb = *np
	} else {
		nb = make([]byte, n)
	}
	a.cw = copy(nb, a.in[a.r:a.cw])
	a.w -= a.r
	a.r = 0
	if !a.handed && a.inp != nil {
		ioBufs.Put(a.inp)
	}
	a.in, a.inp = nb, np
}

// process opens every whole record in in[w:cw], appending the plaintext at
// w, and keeps a partial record behind it.
func (a *Conn13) process() {
	p := a.w
	for a.inErr == nil && !a.inEnded {
		l, whole, err := tlsrec.RecordLen(a.in[p:a.cw])
		if err != nil {
			a.fatal(err)
			break
		}
		if !whole || p+l > a.cw {
			break
		}
		typ, content, err := a.rd.Open(a.in[p : p+l])
		if err != nil {
			a.fatal(err)
			break
		}
		p += l
		switch typ {
		case tlsrec.TypeApplicationData:
			a.w += copy(a.in[a.w:], content)
		case tlsrec.TypeHandshake:
			if err := a.handshakeMsgs(content); err != nil {
				a.fatal(err)
			}
		case tlsrec.TypeAlert:
			_, desc, err := tlsrec.ParseAlert(content)
			switch {
			case err != nil:
				a.fatal(err)
			case desc == tlsrec.AlertCloseNotify:
				a.inEnded = true // what follows close_notify is ignored
			default:
				a.inErr = errClientAlert
			}
		}
	}
	if a.inErr != nil || a.inEnded {
		a.cw = a.w
		return
	}
	a.cw = a.w + copy(a.in[a.w:], a.in[p:a.cw])
}

// handshakeMsgs handles post-handshake messages from the client: KeyUpdate
// only (answered at once when it asks for ours, after the records already
// laid out); anything else is unexpected.
func (a *Conn13) handshakeMsgs(content []byte) error {
	for len(content) > 0 {
		typ, body, rest, err := tlsrec.NextHandshake(content)
		if err != nil {
			return err
		}
		if typ != tlsrec.HandshakeKeyUpdate {
			return tlsrec.ErrUnexpectedType
		}
		req, err := tlsrec.ParseKeyUpdate(body)
		if err != nil {
			return err
		}
		a.rd.Update()
		if req {
			a.sealRec()
			var ku [8]byte
			a.ensureOut(tlsrec.HeaderLen + 8 + 1 + tlsrec.TagLen)
			a.out = a.wr.Seal(a.out, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(ku[:0], false))
			a.wr.Update()
			if err := a.writeOut(); err != nil {
				return err
			}
		}
		content = rest
	}
	return nil
}

// fatal sends a fatal alert for err (best effort, after the records laid
// out) and fails the connection: nothing more is read or written.
func (a *Conn13) fatal(err error) {
	a.inErr = err
	if a.werr != nil {
		return
	}
	a.sealRec()
	var b [2]byte
	a.ensureOut(tlsrec.HeaderLen + 2 + 1 + tlsrec.TagLen)
	a.out = a.wr.Seal(a.out, tlsrec.TypeAlert, tlsrec.AppendAlert(b[:0], tlsrec.AlertLevelFatal, tlsrec.AlertFor(err)))
	a.wdl = time.Time{}
	a.c.SetWriteDeadline(time.Now().Add(time.Second))
	a.cs.Write(a.out)
	a.out = a.out[:0]
	a.werr = err
}

// fill reads until n bytes of plaintext are buffered.
func (a *Conn13) fill(n int) error {
	for a.w-a.r < n {
		switch {
		case a.closed.Load():
			return netpoll.ErrConnClosed
		case a.inErr != nil:
			return a.inErr
		case a.inEnded:
			return netpoll.ErrEOF
		}
		if err := a.readMore(a.rdl); err != nil {
			return err
		}
	}
	return nil
}

// ---- output ----

// ensureOut makes room for n more bytes in out.
func (a *Conn13) ensureOut(n int) {
	if cap(a.out)-len(a.out) >= n {
		return
	}
	if a.out == nil && n <= ioBufSize {
		a.outp = ioBufs.Get().(*[]byte)
		a.out = (*a.outp)[:0]
		return
	}
	nb := make([]byte, len(a.out), max(2*cap(a.out), len(a.out)+n))
	copy(nb, a.out)
	if a.outp != nil {
		ioBufs.Put(a.outp)
	}
	a.out, a.outp = nb, nil
}

// appendPlain lays p out as application data records.
func (a *Conn13) appendPlain(p []byte) {
	for len(p) > 0 {
		if a.rec < 0 {
			a.ensureOut(tlsrec.HeaderLen + min(len(p), tlsrec.MaxPlain) + 1 + tlsrec.TagLen)
			a.rec = len(a.out)
			a.out = a.out[:a.rec+tlsrec.HeaderLen]
		}
		room := tlsrec.MaxPlain - (len(a.out) - a.rec - tlsrec.HeaderLen)
		k := min(room, len(p))
		a.ensureOut(k + 1 + tlsrec.TagLen)
		a.out = append(a.out, p[:k]...)
		p = p[k:]
		if k == room {
			a.sealRec()
		}
	}
}

// sealRec seals the record being filled, in place, after a KeyUpdate when
// our key has sealed as many records as it may.
func (a *Conn13) sealRec() {
	if a.rec < 0 {
		return
	}
	start := a.rec
	a.rec = -1
	n := len(a.out) - start - tlsrec.HeaderLen
	if n == 0 {
		a.out = a.out[:start]
		return
	}
	if a.wr.NeedsUpdate() {
		content := append([]byte(nil), a.out[start+tlsrec.HeaderLen:]...)
		a.out = a.out[:start]
		var ku [8]byte
		a.ensureOut(2*(tlsrec.HeaderLen+1+tlsrec.TagLen) + 8 + n)
		a.out = a.wr.Seal(a.out, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(ku[:0], false))
		a.wr.Update()
		a.out = a.wr.Seal(a.out, tlsrec.TypeApplicationData, content)
		return
	}
	a.ensureOut(1 + tlsrec.TagLen)
	a.out = a.wr.Seal(a.out[:start], tlsrec.TypeApplicationData, a.out[start+tlsrec.HeaderLen:start+tlsrec.HeaderLen+n])
}

// writeOut writes the sealed records, within ResponseTimeout.
func (a *Conn13) writeOut() error {
	if a.werr != nil {
		return a.werr
	}
	if len(a.out) == 0 {
		return nil
	}
	now := time.Now()
	rt := a.f.cfg.ResponseTimeout
	if a.wdl.Sub(now) < rt-min(rt/10, time.Second) { // a deadline within a second of the timeout is kept
		a.wdl = now.Add(rt)
		a.c.SetWriteDeadline(a.wdl)
	}
	_, err := a.cs.Write(a.out)
	a.out = a.out[:0]
	if err != nil {
		a.werr = err
	}
	return err
}

func (a *Conn13) commitMal() {
	if len(a.mal) > 0 {
		for _, p := range a.mal {
			a.appendPlain(p)
		}
		clear(a.mal)
		a.mal, a.malN = a.mal[:0], 0
	}
}

// ---- netpoll.Connection ----

var errUnsupported = errors.New("tlsfront: not supported on a TLS connection")

func (a *Conn13) Reader() netpoll.Reader { return a }
func (a *Conn13) Writer() netpoll.Writer { return a }
func (a *Conn13) IsActive() bool         { return !a.closed.Load() }

func (a *Conn13) SetReadTimeout(time.Duration) error   { return nil }
func (a *Conn13) SetWriteTimeout(time.Duration) error  { return nil }
func (a *Conn13) SetIdleTimeout(time.Duration) error   { return nil }
func (a *Conn13) SetOnRequest(netpoll.OnRequest) error { return errUnsupported }
func (a *Conn13) SetDeadline(t time.Time) error        { a.rdl = t; return nil }
func (a *Conn13) SetReadDeadline(t time.Time) error    { a.rdl = t; return nil }
func (a *Conn13) SetWriteDeadline(t time.Time) error   { return nil }
func (a *Conn13) LocalAddr() net.Addr                  { return a.f.innerA }
func (a *Conn13) RemoteAddr() net.Addr                 { return a.c.RemoteAddr() }
func (a *Conn13) AddCloseCallback(cb netpoll.CloseCallback) error {
	if !a.done {
		a.cbs = append(a.cbs, cb)
	}
	return nil
}

// Close closes the connection: at once when no handler runs, else when it
// returns.
func (a *Conn13) Close() error {
	if a.closed.Swap(true) {
		return nil
	}
	a.c.SetReadDeadline(aLongTimeAgo)
	return nil
}

// CloseWrite flushes, sends close_notify and shuts down the socket's
// sending side (a lingering close).
func (a *Conn13) CloseWrite() error {
	if err := a.Flush(); err != nil {
		return err
	}
	if a.inErr != nil {
		return a.inErr
	}
	var b [2]byte
	a.ensureOut(tlsrec.HeaderLen + 2 + 1 + tlsrec.TagLen)
	a.out = a.wr.Seal(a.out, tlsrec.TypeAlert, tlsrec.AppendAlert(b[:0], tlsrec.AlertLevelWarning, tlsrec.AlertCloseNotify))
	if err := a.writeOut(); err != nil {
		return err
	}
	a.wclosed = true
	a.werr = net.ErrClosed
	return a.c.CloseWrite()
}

// Read reads plaintext (net.Conn).
func (a *Conn13) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := a.fill(1); err != nil {
		return 0, err
	}
	n := copy(p, a.in[a.r:a.w])
	a.r += n
	return n, nil
}

// Write writes and flushes p (net.Conn).
func (a *Conn13) Write(p []byte) (int, error) {
	a.WriteBinary(p)
	if err := a.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Reader.

func (a *Conn13) Len() int { return a.w - a.r }

func (a *Conn13) Peek(n int) ([]byte, error) {
	if err := a.fill(n); err != nil {
		return nil, err
	}
	a.handed = true
	return a.in[a.r : a.r+n : a.r+n], nil
}

func (a *Conn13) Next(n int) ([]byte, error) {
	if err := a.fill(n); err != nil {
		return nil, err
	}
	a.handed = true
	p := a.in[a.r : a.r+n : a.r+n]
	a.r += n
	return p, nil
}

func (a *Conn13) Skip(n int) error {
	if err := a.fill(n); err != nil {
		return err
	}
	a.r += n
	return nil
}

func (a *Conn13) Until(delim byte) ([]byte, error) {
	for k := 0; ; k++ { // k: offset from r (fill may move the buffer)
		if a.r+k == a.w {
			if err := a.fill(k + 1); err != nil {
				return nil, err
			}
		}
		if a.in[a.r+k] == delim {
			return a.Next(k + 1)
		}
	}
}

func (a *Conn13) ReadString(n int) (string, error) {
	if err := a.fill(n); err != nil {
		return "", err
	}
	s := string(a.in[a.r : a.r+n])
	a.r += n
	return s, nil
}

func (a *Conn13) ReadBinary(n int) ([]byte, error) {
	if err := a.fill(n); err != nil {
		return nil, err
	}
	p := append([]byte(nil), a.in[a.r:a.r+n]...)
	a.r += n
	return p, nil
}

func (a *Conn13) ReadByte() (byte, error) {
	if err := a.fill(1); err != nil {
		return 0, err
	}
	a.r++
	return a.in[a.r-1], nil
}

func (a *Conn13) Slice(n int) (netpoll.Reader, error) {
	p, err := a.Next(n)
	if err != nil {
		return nil, err
	}
	lb := netpoll.NewLinkBuffer(n)
	lb.WriteBinary(append([]byte(nil), p...))
	lb.Flush()
	a.Release()
	return lb, nil
}

// Release lets the bytes read go: slices handed out are invalid from here.
func (a *Conn13) Release() error {
	a.handed = false
	if a.r > 0 && a.in != nil {
		a.cw = copy(a.in, a.in[a.r:a.cw])
		a.w -= a.r
		a.r = 0
	}
	return nil
}

// Writer.

// Malloc hands out n bytes to fill, sent in order with what is written
// (netpoll's Writer: valid until Flush). The reactor does not use it: it
// costs an allocation, and what is written behind it is copied once more.
func (a *Conn13) Malloc(n int) ([]byte, error) {
	p := make([]byte, n)
	a.mal = append(a.mal, p)
	a.malN += n
	return p, nil
}

// MallocLen is the length of what Malloc handed out, and of what was
// written behind it, not yet flushed.
func (a *Conn13) MallocLen() int { return a.malN }

// MallocAck keeps the first n bytes of MallocLen's and drops the rest.
func (a *Conn13) MallocAck(n int) error {
	if n < 0 || n > a.malN {
		return errUnsupported
	}
	a.malN = n
	for i, p := range a.mal {
		if n <= len(p) {
			a.mal[i] = p[:n]
			clear(a.mal[i+1:])
			a.mal = a.mal[:i+1]
			break
		}
		n -= len(p)
	}
	return nil
}

func (a *Conn13) WriteBinary(p []byte) (int, error) {
	if len(a.mal) > 0 { // behind a Malloc'd slice that may not be filled yet
		a.mal = append(a.mal, append([]byte(nil), p...))
		a.malN += len(p)
		return len(p), nil
	}
	a.appendPlain(p)
	return len(p), nil
}

func (a *Conn13) WriteString(s string) (int, error) { return a.WriteBinary([]byte(s)) }

func (a *Conn13) WriteByte(b byte) error {
	_, err := a.WriteBinary([]byte{b})
	return err
}

func (a *Conn13) WriteDirect(p []byte, remainCap int) error { return errUnsupported }
func (a *Conn13) Append(w netpoll.Writer) error             { return errUnsupported }

// Flush seals what was written and sends it.
func (a *Conn13) Flush() error {
	a.commitMal()
	a.sealRec()
	return a.writeOut()
}

// Takeover hands the connection to the tunnel engine: the client's socket
// as a new descriptor the caller owns, the record state, the ciphertext not
// yet opened and the plaintext not yet read. Call it from a close callback
// (the connection's goroutine, no handler running). ok false: the input
// ended or failed, or the socket could not be duplicated.
func (a *Conn13) Takeover() (h Handover, ok bool) {
	defer func() {
		if ok {
			inc(a.f.cfg.Takeovers)
		} else {
			inc(a.f.cfg.TakeoverFails)
		}
	}()
	if a.taken || a.inErr != nil || a.inEnded || a.wclosed {
		return h, false
	}
	if a.Flush() != nil {
		return h, false
	}
	fd := -1
	var derr error
	if err := a.cs.rc.Control(func(s uintptr) { fd, derr = rawsys.Dup(int(s)) }); err != nil || derr != nil {
		return h, false
	}
	a.taken = true
	h.Fd, h.Read, h.Write = fd, a.rd, a.wr
	if a.cw > a.w {
		h.Pending = append([]byte(nil), a.in[a.w:a.cw]...)
	}
	if a.w > a.r {
		h.ToBackend = append([]byte(nil), a.in[a.r:a.w]...)
		a.r = a.w
	}
	return h, true
}

var _ netpoll.Connection = (*Conn13)(nil)

// Handover is a TLS 1.3 connection taken from the front for the tunnel
// engine.
type Handover struct {
	Fd          int          // the client's socket (a new descriptor, close-on-exec, non-blocking); the caller owns it
	Read, Write *tlsrec.Half // the client's direction and ours
	Pending     []byte       // ciphertext from the client not yet opened (partial or whole records)
	ToBackend   []byte       // the client's plaintext that the reactor has not read
}
