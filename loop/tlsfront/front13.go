package tlsfront

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// frontConn13 is one relayed TLS 1.3 connection whose records are ours
// (tunnel/tlsrec): after the handshake crypto/tls is out of the picture,
// so that the record state can be handed to the tunnel engine exactly
// (Takeover).
type frontConn13 struct {
	f  *Front
	id uint64
	c  *net.TCPConn  // the client's socket
	cs *sysConn      // c's raw reads and writes
	ic *net.UnixConn // the inner connection
	is *sysConn      // ic's raw reads and writes

	rd  *tlsrec.Half // the client's direction; the reader's
	wmu sync.Mutex   // guards wr and writes to c
	wr  *tlsrec.Half // ours

	finAt atomic.Int64 // unix nanoseconds: read deadline of c once the inner side ended; 0 until then
	once  sync.Once

	// stop: Takeover asked both directions to park. end is closed when both
	// have returned; handed (under mu) says they both parked and Takeover
	// owns the connection; abandoned, that Takeover gave up waiting.
	stop              atomic.Bool
	end               chan struct{}
	mu                sync.Mutex
	handed, abandoned bool

	// The reader's ciphertext: rbuf[:rn], a partial record at the start
	// between reads. rbuf is held only while it holds bytes. When the
	// reader parks, unw is plaintext opened and not yet written to the
	// inner side, and rbuf[poff:rn] ciphertext not yet opened.
	rbuf      *[]byte
	rbig      []byte // rbuf points here when it is not pooled
	rn        int
	unw       []byte
	poff      int
	rdeadline bool // c's read deadline is set (not zero)

	// Bound once, so that waiting and reading allocate nothing.
	peek       func(fd uintptr) bool
	peekB      [1]byte
	clientRead func(fd uintptr) bool
	cn         int
	cerr       error
	innerRead  func(fd uintptr) bool
	ibuf       *[]byte
	in         int
	ierr       error
}

// Relay outcomes of one direction.
const (
	dirClean  = iota // ended cleanly (close_notify or EOF)
	dirFailed        // failed: close both
	dirParked        // stopped for Takeover at a consistent point
)

func newFrontConn13(f *Front, id uint64, c *net.TCPConn, cs *sysConn, ic *net.UnixConn, is *sysConn, rd, wr *tlsrec.Half, rc *recConn) *frontConn13 {
	fc := &frontConn13{f: f, id: id, c: c, cs: cs, ic: ic, is: is, rd: rd, wr: wr, end: make(chan struct{})}
	// What the client sent behind its Finished: the reader starts with it.
	if rc.buf != nil && rc.r < rc.w {
		if rc.buf == &rc.big {
			fc.rbig = rc.big
			fc.rbuf = &fc.rbig
		} else {
			fc.rbuf = rc.buf
		}
		fc.rn = copy(*fc.rbuf, (*rc.buf)[rc.r:rc.w])
		rc.buf, rc.big = nil, nil
	}
	rc.release()
	fc.peek = func(fd uintptr) bool { return rawsys.Peek(int(fd), fc.peekB[:]) }
	fc.clientRead = func(fd uintptr) bool {
		bp := fc.rbuf
		if bp == nil {
			bp = cipherBufs.Get().(*[]byte)
		}
		n, err := rawsys.Read(int(fd), (*bp)[fc.rn:])
		if err == unix.EAGAIN {
			if fc.rbuf == nil {
				cipherBufs.Put(bp) // no buffer held while waiting
			}
			return false
		}
		fc.rbuf, fc.cn, fc.cerr = bp, n, err
		return true
	}
	fc.innerRead = func(fd uintptr) bool {
		bp := relayBufs.Get().(*[]byte)
		n, err := rawsys.Read(int(fd), *bp)
		if err == unix.EAGAIN {
			relayBufs.Put(bp)
			return false
		}
		fc.ibuf, fc.in, fc.ierr = bp, n, err
		return true
	}
	return fc
}

// relay runs both directions until both end or one fails, then closes
// both connections, unless Takeover took the connection.
func (fc *frontConn13) relay() {
	done := make(chan struct{})
	var wres int
	go func() { // inner → client
		defer close(done)
		wres = fc.innerToClient()
		switch wres {
		case dirClean:
			fc.send(tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelWarning, tlsrec.AlertCloseNotify), time.Second)
			fc.c.CloseWrite()
			at := time.Now().Add(frontFinTimeout)
			fc.finAt.Store(at.UnixNano())
			fc.setReadDeadline(at)
		case dirFailed:
			fc.closeBoth()
		}
	}()
	rres := fc.clientToInner()
	switch rres {
	case dirClean:
		fc.ic.CloseWrite()
		fc.ic.SetReadDeadline(time.Now().Add(frontFinTimeout))
	case dirFailed:
		fc.closeBoth()
	}
	<-done
	fc.f.conns.CompareAndDelete(fc.id, fc)
	fc.mu.Lock()
	if rres == dirParked && wres == dirParked && !fc.abandoned {
		fc.handed = true
	}
	handed := fc.handed
	fc.mu.Unlock()
	close(fc.end)
	if !handed {
		fc.closeBoth()
		fc.releaseRead()
	}
}

func (fc *frontConn13) closeBoth() {
	fc.once.Do(func() {
		fc.ic.Close()
		fc.c.Close()
	})
}

func (fc *frontConn13) releaseRead() {
	if fc.rbuf != nil && fc.rbuf != &fc.rbig {
		cipherBufs.Put(fc.rbuf)
	}
	fc.rbuf, fc.rbig, fc.rn, fc.unw, fc.poff = nil, nil, 0, nil, 0
}

// setReadDeadline sets c's read deadline, unless Takeover has asked the
// reader to stop: then it stays in the past (Takeover sets it there after
// raising stop, so one of the two sets it last, and both leave it past).
func (fc *frontConn13) setReadDeadline(t time.Time) {
	fc.c.SetReadDeadline(t)
	if fc.stop.Load() {
		fc.c.SetReadDeadline(aLongTimeAgo)
	}
}

// deadline is d, or the fin deadline once the inner side has ended.
func (fc *frontConn13) deadline(d time.Time) time.Time {
	if at := fc.finAt.Load(); at != 0 {
		return time.Unix(0, at)
	}
	return d
}

// send seals one record of type typ and writes it to the client, within
// timeout; false if it could not be written whole.
func (fc *frontConn13) send(typ uint8, content []byte, timeout time.Duration) bool {
	var b [64]byte
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	out := fc.wr.Seal(b[:0], typ, content)
	fc.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := fc.cs.Write(out)
	return err == nil
}

// fatal sends a fatal alert for err (best effort) and reports failure.
func (fc *frontConn13) fatal(err error) int {
	fc.send(tlsrec.TypeAlert, tlsrec.AppendAlert(nil, tlsrec.AlertLevelFatal, tlsrec.AlertFor(err)), time.Second)
	return dirFailed
}

// clientToInner opens the client's records and writes their plaintext to
// the inner side. Between records it holds no buffer: it waits for the
// socket to turn readable, then reads into a pooled buffer kept only while
// a partial record (bounded by ResponseTimeout) or unwritten plaintext is
// in it.
func (fc *frontConn13) clientToInner() int {
	rc := fc.cs.rc
	for {
		if fc.rn > 0 { // a partial record, or bytes the handshake left: process them
			if r, ok := fc.process(); !ok {
				return r
			}
		}
		if fc.rn == 0 {
			fc.releaseRead()
			if d := fc.deadline(time.Time{}); fc.rdeadline || !d.IsZero() {
				fc.setReadDeadline(d)
				fc.rdeadline = !d.IsZero()
			}
			if err := rc.Read(fc.peek); err != nil { // waits with no buffer
				if fc.stop.Load() {
					return fc.park(0)
				}
				return dirFailed
			}
		} else {
			fc.setReadDeadline(fc.deadline(time.Now().Add(fc.f.cfg.ResponseTimeout)))
			fc.rdeadline = true
		}
		fc.cn, fc.cerr = 0, nil
		if err := rc.Read(fc.clientRead); err != nil {
			if fc.stop.Load() {
				return fc.park(0)
			}
			return dirFailed
		}
		switch {
		case fc.cerr != nil:
			return dirFailed
		case fc.cn == 0: // EOF without close_notify: the client's direction ends
			if fc.rn > 0 {
				return dirFailed // in the middle of a record
			}
			return dirClean
		}
		fc.rn += fc.cn
	}
}

// process opens every whole record in rbuf[:rn] and handles it, then keeps
// the partial record at the start. ok false: the direction ends with r.
func (fc *frontConn13) process() (r int, ok bool) {
	b := (*fc.rbuf)[:fc.rn]
	off := 0
	for {
		l, whole, err := tlsrec.RecordLen(b[off:])
		if err != nil {
			return fc.fatal(err), false
		}
		if !whole || off+l > len(b) {
			break
		}
		typ, content, err := fc.rd.Open(b[off : off+l])
		if err != nil { // nothing of it is forwarded
			return fc.fatal(err), false
		}
		off += l
		switch typ {
		case tlsrec.TypeApplicationData:
			if len(content) == 0 {
				continue
			}
			fc.ic.SetWriteDeadline(time.Now().Add(fc.f.cfg.ResponseTimeout))
			if fc.stop.Load() {
				fc.ic.SetWriteDeadline(aLongTimeAgo)
			}
			n, err := fc.is.Write(content)
			if err != nil {
				if fc.stop.Load() && isTimeout(err) {
					fc.unw = content[n:]
					return fc.park(off), false
				}
				return dirFailed, false
			}
		case tlsrec.TypeHandshake:
			if err := fc.handshakeMsgs(content); err != nil {
				return fc.fatal(err), false
			}
		case tlsrec.TypeAlert:
			level, desc, err := tlsrec.ParseAlert(content)
			if err != nil {
				return fc.fatal(err), false
			}
			_ = level // TLS 1.3: the alert's type says how severe it is
			if desc == tlsrec.AlertCloseNotify {
				fc.rn = 0
				return dirClean, false // what follows close_notify is ignored
			}
			return dirFailed, false
		}
	}
	fc.rn = copy(*fc.rbuf, b[off:])
	return 0, true
}

// handshakeMsgs handles post-handshake messages from the client: KeyUpdate
// only (answered when it asks for ours); anything else is unexpected.
func (fc *frontConn13) handshakeMsgs(content []byte) error {
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
		fc.rd.Update()
		if req {
			var b [64]byte
			fc.wmu.Lock()
			out := fc.wr.Seal(b[:0], tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(nil, false))
			fc.wr.Update()
			fc.c.SetWriteDeadline(time.Now().Add(fc.f.cfg.ResponseTimeout))
			_, werr := fc.cs.Write(out)
			fc.wmu.Unlock()
			if werr != nil {
				return werr
			}
		}
		content = rest
	}
	return nil
}

// park stops the reader for Takeover: rbuf[poff:rn] is ciphertext not yet
// opened, unw plaintext not yet written.
func (fc *frontConn13) park(poff int) int {
	fc.poff = poff
	return dirParked
}

// innerToClient seals what the inner side writes, a record per read, and
// writes it to the client, until the inner side ends. It waits for input
// with no buffer held.
func (fc *frontConn13) innerToClient() int {
	for {
		if err := fc.is.rc.Read(fc.innerRead); err != nil {
			return dirFailed
		}
		bp, n, err := fc.ibuf, fc.in, fc.ierr
		fc.ibuf = nil
		if n > 0 {
			ok := fc.seal((*bp)[:n])
			if !ok {
				relayBufs.Put(bp)
				return dirFailed
			}
		}
		relayBufs.Put(bp)
		switch {
		case err != nil:
			return dirFailed
		case n == 0: // EOF
			if fc.stop.Load() {
				return dirParked // Takeover shut the reactor's side down: all it wrote is sent
			}
			return dirClean
		}
	}
}

// seal writes p (at most MaxPlain) as one record, after a KeyUpdate when
// our key has sealed as many records as it may.
func (fc *frontConn13) seal(p []byte) bool {
	ob := cipherBufs.Get().(*[]byte)
	fc.wmu.Lock()
	out := (*ob)[:0]
	if fc.wr.NeedsUpdate() {
		var ku [8]byte
		out = fc.wr.Seal(out, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(ku[:0], false))
		fc.wr.Update()
	}
	out = fc.wr.Seal(out, tlsrec.TypeApplicationData, p)
	fc.c.SetWriteDeadline(time.Now().Add(fc.f.cfg.ResponseTimeout))
	_, err := fc.cs.Write(out)
	fc.wmu.Unlock()
	cipherBufs.Put(ob)
	return err == nil
}

// Handover is a TLS 1.3 connection taken from the front for the tunnel
// engine.
type Handover struct {
	Fd          int          // the client's socket (a new descriptor, close-on-exec, non-blocking); the caller owns it
	Read, Write *tlsrec.Half // the client's direction and ours
	Pending     []byte       // ciphertext from the client not yet opened (partial or whole records)
	ToBackend   []byte       // the client's plaintext that the reactor has not read
}

// Takeover ends the front's relay of the TLS 1.3 connection id for a
// tunnel. innerFd is the reactor's end of the inner connection (still
// open; Takeover shuts down its write side so that the front's
// inner→client relay drains what the reactor wrote and stops, then reads
// what the front wrote into it that the reactor had not read). It returns
// the client's socket as a new fd that the caller owns, the record state,
// and ToBackend: the client's plaintext not yet read by the reactor. ok
// false (TLS 1.2, unknown id, already ending): fall back to the inner
// connection; if the relay had been asked to stop and did not park in
// time (ResponseTimeout), it closes the connection, and the inner
// connection is unusable.
//
// How the two relay goroutines are stopped at a consistent point: stop is
// raised, then the client socket's read deadline and the inner socket's
// write deadline are put in the past (the reader's own deadline changes
// check stop after they set theirs, so a deadline in the past is the last
// word). The reader wakes from its wait (no buffer), from a read (a
// partial record kept) or from a write to the inner side (what was not
// written kept) and parks with what it holds. The writer drains the
// reactor's side to the EOF the shutdown causes, sealing and writing all
// of it, and parks. Only when both have parked (not failed, not ended) is
// the connection handed over; the record state is then exactly what the
// client and the front have each protected.
func (f *Front) Takeover(id uint64, innerFd int) (h Handover, ok bool) {
	defer func() {
		if ok {
			inc(f.cfg.Takeovers)
		} else {
			inc(f.cfg.TakeoverFails)
		}
	}()
	v, found := f.conns.Load(id)
	if !found {
		return h, false
	}
	fc := v.(*frontConn13)
	if !fc.stop.CompareAndSwap(false, true) {
		return h, false
	}
	fc.c.SetReadDeadline(aLongTimeAgo)
	fc.ic.SetWriteDeadline(aLongTimeAgo)
	unix.Shutdown(innerFd, unix.SHUT_WR)
	t := time.NewTimer(f.cfg.ResponseTimeout)
	select {
	case <-fc.end:
	case <-t.C:
	}
	t.Stop()
	fc.mu.Lock()
	handed := fc.handed
	if !handed {
		fc.abandoned = true
	}
	fc.mu.Unlock()
	if !handed {
		return h, false
	}
	// Both directions are parked: the connection is ours alone.
	defer func() {
		fc.releaseRead()
		fc.ic.Close()
		fc.c.Close() // the duplicate keeps the socket: no FIN, no close_notify
	}()
	var toBackend []byte
	for { // what the front wrote to the inner side that the reactor has not read
		if len(toBackend) == cap(toBackend) {
			toBackend = append(toBackend, make([]byte, 16<<10)...)[:len(toBackend)]
		}
		n, err := rawsys.Read(innerFd, toBackend[len(toBackend):cap(toBackend)])
		if n <= 0 || err != nil {
			break
		}
		toBackend = toBackend[:len(toBackend)+n]
	}
	toBackend = append(toBackend, fc.unw...)
	if fc.rbuf != nil && fc.poff < fc.rn {
		h.Pending = append([]byte(nil), (*fc.rbuf)[fc.poff:fc.rn]...)
	}
	fd := -1
	var derr error
	cerr := fc.cs.rc.Control(func(s uintptr) { fd, derr = rawsys.Dup(int(s)) })
	if cerr != nil || derr != nil {
		fc.closeBoth()
		return Handover{}, false
	}
	h.Fd, h.Read, h.Write, h.ToBackend = fd, fc.rd, fc.wr, toBackend
	return h, true
}
