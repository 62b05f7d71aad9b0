package tunnel

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// Closing a tunnel on purpose, with WebSocket close frames.
//
// The engine ends a tunnel on purpose on idle timeout, for a drain
// (CloseSome, CloseSpread), for a removed backend (CloseTagged), to
// rebalance (CloseTaggedBefore) and on CloseAll/Close. Except for the last
// two, it does so gracefully (startClose):
//
//  1. Each direction still open gets dirStop: it relays on up to its next
//     frame boundary (frames.go; bytes read past it are dropped, and no
//     more is read), where our close frame is queued toward its
//     destination: to the client an unmasked one with closeCode(reason)
//     (1012, or 1001 for the idle timeout), to the backend a masked 1001
//     with a random key. A direction whose destination already had a close
//     frame (its peer started the closing handshake) gets none. On a TLS
//     tunnel the client's frame is sealed as application data, followed by
//     close_notify.
//  2. Once the frame is written the destination gets shutdown(SHUT_WR).
//  3. When both directions are finished, what the peers still send is read
//     and dropped until both have sent their FIN (linger, drainInput), for
//     at most CloseFinWait, and only then are the fds closed: closing a
//     socket with unread input would reset it, and a reset can make the
//     peer's kernel drop the close frame before it is read.
//
// A direction that reaches no boundary within CloseBoundaryWait, or whose
// stream is not valid framing, makes the whole tunnel fall back to a plain
// close (counted). Both waits are the timer wheel's: the tunnel's entry is
// moved to the deadline, and expireSlot handles it. The close reason is
// the one the close was started with, whatever happens after.
//
// CloseAll and Close must be prompt (closeNow): the frames are written only
// when both directions are at a boundary with nothing held, in one
// non-blocking write each, and the fds are closed at once.

// startClose starts the graceful close of t with reason r. It reports
// false if t was already closing. t may be closed when it returns.
func (l *loop) startClose(t *tunnel, idx int32, r Reason) bool {
	if t.closing != 0 {
		return false
	}
	t.closing = r
	l.e.closing.Add(1)
	for s := range t.dir {
		d := &t.dir[s]
		if d.flags&dirShut != 0 {
			continue // finished already
		}
		if d.bad() {
			l.closeNow(t, idx, r)
			return true
		}
		d.flags |= dirStop
	}
	l.wheel.Schedule(idx, l.nowTick+max(l.e.boundTicks, 0)+1)
	if l.pump(t, idx, int(SideBackend)) {
		l.pump(t, idx, int(SideClient))
	}
	return true
}

// stopAtBoundary is pump's step for a direction being closed, with nothing
// held: at a frame boundary it ends there (dirEnd), with our close frame
// queued (queued: pump's step 1 writes it) unless the destination had one
// already. Not at a boundary yet, it lets pump read on (bytes past the
// boundary are dropped there); an untrackable stream falls back to a plain
// close (open false).
func (l *loop) stopAtBoundary(t *tunnel, idx int32, src int) (queued, open bool) {
	d := &t.dir[src]
	if d.flags&dirEnd != 0 {
		return false, true
	}
	if !d.boundary() {
		if d.bad() {
			return false, l.fallback(t, idx)
		}
		return false, true
	}
	d.flags |= dirEnd
	if d.st&wsCloseSeen != 0 {
		return false, true
	}
	pool := l.e.bufs
	if t.tls != nil {
		pool = l.e.tlsBufs
	}
	b := pool.get()
	frame, code, plain := l.closeFrame((*b)[:0], t, src)
	d.buf, d.off, d.end = b, 0, int32(len(frame))
	d.flags |= dirFrame
	if t.tls != nil && src == int(SideBackend) {
		l.wrote(t, src, plain) // sealed bytes are not counted by writeHeld; Stats count plaintext
	}
	l.e.m.frameSent(1-src, code)
	return true, true
}

// closeFrame appends to dst our close frame for direction src (sealed
// toward a TLS client) and returns it, its code and its plaintext length.
func (l *loop) closeFrame(dst []byte, t *tunnel, src int) ([]byte, uint16, int) {
	var f [8]byte
	if src == int(SideClient) { // toward the backend: masked, as a client's
		k := rand.Uint32()
		frame := appendCloseFrame(f[:0], CodeGoingAway, true, [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)})
		return append(dst, frame...), CodeGoingAway, len(frame)
	}
	code := closeCode(t.closing)
	frame := appendCloseFrame(f[:0], code, false, [4]byte{})
	if t.tls != nil {
		return t.tls.sealAll(dst, frame), code, len(frame)
	}
	return append(dst, frame...), code, len(frame)
}

// fallback ends a closing tunnel with a plain close (no boundary in time,
// or not valid framing) and counts it. It returns false for pump.
func (l *loop) fallback(t *tunnel, idx int32) bool {
	l.e.m.closeFallbacks.Inc()
	l.close(t, idx, t.closing, nil)
	return false
}

// linger runs when both directions of a closing tunnel are finished (both
// sockets shut for writing): the fds close once both peers have sent FIN,
// or after CloseFinWait. It reports whether the tunnel is still open.
func (l *loop) linger(t *tunnel, idx int32) bool {
	if t.dir[0].flags&t.dir[1].flags&dirEOF != 0 || l.e.lingerTicks < 0 {
		l.close(t, idx, t.closing, nil)
		return false
	}
	l.wheel.Schedule(idx, l.nowTick+l.e.lingerTicks+1)
	return l.drainInput(t, idx)
}

// drainInput reads and drops what the peers of a lingering tunnel send,
// until both have finished (then it closes the tunnel and reports false).
// A read error counts as finished.
func (l *loop) drainInput(t *tunnel, idx int32) bool {
	b := l.scratch
	if b == nil {
		b = l.e.bufs.get()
		l.scratch = b
	}
	for s := range t.dir {
		d := &t.dir[s]
		for d.flags&dirEOF == 0 && t.sflags[s]&sideReadable != 0 {
			n, err := rawsys.Read(int(t.fd[s]), *b)
			if err == unix.EAGAIN {
				t.sflags[s] &^= sideReadable
				break
			}
			if err != nil || n == 0 {
				d.flags |= dirEOF
			}
		}
	}
	if t.dir[0].flags&t.dir[1].flags&dirEOF != 0 {
		l.close(t, idx, t.closing, nil)
		return false
	}
	return true
}

// closingTimeout is expireSlot for a closing tunnel: the boundary wait or
// the FIN wait is over.
func (l *loop) closingTimeout(t *tunnel, idx int32) {
	if t.dir[0].flags&t.dir[1].flags&dirShut == 0 {
		l.fallback(t, idx) // a direction found no boundary in time
		return
	}
	l.close(t, idx, t.closing, nil)
}

// closeNow closes t at once (CloseAll, Close, or an untrackable stream):
// close frames go out only if both directions are at a frame boundary with
// nothing held, each in one non-blocking write. Otherwise (and where a
// frame was due) the plain close is counted as a fallback.
func (l *loop) closeNow(t *tunnel, idx int32, r Reason) {
	if t.closing != 0 {
		r = t.closing
	} else {
		t.closing = r // for closeFrame's code; close counts it out
		l.e.closing.Add(1)
	}
	ok := true
	for s := range t.dir {
		d := &t.dir[s]
		if d.flags&dirShut == 0 && (d.held() != 0 || !d.boundary()) {
			ok = false
		}
	}
	wrote := false
	for s := 0; ok && s < len(t.dir); s++ {
		d := &t.dir[s]
		if d.flags&(dirShut|dirEnd) != 0 || d.st&wsCloseSeen != 0 {
			continue
		}
		var buf [160]byte
		frame, code, plain := l.closeFrame(buf[:0], t, s)
		if t.tls != nil && s == int(SideBackend) {
			frame = t.tls.sealAlert(frame, tlsrec.AlertCloseNotify)
		}
		if n, _ := rawsys.Write(int(t.fd[1-s]), frame); n != len(frame) {
			ok = false
			break
		}
		d.flags |= dirFrame | dirEnd
		l.wrote(t, s, plain)
		l.e.m.frameSent(1-s, code)
		wrote = true
	}
	if !ok {
		l.e.m.closeFallbacks.Inc()
	}
	if wrote {
		// Take what is already waiting, so that closing does not reset a
		// connection with the frame still unread (best effort: one read).
		b := l.scratch
		if b == nil {
			b = l.e.bufs.get()
			l.scratch = b
		}
		for s := range t.fd {
			if t.dir[s].flags&dirEOF == 0 {
				rawsys.Read(int(t.fd[s]), *b)
			}
		}
	}
	l.close(t, idx, r, nil)
}

// closeBatch lets a caller wait for the done callbacks of tunnels whose
// close it started: left counts them, plus one that the caller holds until
// every loop has registered its own.
type closeBatch struct {
	left atomic.Int64
	done chan struct{}
}

func newCloseBatch() *closeBatch {
	b := &closeBatch{done: make(chan struct{})}
	b.left.Store(1)
	return b
}

func (b *closeBatch) release() {
	if b.left.Add(-1) == 0 {
		close(b.done)
	}
}

// waitClose has close(idx) release b.
func (l *loop) waitClose(idx int32, b *closeBatch) {
	if l.waiting == nil {
		l.waiting = make(map[int32][]*closeBatch)
	}
	b.left.Add(1)
	l.waiting[idx] = append(l.waiting[idx], b)
}

// closeWaited releases the batches waiting for slot idx, which just closed.
func (l *loop) closeWaited(idx int32) {
	bs, ok := l.waiting[idx]
	if !ok {
		return
	}
	delete(l.waiting, idx)
	if len(l.waiting) == 0 {
		l.waiting = nil
	}
	for _, b := range bs {
		b.release()
	}
}

// Which tunnels a startCloses call waits for.
const (
	waitNone    = iota
	waitStarted // those whose close it started
	waitAll     // also those that pick accepts and were closing already
)

// startCloses starts the graceful close, with reason r, of up to n open
// tunnels (n < 0: no limit) that pick accepts and that are not closing
// already, scanning every loop's slab (the loops in parallel, each in slot
// order; they share the budget n). It returns how many it started and how
// many it waited for (see wait) before it returned.
func (e *Engine) startCloses(n int, r Reason, wait int, pick func(t *tunnel) bool) (started, waited int) {
	var left, nStarted, nWaited atomic.Int64
	left.Store(int64(n))
	var batch *closeBatch
	if wait != waitNone {
		batch = newCloseBatch()
	}
	e.run(func(l *loop) {
		for ci := range l.chunks {
			chunk := l.chunks[ci]
			for j := range chunk {
				t := &chunk[j]
				if !t.open || !pick(t) {
					continue
				}
				idx := int32(ci<<chunkBits | j)
				if t.closing == 0 {
					if n >= 0 && left.Add(-1) < 0 {
						return
					}
					gen := t.gen
					l.startClose(t, idx, r)
					nStarted.Add(1)
					if t.gen != gen {
						nWaited.Add(1) // closed already
						continue
					}
				} else if wait != waitAll {
					continue
				}
				if batch != nil {
					nWaited.Add(1)
					l.waitClose(idx, batch)
				}
			}
		}
	})
	if batch != nil {
		batch.release()
		<-batch.done
	}
	return int(nStarted.Load()), int(nWaited.Load())
}

// CloseTaggedBefore starts the graceful close, with reason r (Rebalance to
// move clients to another backend), of up to n open tunnels added with
// AddTagged(tag, ...) (or AddTLS) before the time before, on Config.Now's
// clock: tunnels added at or after it are spared, so that clients that
// already reconnected are not moved again. Tunnels already closing are
// neither counted nor closed again. Which ones go, when more qualify, is
// slot order on each loop (the loops share n). It returns how many closes
// it started, without waiting for them: their done callbacks report them
// (Stats.Reason r; Stats.CloseCode the code the client got).
//
// Cost: one pass over every loop's slab, about 12 ns per slot (two cache
// lines of each): about 120 µs for 10,000 tunnels on one loop
// (BenchmarkCloseTaggedBeforeScan), plus the closes it starts; at one call
// every 100 ms, about 0.1% of a core.
func (e *Engine) CloseTaggedBefore(tag uint64, before time.Time, n int, r Reason) int {
	if n <= 0 {
		return 0
	}
	limit := int64(before.Sub(e.epoch))
	started, _ := e.startCloses(n, r, waitNone, func(t *tunnel) bool { return t.tag == tag && t.start < limit })
	return started
}
