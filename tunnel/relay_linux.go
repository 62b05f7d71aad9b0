package tunnel

import (
	"time"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
	"golang.org/x/sys/unix"
)

// Per-side flags (tunnel.sflags). With edge-triggered epoll an edge is
// seen once, so the loop remembers what it learnt until a syscall says
// otherwise.
const (
	sideReadable uint8 = 1 << iota // input may be waiting: read until EAGAIN (or a short read)
	sideWritable                   // the last write did not hit EAGAIN
	sideRDHUP                      // FIN (or HUP) seen: read until 0, never stop at a short read
	sideFIN                        // an event said FIN came (EPOLLRDHUP, no error): all the side's bytes are queued
	sideAtFIN                      // after sideFIN, a short read took all of them: the next read would return 0
)

// Per-direction flags (dir.flags).
const (
	dirSplicing uint8 = 1 << iota // reading through dir.p with splice(2)
	dirEOF                        // the source returned 0
	dirShut                       // FIN passed on: shutdown(SHUT_WR) on the destination
	dirStop                       // the engine is closing the tunnel: this direction stops at its next frame boundary
	dirEnd                        // at that boundary: our close frame (if any) is queued, nothing more is read
	dirFrame                      // our close frame was queued toward the destination
)

// dir is one direction of a tunnel: bytes read from side s (t.dir[s])
// toward the other side. Buffer and pipe never both hold bytes: the loop
// reads only when the direction holds nothing.
type dir struct {
	buf      *[]byte // bytes read, not yet written: (*buf)[off:end]; nil when none. Owned by this dir.
	off, end int32
	p        pipe  // valid while dirSplicing; owned by this dir
	inPipe   int32 // bytes in p not yet written
	flags    uint8
	written  int64 // bytes written to the destination
	frames         // frame boundaries of what was read (frames.go)
}

func (d *dir) held() int64 {
	if d.buf != nil {
		return int64(d.end - d.off)
	}
	return int64(d.inPipe)
}

// tunnel is one slab slot. Owned by its loop goroutine. An idle tunnel
// holds nothing but this struct (no buffer, pipe, goroutine or timer).
type tunnel struct {
	fd         [2]int32 // by Side; -1 in a free slot
	gen        uint32   // bumped when the slot is freed; checked against event data
	open       bool
	first      int8     // side that finished (FIN) first; -1 while none
	sflags     [2]uint8 // by Side
	closing    Reason   // the engine is closing the tunnel (close_linux.go) for this reason; 0: not
	dir        [2]dir   // by source Side
	lastActive int64    // tick of the last byte moved (the wheel compares it, activity never touches the wheel)
	start      int64    // ns since Engine.epoch at Add
	done       func(Stats)
	tag        uint64   // AddTagged's tag; 0 for Add
	tls        *tlsConn // the client side's TLS 1.3 state (AddTLS); nil for plain tunnels
}

// handle processes one epoll event for side s of t.
func (l *loop) handle(t *tunnel, idx int32, s int, ev uint32) {
	if ev&unix.EPOLLERR != 0 {
		if errno, err := unix.GetsockoptInt(int(t.fd[s]), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && errno != 0 {
			l.fail(t, idx, s, "poll", unix.Errno(errno))
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		t.sflags[s] |= sideReadable
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			t.sflags[s] |= sideRDHUP
		}
		if ev&(unix.EPOLLRDHUP|unix.EPOLLERR) == unix.EPOLLRDHUP {
			t.sflags[s] |= sideFIN
		}
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		t.sflags[s] |= sideWritable
	}
	if t.closing != 0 && t.dir[0].flags&t.dir[1].flags&dirShut != 0 {
		l.drainInput(t, idx) // close frames sent both ways: waiting for the FINs
		return
	}
	// Toward s first (s may have become writable: resume the other side's
	// reading), then from s.
	if l.pump(t, idx, 1-s) {
		l.pump(t, idx, s)
	}
}

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// pump moves bytes from side src to the other side until src has nothing
// more, the destination cannot take more (backpressure: src is not read
// while anything is held for a destination that is not writable), or the
// direction finishes. It reports whether the tunnel is still open.
func (l *loop) pump(t *tunnel, idx int32, src int) bool {
	if t.tls != nil {
		if src == int(SideClient) {
			return l.pumpOpen(t, idx)
		}
		return l.pumpSeal(t, idx)
	}
	d := &t.dir[src]
	dst := 1 - src
	if d.flags&dirShut != 0 {
		return true
	}
	for {
		// 1. What is held goes first.
		if d.buf != nil {
			if drained, open := l.writeHeld(t, idx, src); !drained || !open {
				return open
			}
		}
		if d.inPipe > 0 {
			if t.sflags[dst]&sideWritable == 0 {
				return true
			}
			n, err := rawsys.Splice(int(d.p.r), int(t.fd[dst]), int(d.inPipe), spliceFlags)
			if n > 0 {
				d.inPipe -= int32(n)
				l.spliceBytes += int64(n)
				l.wrote(t, src, int(n))
			}
			if err != nil {
				if err == unix.EAGAIN {
					t.sflags[dst] &^= sideWritable
					return true
				}
				return l.fail(t, idx, dst, "write", err)
			}
			if d.inPipe > 0 {
				continue
			}
		}

		// 2. Closing: at a frame boundary, our close frame, then FIN.
		if d.flags&dirStop != 0 {
			if queued, open := l.stopAtBoundary(t, idx, src); queued || !open {
				if !open {
					return false
				}
				continue // step 1 writes the close frame
			}
		}

		// 3. The source finished (or the direction ended at its boundary)
		// and everything is written: pass the FIN on.
		if d.flags&(dirEOF|dirEnd) != 0 {
			return l.passFin(t, idx, src)
		}

		// 4. Read more, only while the destination can take it.
		if t.sflags[src]&sideReadable == 0 || t.sflags[dst]&sideWritable == 0 {
			return true
		}
		if t.sflags[src]&sideAtFIN != 0 {
			l.eof(t, idx, src) // the read that would return 0, saved
			continue
		}
		if d.flags&dirSplicing != 0 && (d.inPayload() || d.bad()) {
			// Splice the current frame's payload at most: its end is where
			// the next header is read (below, through a buffer).
			max := l.e.cfg.MaxPending
			if !d.bad() && d.rem < int64(max) {
				max = int(d.rem)
			}
			n, err := rawsys.Splice(int(t.fd[src]), int(d.p.w), max, spliceFlags)
			if err != nil {
				if err == unix.EAGAIN { // the flow went quiet: back to buffers, pipe back to the pool
					t.sflags[src] &^= sideReadable
					l.stopSplice(d)
					return true
				}
				return l.fail(t, idx, src, "read", err)
			}
			if n == 0 {
				l.eof(t, idx, src)
				continue
			}
			if !d.bad() {
				d.rem -= int64(n)
			}
			d.inPipe = int32(n)
			t.lastActive = l.nowTick
			if int64(n) > l.maxHeld {
				l.maxHeld = int64(n)
			}
			continue
		}
		b := l.scratch
		if b == nil {
			b = l.e.bufs.get()
		}
		n, err := rawsys.Read(int(t.fd[src]), *b)
		if err != nil {
			l.scratch = b
			if err == unix.EAGAIN {
				t.sflags[src] &^= sideReadable
				l.stopSplice(d) // a splicing direction that read a header here: the pipe is empty
				return true
			}
			return l.fail(t, idx, src, "read", err)
		}
		if n == 0 {
			l.scratch = b
			l.eofReads++
			l.eof(t, idx, src)
			continue
		}
		t.lastActive = l.nowTick
		if n < len(*b) {
			if t.sflags[src]&sideRDHUP == 0 {
				// A short read drained the socket; new data (or a FIN, which
				// sets RDHUP) brings a new edge. Saves a read per message.
				t.sflags[src] &^= sideReadable
				l.stopSplice(d)
			} else if t.sflags[src]&sideFIN != 0 {
				// The FIN had come before this read, and TCP queues it
				// after every byte sent before it: a short read took them
				// all (and the FIN), so EOF is next. Saves the read of 0
				// that ends most tunnels (a close frame, then FIN);
				// HAProxy's raw_sock does the same (a short read with
				// POLL_HUP seen goes to read0). Only TCP urgent data
				// (MSG_OOB) also stops a read short, at its mark; no
				// WebSocket or HTTP peer sends it, and one that sent it
				// with its last bytes would have those past the mark
				// dropped (its FIN passed on first, its socket reset at
				// the close), nothing of anyone else's.
				t.sflags[src] |= sideAtFIN
			}
		}
		// Lend the buffer to the direction; step 1 writes it at once and
		// gives it back to l.scratch when all of it went out.
		l.scratch = nil
		m := n
		if d.flags&dirStop == 0 {
			d.feed((*b)[:n], false)
		} else if m = d.feed((*b)[:n], true); d.bad() {
			l.scratch = b
			return l.fallback(t, idx)
		}
		d.buf, d.off, d.end = b, 0, int32(m) // with dirStop: up to the boundary, the rest is dropped
		if int64(n) > l.maxHeld {
			l.maxHeld = int64(n)
		}
		if n >= l.e.cfg.SpliceMin && l.e.cfg.SpliceMin > 0 && d.flags&dirSplicing == 0 {
			l.startSplice(d)
		}
	}
}

// passFin finishes direction src once everything read before its end is
// written: the destination gets shutdown(SHUT_WR), or, when the other
// direction is finished too, the tunnel closes. It reports whether the
// tunnel is still open.
func (l *loop) passFin(t *tunnel, idx int32, src int) bool {
	d, dst := &t.dir[src], 1-src
	d.flags |= dirShut
	l.stopSplice(d)
	if t.closing != 0 {
		// Closing: every socket gets its FIN, then both peers' are awaited.
		rawsys.ShutdownWrite(int(t.fd[dst]))
		if t.dir[dst].flags&dirShut != 0 {
			return l.linger(t, idx)
		}
		return true
	}
	if t.dir[dst].flags&dirShut != 0 || closingHandshakeDone(t, dst) {
		// Both ways are finished, or nothing more may come from dst (its
		// closing handshake is done): close sends dst its FIN (nothing is
		// left unread on it), so no shutdown first.
		l.close(t, idx, closedBy(t.first), nil)
		return false
	}
	// An error here (ENOTCONN: the destination is gone) shows up as an
	// event on that side; the direction is finished anyway.
	rawsys.ShutdownWrite(int(t.fd[dst]))
	return true
}

// closingHandshakeDone reports whether both directions of plain tunnel t
// have relayed a WebSocket close frame whole and hold nothing: the
// closing handshake is over (RFC 6455 §5.5.1: an endpoint sends nothing
// after its close frame), and all that is left of either peer is its FIN.
// Then the first FIN ends the tunnel, as HAProxy ends every tunnel at the
// server's FIN: passing it on and waiting for the other peer's FIN costs
// a shutdown(2), a read and, on a quiet loop, a wake-up per connection
// (the common end of a WebSocket: client's close, server's close and
// FIN). Only when nothing waits unread on dst: closing a socket with
// unread input sends a reset, which would also drop what is still queued
// toward that peer (our close frame), and a control frame after a close
// frame (a Pong to a Ping that crossed it) is no protocol error; such a
// side is shut down and read to its end as before. The flags know only
// the events handled so far (dst's may come later in the same batch), so
// unless dst's input was read to its end, the kernel is asked (SIOCINQ:
// one ioctl, where the half-close costs a shutdown, a read and a wake-up).
// Input that arrives after the close still draws a reset, as behind any
// proxy that closes a connection whose peer is still sending.
// Untracked streams (not WebSocket framing) and TLS tunnels (close_notify)
// keep the half-close.
func closingHandshakeDone(t *tunnel, dst int) bool {
	if t.tls != nil || t.sflags[dst]&sideReadable != 0 {
		return false
	}
	for s := range t.dir {
		d := &t.dir[s]
		if d.st&wsCloseSeen == 0 || !d.boundary() || d.held() != 0 {
			return false
		}
	}
	if t.dir[dst].flags&dirEOF == 0 {
		if n, err := rawsys.Inq(int(t.fd[dst])); err != nil || n > 0 {
			t.sflags[dst] |= sideReadable // read by dst's own event (this batch's, or the next)
			return false
		}
	}
	return true
}

// writeHeld writes what direction src holds in its buffer to the other
// side until it is drained or the destination is full. It reports whether
// the buffer was drained (and released: kept as the loop's read buffer or
// pooled) and whether the tunnel is still open. Bytes count as written
// (Stats, activity) except sealed ones, which TLS counted as plaintext
// when it sealed them.
func (l *loop) writeHeld(t *tunnel, idx int32, src int) (drained, open bool) {
	d, dst := &t.dir[src], 1-src
	sealed := t.tls != nil && src == int(SideBackend)
	for {
		if t.sflags[dst]&sideWritable == 0 {
			return false, true
		}
		n, err := rawsys.Write(int(t.fd[dst]), (*d.buf)[d.off:d.end])
		if n > 0 {
			d.off += int32(n)
			if sealed {
				t.lastActive = l.nowTick
			} else {
				l.wrote(t, src, n)
			}
		}
		if err != nil {
			if err == unix.EAGAIN {
				t.sflags[dst] &^= sideWritable
				return false, true
			}
			return false, l.fail(t, idx, dst, "write", err)
		}
		if d.off == d.end {
			break
		}
	}
	switch {
	case t.tls != nil:
		l.e.tlsBufs.put(d.buf)
	case l.scratch == nil && len(*d.buf) == l.e.bufs.size:
		l.scratch = d.buf
	default:
		l.e.bufs.put(d.buf)
	}
	d.buf = nil
	return true, true
}

// startSplice switches d to splice for the reads after the current one;
// without a pipe it stays on buffers.
func (l *loop) startSplice(d *dir) {
	if p, ok := l.getPipe(); ok {
		d.p = p
		d.flags |= dirSplicing
		l.e.m.spliceSwitches.Inc()
	}
}

// stopSplice gives d's pipe back (closed if it still holds bytes).
func (l *loop) stopSplice(d *dir) {
	if d.flags&dirSplicing != 0 {
		l.putPipe(d.p, d.inPipe)
		d.flags &^= dirSplicing
		d.p, d.inPipe = pipe{}, 0
	}
}

func (l *loop) eof(t *tunnel, idx int32, src int) {
	t.dir[src].flags |= dirEOF
	t.sflags[src] &^= sideReadable
	if t.first < 0 && t.closing == 0 {
		t.first = int8(src)
		// Half-closed from now on: the other side gets FinTimeout of
		// silence to finish too, when that is sooner than the idle timeout.
		if fin := l.e.finTicks; fin >= 0 && (l.e.timeoutTicks < 0 || fin < l.e.timeoutTicks) {
			l.wheel.Schedule(idx, t.lastActive+fin+1)
		}
	}
}

func (l *loop) wrote(t *tunnel, src int, n int) {
	t.dir[src].written += int64(n)
	l.bytes[src] += int64(n)
	t.lastActive = l.nowTick
}

func closedBy(first int8) Reason {
	if first == int8(SideBackend) {
		return BackendClosed
	}
	return ClientClosed
}

// fail closes t after an error on side s. A side that already sent FIN
// made the tunnel end: its reason wins over the error that follows (a
// client that closed both ways resets the backend's next write).
// It returns false (the tunnel is closed) for pump's convenience.
func (l *loop) fail(t *tunnel, idx int32, s int, op string, err error) bool {
	if t.closing != 0 { // the engine was ending it anyway: its reason stands
		l.close(t, idx, t.closing, nil)
		return false
	}
	if t.first >= 0 {
		l.close(t, idx, closedBy(t.first), nil)
		return false
	}
	l.close(t, idx, Error, &OpError{Side: Side(s), Op: op, Err: err})
	return false
}

// close ends t: both fds are closed, buffers and pipes go back, the slot's
// generation moves on, and done runs last. Closing an fd takes it out of
// epoll (the engine holds the only reference to each socket), so there is
// no EPOLL_CTL_DEL; an event already queued for it, or one from a copy the
// caller kept against Add's contract, carries the old generation and is
// dropped.
func (l *loop) close(t *tunnel, idx int32, r Reason, err error) {
	pool := l.e.bufs
	var code uint16
	if bd := &t.dir[SideBackend]; bd.flags&dirFrame != 0 && bd.buf == nil {
		code = closeCode(r) // the client's close frame went out whole
	}
	if t.tls != nil {
		if r == IdleTimeout || r == Shutdown || r == Rebalance {
			l.tlsGoodbye(t, tlsrec.AlertCloseNotify)
		}
		t.tls.release(l.e.tlsBufs)
		pool = l.e.tlsBufs
	}
	for s, fd := range t.fd {
		rawsys.Close(int(fd))
		d := &t.dir[s]
		if d.buf != nil {
			pool.put(d.buf)
		}
		l.stopSplice(d)
	}
	l.wheel.Remove(idx)
	st := Stats{
		Reason:          r,
		Err:             err,
		ClientToBackend: t.dir[SideClient].written,
		BackendToClient: t.dir[SideBackend].written,
		Duration:        max(l.now-time.Duration(t.start), 0), // start may be later than the batch's clock reading (an Add queued during the batch)
		CloseCode:       code,
	}
	if t.closing != 0 {
		l.e.closing.Add(-1)
	}
	done := t.done
	*t = tunnel{fd: [2]int32{-1, -1}, gen: t.gen + 1}
	l.free = append(l.free, idx)
	l.load.Add(-1)
	l.e.n.Add(-1)
	l.e.m.closes[r].Inc()
	if done != nil {
		done(st)
	}
	// Last: whoever waits for this close (CloseSome, CloseTagged) returns
	// only once the count and the done callback reflect it.
	if l.waiting != nil {
		l.closeWaited(idx)
	}
}
