package tlsfront

import (
	"crypto/tls"
	"encoding/binary"
	"sync"

	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// cipherBufSize holds one TLS record of any size TLS 1.3 allows (header
// included).
const cipherBufSize = 17 << 10

// cipherBufs hold ciphertext read from a client during the handshake (and,
// relayed, after it).
var cipherBufs = sync.Pool{New: func() any { b := make([]byte, cipherBufSize); return &b }}

// recConn is the client's socket as crypto/tls sees it during the
// handshake (and, for TLS 1.2 and fallbacks, after it).
//
// Its Read never returns bytes beyond the end of the current TLS record:
// it reads the socket into its own buffer and hands out at most the rest of
// the record; the excess stays here. crypto/tls therefore never holds a
// byte of a record it has not asked for, and when the server's TLS 1.3
// handshake returns (at the end of the client's Finished record), every
// byte the client sent behind it is in this buffer (Pending of the record
// state), under keys we know.
//
// Its Write passes bytes through and, during the handshake, keeps a copy
// of each protected record written (outer type application_data), so
// that the records under the server's application key (the session
// tickets crypto/tls writes in the server's flight) can be counted
// afterwards (appRecords).
//
// The first record read is the ClientHello: its random names the
// connection's traffic secrets in the key log (keyLog).
type recConn struct {
	*sysConn
	log *keyLog

	buf  *[]byte // from cipherBufs (or larger, allocated); nil while empty after the handshake
	big  []byte  // a buffer grown past cipherBufSize (a huge TLS 1.2 record); buf points at it
	r, w int     // unread bytes: (*buf)[r:w]
	left int     // bytes of the current record not yet returned
	seen bool    // the first record's header has been seen

	random  [32]byte
	secrets *secrets // registered in log under random; nil if none or a clash

	passthrough bool // after the handshake: Read hands out buffered bytes, then reads the socket

	// Write side, during the handshake only.
	keep    bool
	whdr    [tlsrec.HeaderLen]byte
	whn     int
	wleft   int
	wcur    []byte   // the protected record being written, copied
	written [][]byte // protected records written, in order
}

func newRecConn(sc *sysConn, log *keyLog) *recConn {
	return &recConn{sysConn: sc, log: log, keep: true}
}

func (rc *recConn) bytes() []byte { return (*rc.buf)[rc.r:rc.w] }

// Read returns buffered bytes up to the end of the current record, reading
// the socket when none are buffered.
func (rc *recConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if rc.passthrough {
			if rc.buf == nil || rc.r == rc.w {
				rc.release()
				return rc.sysConn.Read(p)
			}
			n := copy(p, rc.bytes())
			rc.r += n
			return n, nil
		}
		if rc.buf != nil {
			b := rc.bytes()
			if rc.left == 0 && len(b) >= tlsrec.HeaderLen {
				l := tlsrec.HeaderLen + int(binary.BigEndian.Uint16(b[3:5]))
				if !rc.seen {
					// The ClientHello's random: record header, handshake
					// header (4), legacy_version (2), random (32).
					const at = tlsrec.HeaderLen + 4 + 2
					if len(b) < min(l, at+32) {
						goto more
					}
					rc.seen = true
					if b[0] == tlsrec.TypeHandshake && l >= at+32 && b[tlsrec.HeaderLen] == 1 {
						copy(rc.random[:], b[at:at+32])
						rc.secrets = rc.log.register(rc.random)
					}
				}
				rc.left = l
			}
			if rc.left > 0 && len(b) > 0 {
				n := copy(p, b[:min(len(b), rc.left)])
				rc.r += n
				rc.left -= n
				return n, nil
			}
		}
	more:
		if err := rc.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads the socket into the buffer, making room first.
func (rc *recConn) fill() error {
	if rc.buf == nil {
		rc.buf = cipherBufs.Get().(*[]byte)
		rc.r, rc.w = 0, 0
	}
	if rc.r == rc.w {
		rc.r, rc.w = 0, 0
	}
	b := *rc.buf
	if rc.w == len(b) {
		if rc.r > 0 {
			rc.w = copy(b, b[rc.r:rc.w])
			rc.r = 0
		} else { // a record longer than the buffer (TLS 1.2 allows 18 KiB)
			nb := make([]byte, 2*len(b))
			copy(nb, b)
			rc.release()
			rc.big = nb
			rc.buf = &rc.big
			rc.w = len(b)
			b = nb
		}
	}
	n, err := rc.sysConn.Read(b[rc.w:])
	rc.w += n
	return err
}

// release gives the buffer back (what it holds is dropped).
func (rc *recConn) release() {
	if rc.buf != nil && rc.buf != &rc.big {
		cipherBufs.Put(rc.buf)
	}
	rc.buf, rc.big, rc.r, rc.w = nil, nil, 0, 0
}

// Write writes p and, during the handshake, notes the protected records in it.
func (rc *recConn) Write(p []byte) (int, error) {
	n, err := rc.sysConn.Write(p)
	if rc.keep {
		rc.note(p[:n])
	}
	return n, err
}

// note splits the written stream into records and copies the protected ones.
func (rc *recConn) note(p []byte) {
	for len(p) > 0 {
		if rc.wleft == 0 {
			k := copy(rc.whdr[rc.whn:], p)
			rc.whn += k
			p = p[k:]
			if rc.whn < tlsrec.HeaderLen {
				return
			}
			rc.whn = 0
			rc.wleft = int(binary.BigEndian.Uint16(rc.whdr[3:5]))
			if rc.whdr[0] == tlsrec.TypeApplicationData {
				rc.wcur = append(make([]byte, 0, tlsrec.HeaderLen+rc.wleft), rc.whdr[:]...)
			}
		} else {
			k := min(len(p), rc.wleft)
			if rc.wcur != nil {
				rc.wcur = append(rc.wcur, p[:k]...)
			}
			p = p[k:]
			rc.wleft -= k
		}
		if rc.wleft == 0 && rc.wcur != nil {
			rc.written = append(rc.written, rc.wcur)
			rc.wcur = nil
		}
	}
}

// appRecords counts the protected records written that open under the
// server's application traffic secret (authenticated: records under the
// handshake key fail), and drops the copies.
func (rc *recConn) appRecords(suite uint16, serverSecret []byte) (uint64, error) {
	h, err := tlsrec.NewHalf(suite, serverSecret, 0)
	if err != nil {
		return 0, err
	}
	for _, rec := range rc.written {
		h.Open(rec) // advances h's sequence number only when rec authenticates
	}
	rc.dropWritten()
	return h.Seq(), nil
}

func (rc *recConn) dropWritten() {
	rc.keep, rc.written, rc.wcur = false, nil, nil
}

// handover13 derives the record state of a TLS 1.3 connection whose
// handshake has just completed: the client's direction at sequence 0 (the
// server's handshake ends at the client's Finished, and Read stopped at
// that record's end, so crypto/tls has opened no application record), ours
// after the records crypto/tls wrote under the application key (session
// tickets). ok is false when the secrets are not known (no key log lines,
// or two connections with one client random) or a record is half-read.
func (rc *recConn) handover13(st tls.ConnectionState) (rd, wr *tlsrec.Half, ok bool) {
	defer rc.forget()
	if st.Version != tls.VersionTLS13 || rc.secrets == nil || rc.left != 0 {
		return nil, nil, false
	}
	client, server, good := rc.secrets.get()
	if !good {
		return nil, nil, false
	}
	n, err := rc.appRecords(st.CipherSuite, server)
	if err != nil {
		return nil, nil, false
	}
	if wr, err = tlsrec.NewHalf(st.CipherSuite, server, n); err != nil {
		return nil, nil, false
	}
	if rd, err = tlsrec.NewHalf(st.CipherSuite, client, 0); err != nil {
		return nil, nil, false
	}
	clear(client)
	clear(server)
	return rd, wr, true
}

// forget removes the connection's key log entry and the written copies.
func (rc *recConn) forget() {
	if rc.secrets != nil {
		rc.log.m.CompareAndDelete(rc.random, rc.secrets)
	}
	rc.dropWritten()
}

// keyLog is the tls.Config's KeyLogWriter, shared by a Front's
// connections: it files each connection's TLS 1.3 application traffic
// secrets under its client random, where the connection (which read the
// random from its ClientHello and registered it first) finds them.
type keyLog struct {
	m sync.Map // [32]byte client random → *secrets
}

// secrets are one connection's application traffic secrets.
type secrets struct {
	mu             sync.Mutex
	client, server []byte
	clash          bool // another connection came with the same random: trust neither
}

func (s *secrets) get() (client, server []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.server, !s.clash && s.client != nil && s.server != nil
}

// register files an entry for random; nil when another connection holds
// one (which is then marked as clashing: a client random is public, so
// another peer may reuse one; neither connection's secrets are then used,
// and both are relayed by crypto/tls).
func (k *keyLog) register(random [32]byte) *secrets {
	s := &secrets{}
	if v, loaded := k.m.LoadOrStore(random, s); loaded {
		o := v.(*secrets)
		o.mu.Lock()
		o.clash = true
		o.mu.Unlock()
		return nil
	}
	return s
}

// Write takes one key log line (crypto/tls writes each with one call).
func (k *keyLog) Write(line []byte) (int, error) {
	label, random, secret, err := tlsrec.ParseKeyLogLine(line)
	if err != nil || len(random) != 32 {
		return len(line), nil
	}
	var client bool
	switch label {
	case "CLIENT_TRAFFIC_SECRET_0":
		client = true
	case "SERVER_TRAFFIC_SECRET_0":
	default:
		return len(line), nil
	}
	v, ok := k.m.Load([32]byte(random))
	if !ok {
		return len(line), nil
	}
	s := v.(*secrets)
	s.mu.Lock()
	if client {
		s.client = secret
	} else {
		s.server = secret
	}
	s.mu.Unlock()
	return len(line), nil
}
