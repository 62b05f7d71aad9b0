package tunnel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// TLS tunnels: the client side speaks TLS 1.3 whose handshake someone else
// (crypto/tls, in wsgate's TLS front) has done; the engine opens the
// client's records and seals the backend's bytes into records of its own,
// on its loops, with buffers held only while bytes are in flight, as on the
// plain path. Splice is not used toward or from a TLS side (the bytes pass
// through user space to be opened or sealed).
//
// Client → backend (pumpOpen): ciphertext is read into a pooled buffer
// (tlsConn.in); every whole record is opened in place and its content
// copied into the direction's plaintext buffer, which is written to the
// backend as on the plain path. A partial record stays in tlsConn.in,
// which is held only while one exists. KeyUpdate rotates the read keys
// (and, when requested, makes the other direction send one of its own and
// rotate the write keys); close_notify ends the client's direction like a
// FIN (the backend gets shutdown(SHUT_WR)); any other alert, a record that
// fails authentication, or any handshake message other than KeyUpdate
// closes the tunnel (Reason Error, *OpError with Op "tls"), and nothing of
// such a record is forwarded.
//
// Backend → client (pumpSeal): plaintext read into the loop's scratch
// buffer is sealed into records (at most tlsrec.MaxPlain each) in a pooled
// buffer, which is held only while the client cannot take it. Before a
// record would pass the suite's usage limit, a KeyUpdate of our own goes
// first. The backend's FIN becomes close_notify, then shutdown(SHUT_WR).
//
// Stats count plaintext bytes both ways (what the WebSocket peers sent).

// TLS is a TLS 1.3 client connection handed to AddTLS after its handshake.
type TLS struct {
	// Read opens the client's records; Write seals ours. Each is at the
	// sequence number of the next record, as the handshake left it. The
	// engine owns both from AddTLS on.
	Read, Write *tlsrec.Half
	// Pending is ciphertext read from the client and not yet opened
	// (whole records, then at most one partial one); it is copied.
	Pending []byte
}

// tlsConn is a TLS tunnel's record state, owned by its loop.
type tlsConn struct {
	rd, wr *tlsrec.Half
	in     *[]byte // ciphertext not yet opened: (*in)[:inN]; nil when none. From Engine.tlsBufs.
	inN    int32
	flags  uint8
	err    error // a record failed: the tunnel closes once the plaintext opened before it is written
	warm   bool  // listed in loop.tlsWarm: its AEADs may be built
}

// slotRef names a tunnel slot at one generation.
type slotRef struct {
	idx int32
	gen uint32
}

// warmTLS lists t among the TLS tunnels whose AEADs are built.
func (l *loop) warmTLS(t *tunnel, idx int32) {
	if !t.tls.warm {
		t.tls.warm = true
		l.tlsWarm = append(l.tlsWarm, slotRef{idx, t.gen})
	}
}

// restIdleTLS lets the AEADs of TLS tunnels that moved no byte during the
// last whole tick go (tlsrec.Half.Rest): with AES-GCM they are most of an
// idle wss tunnel's memory (about 1.5 KiB of 2). A tunnel that speaks again
// builds them again (two allocations, a fraction of a microsecond), so a
// busy tunnel keeps them and a quiet one costs its Halves alone.
func (l *loop) restIdleTLS() {
	l.tlsSwept = l.nowTick
	keep := l.tlsWarm[:0]
	for _, r := range l.tlsWarm {
		t := l.slot(r.idx)
		if !t.open || t.gen != r.gen || t.tls == nil {
			continue
		}
		if t.lastActive >= l.nowTick-1 {
			keep = append(keep, r)
			continue
		}
		t.tls.rd.Rest()
		t.tls.wr.Rest()
		t.tls.warm = false
		l.e.m.tlsRested.Inc()
	}
	clear(l.tlsWarm[len(keep):])
	l.tlsWarm = keep
	if cap(l.tlsWarm) > 1024 && len(l.tlsWarm) < cap(l.tlsWarm)/4 {
		l.tlsWarm = append([]slotRef(nil), l.tlsWarm...) // after a burst, let the big slice go
	}
}

const (
	tlsOweKeyUpdate uint8 = 1 << iota // the client asked for a KeyUpdate; send it before more data
	tlsPeerClosed                     // close_notify received
	tlsCloseSent                      // close_notify (or a fatal alert) sealed
)

// AlertError is the *OpError cause of a tunnel that the client ended with
// an alert other than close_notify.
type AlertError struct{ Desc uint8 }

func (e AlertError) Error() string { return fmt.Sprintf("tls: alert %d from the client", e.Desc) }

var (
	errTLSTruncated  = errors.New("tls: the client closed in the middle of a record")
	errTLSUnexpected = errors.New("tls: unexpected message after the handshake")
)

// tlsBufSize is what one TLS buffer must hold: the whole records sealed from
// one read of ReadSize bytes (and a KeyUpdate before them), or the largest
// record the client may send.
func tlsBufSize(readSize int) int {
	r := max(readSize, tlsrec.MaxPlain)
	records := (r + tlsrec.MaxPlain - 1) / tlsrec.MaxPlain
	return r + records*(tlsrec.HeaderLen+1+32) + 512
}

// AddTLS is AddTagged for a client that speaks TLS 1.3: t's keys protect
// the client side. toBackend and toClient are plaintext: toClient (the 101
// and what the backend sent behind it) is sealed first, and t.Pending is
// opened before anything read later. On error both fds are closed.
func (e *Engine) AddTLS(tag uint64, clientFd, backendFd int, toBackend, toClient []byte, t *TLS, done func(Stats)) error {
	if t == nil || t.Read == nil || t.Write == nil {
		closeFd(clientFd)
		closeFd(backendFd)
		return errors.New("tunnel: AddTLS without record state")
	}
	if err := checkFds(clientFd, backendFd); err != nil {
		return err
	}
	tc := &tlsConn{rd: t.Read, wr: t.Write}
	// Until the command reaches its loop this goroutine owns tc: open what
	// is pending here, so that the loop starts with plaintext.
	var plain *[]byte
	plainN := 0
	if len(toBackend) > 0 || len(t.Pending) > 0 {
		plain = e.tlsBufs.get()
		if len(toBackend)+len(t.Pending) > len(*plain) {
			b := make([]byte, len(toBackend)+len(t.Pending)+tlsrec.MaxCipher)
			plain = &b
		}
		plainN = copy(*plain, toBackend)
	}
	if len(t.Pending) > 0 {
		in := e.tlsBufs.get()
		if len(t.Pending) > len(*in) {
			b := make([]byte, len(t.Pending))
			in = &b
		}
		n := copy(*in, t.Pending)
		out, used, err := tc.openRecords((*in)[:n], (*plain)[plainN:])
		plainN += out
		if err != nil {
			e.tlsBufs.put(in)
			e.tlsBufs.put(plain)
			closeFd(clientFd)
			closeFd(backendFd)
			return fmt.Errorf("tunnel: the handover's pending records: %w", err)
		}
		if rest := n - used; rest > 0 {
			copy(*in, (*in)[used:n])
			tc.in, tc.inN = in, int32(rest)
		} else {
			e.tlsBufs.put(in)
		}
	}
	c := command{kind: cmdAdd, fd: [2]int32{int32(clientFd), int32(backendFd)}, done: done, tag: tag, tls: tc}
	var opened []byte
	if plain != nil {
		opened = (*plain)[:plainN]
	}
	c.trackInit(opened, toClient)
	if plainN > 0 {
		c.init[SideClient], c.initN[SideClient] = plain, int32(plainN)
	} else if plain != nil {
		e.tlsBufs.put(plain)
	}
	if len(toClient) > 0 {
		out := e.tlsBufs.get()
		if need := len(toClient) + (len(toClient)/tlsrec.MaxPlain+2)*(tlsrec.HeaderLen+1+32); need > len(*out) {
			b := make([]byte, need)
			out = &b
		}
		sealed := tc.sealAll((*out)[:0], toClient)
		c.init[SideBackend], c.initN[SideBackend] = out, int32(len(sealed))
		// Stats count plaintext: the 101 and what followed it.
		c.initPlain = int32(len(toClient))
	}
	return e.enqueueAdd(c)
}

// openRecords opens the whole records at the start of in, copying their
// application data into out (which has room for at least len(in) bytes),
// and handles the rest: KeyUpdate, close_notify, errors. It returns the
// plaintext bytes written to out and the ciphertext bytes consumed; after
// close_notify nothing more is consumed.
func (tc *tlsConn) openRecords(in, out []byte) (outN, used int, err error) {
	for used < len(in) && tc.flags&tlsPeerClosed == 0 {
		n, ok, err := tlsrec.RecordLen(in[used:])
		if err != nil {
			return outN, used, err
		}
		if !ok || used+n > len(in) {
			break
		}
		typ, content, err := tc.rd.Open(in[used : used+n])
		if err != nil {
			return outN, used, err
		}
		used += n
		switch typ {
		case tlsrec.TypeApplicationData:
			outN += copy(out[outN:], content)
		case tlsrec.TypeHandshake:
			if err := tc.handshake(content); err != nil {
				return outN, used, err
			}
		case tlsrec.TypeAlert:
			level, desc, err := tlsrec.ParseAlert(content)
			if err != nil {
				return outN, used, err
			}
			_ = level // RFC 8446 §6: the level is ignored; close_notify is the only non-error alert
			if desc != tlsrec.AlertCloseNotify {
				return outN, used, AlertError{Desc: desc}
			}
			tc.flags |= tlsPeerClosed
		default:
			return outN, used, errTLSUnexpected
		}
	}
	return outN, used, nil
}

// handshake handles the post-handshake messages in content: only KeyUpdate
// is expected from a client.
func (tc *tlsConn) handshake(content []byte) error {
	for len(content) > 0 {
		typ, body, rest, err := tlsrec.NextHandshake(content)
		if err != nil {
			return err
		}
		if typ != tlsrec.HandshakeKeyUpdate || len(body) != 1 || body[0] > 1 {
			return errTLSUnexpected
		}
		tc.rd.Update()
		if body[0] == 1 {
			tc.flags |= tlsOweKeyUpdate
		}
		content = rest
	}
	return nil
}

// sealAll appends to dst the records for plain (a KeyUpdate first when one
// is owed or the write keys near their limit).
func (tc *tlsConn) sealAll(dst, plain []byte) []byte {
	dst = tc.sealKeyUpdate(dst)
	for len(plain) > 0 {
		n := min(len(plain), tlsrec.MaxPlain)
		dst = tc.wr.Seal(dst, tlsrec.TypeApplicationData, plain[:n])
		plain = plain[n:]
		if tc.wr.NeedsUpdate() {
			dst = tc.sealKeyUpdate(dst)
		}
	}
	return dst
}

// sealKeyUpdate appends a KeyUpdate (update_not_requested) and moves the
// write keys on, when one is owed or due.
func (tc *tlsConn) sealKeyUpdate(dst []byte) []byte {
	if tc.flags&tlsOweKeyUpdate == 0 && !tc.wr.NeedsUpdate() {
		return dst
	}
	var msg [8]byte
	dst = tc.wr.Seal(dst, tlsrec.TypeHandshake, tlsrec.AppendKeyUpdate(msg[:0], false))
	tc.wr.Update()
	tc.flags &^= tlsOweKeyUpdate
	return dst
}

// sealAlert appends one alert record; only the first alert is sealed.
func (tc *tlsConn) sealAlert(dst []byte, desc uint8) []byte {
	if tc.flags&tlsCloseSent != 0 {
		return dst
	}
	tc.flags |= tlsCloseSent
	level := uint8(2) // fatal
	if desc == tlsrec.AlertCloseNotify {
		level = 1
	}
	var a [2]byte
	return tc.wr.Seal(dst, tlsrec.TypeAlert, tlsrec.AppendAlert(a[:0], level, desc))
}

// pumpOpen is pump for the client → backend direction of a TLS tunnel.
func (l *loop) pumpOpen(t *tunnel, idx int32) bool {
	const src, dst = int(SideClient), int(SideBackend)
	d, tc := &t.dir[src], t.tls
	if d.flags&dirShut != 0 {
		return true
	}
	for {
		// 1. Plaintext held goes first.
		if d.buf != nil {
			if drained, open := l.writeHeld(t, idx, src); !drained || !open {
				return open
			}
		}
		if tc.err != nil {
			return l.tlsFail(t, idx, tc.err, tlsrec.AlertFor(tc.err))
		}
		// 2. Closing: at a frame boundary, our close frame, then FIN.
		if d.flags&dirStop != 0 {
			if queued, open := l.stopAtBoundary(t, idx, src); queued || !open {
				if !open {
					return false
				}
				continue
			}
		}
		// 3. close_notify or FIN (or the direction ended at its boundary),
		// everything before it written: pass it on.
		if d.flags&(dirEOF|dirEnd) != 0 {
			return l.passFin(t, idx, src)
		}
		// 3. Read and open more, only while the backend can take it.
		if t.sflags[src]&sideReadable == 0 || t.sflags[dst]&sideWritable == 0 {
			return true
		}
		in := tc.in
		if in == nil {
			in = l.e.tlsBufs.get()
		}
		n, err := rawsys.Read(int(t.fd[src]), (*in)[tc.inN:])
		if err != nil || n == 0 {
			if tc.inN == 0 {
				l.e.tlsBufs.put(in)
			}
			if err == unix.EAGAIN {
				t.sflags[src] &^= sideReadable
				return true
			}
			if err != nil {
				return l.fail(t, idx, src, "read", err)
			}
			if tc.inN > 0 { // FIN inside a record: truncated
				return l.tlsFail(t, idx, errTLSTruncated, 0)
			}
			l.eof(t, idx, src)
			continue
		}
		t.lastActive = l.nowTick
		l.warmTLS(t, idx)
		if n < len(*in)-int(tc.inN) && t.sflags[src]&sideRDHUP == 0 {
			t.sflags[src] &^= sideReadable
		}
		avail := int(tc.inN) + n
		out := l.e.tlsBufs.get()
		outN, used, err := tc.openRecords((*in)[:avail], *out)
		if err != nil {
			// What came before the bad record is authentic: it goes to the
			// backend first (step 1), then the tunnel closes.
			tc.err = err
			tc.in, tc.inN = in, 0 // close puts it back
			t.sflags[src] &^= sideReadable
			if outN == 0 {
				l.e.tlsBufs.put(out)
				return l.tlsFail(t, idx, err, tlsrec.AlertFor(err))
			}
			d.feed((*out)[:outN], false)
			d.buf, d.off, d.end = out, 0, int32(outN)
			continue
		}
		if rest := avail - used; rest > 0 {
			copy(*in, (*in)[used:avail])
			tc.in, tc.inN = in, int32(rest)
		} else {
			l.e.tlsBufs.put(in)
			tc.in, tc.inN = nil, 0
		}
		if outN > 0 {
			if d.flags&dirStop == 0 {
				d.feed((*out)[:outN], false)
			} else if outN = d.feed((*out)[:outN], true); d.bad() {
				l.e.tlsBufs.put(out)
				return l.fallback(t, idx)
			}
			d.buf, d.off, d.end = out, 0, int32(outN)
			if int64(outN) > l.maxHeld {
				l.maxHeld = int64(outN)
			}
		} else {
			l.e.tlsBufs.put(out)
		}
		if tc.flags&tlsPeerClosed != 0 {
			if tc.in != nil { // nothing may follow close_notify
				l.e.tlsBufs.put(tc.in)
				tc.in, tc.inN = nil, 0
			}
			l.eof(t, idx, src)
		}
		if tc.flags&tlsOweKeyUpdate != 0 && !l.pumpSeal(t, idx) {
			return false
		}
	}
}

// pumpSeal is pump for the backend → client direction of a TLS tunnel.
func (l *loop) pumpSeal(t *tunnel, idx int32) bool {
	const src, dst = int(SideBackend), int(SideClient)
	d, tc := &t.dir[src], t.tls
	if d.flags&dirShut != 0 {
		return true
	}
	for {
		// 1. Ciphertext held goes first.
		if d.buf != nil {
			if drained, open := l.writeHeld(t, idx, src); !drained || !open {
				return open
			}
		}
		// A KeyUpdate the client asked for goes out even while the backend
		// is silent.
		if tc.flags&(tlsOweKeyUpdate|tlsCloseSent) == tlsOweKeyUpdate { // (nothing may follow our close_notify)
			b := l.e.tlsBufs.get()
			d.buf, d.off, d.end = b, 0, int32(len(tc.sealKeyUpdate((*b)[:0])))
			continue
		}
		// 2. Closing: at a frame boundary, our close frame, then
		// close_notify and FIN.
		if d.flags&dirStop != 0 {
			if queued, open := l.stopAtBoundary(t, idx, src); queued || !open {
				if !open {
					return false
				}
				continue
			}
		}
		// 3. The backend finished (or the direction ended at its
		// boundary): close_notify, then FIN.
		if d.flags&(dirEOF|dirEnd) != 0 {
			if tc.flags&tlsCloseSent == 0 {
				b := l.e.tlsBufs.get()
				d.buf, d.off, d.end = b, 0, int32(len(tc.sealAlert((*b)[:0], tlsrec.AlertCloseNotify)))
				continue
			}
			return l.passFin(t, idx, src)
		}
		// 3. Read more plaintext, only while the client can take it.
		if t.sflags[src]&sideReadable == 0 || t.sflags[dst]&sideWritable == 0 {
			return true
		}
		b := l.scratch
		if b == nil {
			b = l.e.bufs.get()
		}
		n, err := rawsys.Read(int(t.fd[src]), *b)
		l.scratch = b
		if err != nil {
			if err == unix.EAGAIN {
				t.sflags[src] &^= sideReadable
				return true
			}
			return l.fail(t, idx, src, "read", err)
		}
		if n == 0 {
			l.eof(t, idx, src)
			continue
		}
		if n < len(*b) && t.sflags[src]&sideRDHUP == 0 {
			t.sflags[src] &^= sideReadable
		}
		if d.flags&dirStop == 0 {
			d.feed((*b)[:n], false)
		} else if n = d.feed((*b)[:n], true); d.bad() { // up to the boundary; the rest is dropped
			return l.fallback(t, idx)
		}
		l.wrote(t, src, n) // plaintext taken from the backend (Stats count plaintext)
		l.warmTLS(t, idx)
		out := l.e.tlsBufs.get()
		sealed := tc.sealAll((*out)[:0], (*b)[:n])
		d.buf, d.off, d.end = out, 0, int32(len(sealed))
		if int64(len(sealed)) > l.maxHeld {
			l.maxHeld = int64(len(sealed))
		}
	}
}

// tlsFail closes a TLS tunnel after a protocol error on the client side,
// sending the client the alert desc first when it can go out at once
// (desc 0 means none).
func (l *loop) tlsFail(t *tunnel, idx int32, err error, desc uint8) bool {
	if desc != 0 {
		l.tlsGoodbye(t, desc)
	}
	if t.closing != 0 { // the engine was ending it anyway: its reason stands
		l.close(t, idx, t.closing, nil)
		return false
	}
	t.first = -1 // the error is the reason, whatever finished before
	l.close(t, idx, Error, &OpError{Side: SideClient, Op: "tls", Err: err})
	return false
}

// tlsGoodbye writes an alert to the client if nothing is queued before it
// (best effort, one non-blocking write).
func (l *loop) tlsGoodbye(t *tunnel, desc uint8) {
	tc := t.tls
	if tc.flags&tlsCloseSent != 0 || t.dir[SideBackend].buf != nil || t.dir[SideBackend].flags&dirShut != 0 {
		return
	}
	var b [64]byte
	rawsys.Write(int(t.fd[SideClient]), tc.sealAlert(b[:0], desc))
}

// release gives back the partial record tc holds.
func (tc *tlsConn) release(pool *bufPool) {
	if tc.in != nil {
		pool.put(tc.in)
		tc.in, tc.inN = nil, 0
	}
}
