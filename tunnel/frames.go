package tunnel

import "bytes"

// WebSocket frame boundaries (RFC 6455 §5.2), headers only.
//
// Each direction of a tunnel keeps a frames tracker fed with every byte it
// reads (plaintext on TLS tunnels), so that the engine knows whether the
// stream it has relayed so far ends between two frames: only there can a
// close frame of its own be inserted without breaking the stream. The
// tracker reads the 2..14 header bytes of each frame (FIN/opcode, mask
// bit, 7/16/64-bit length, 4-byte mask key, which is skipped) and counts
// the payload down without looking at it. A header may be split across
// reads at any byte; the partial length is assembled in rem.
//
// Any two frames meet at a boundary, control frames between the fragments
// of a message included. Nothing about messages (fragmentation order,
// UTF-8, extensions' RSV bits) is checked, and the mask bit is read as it
// comes (it decides the header's length) in either direction. A stream
// that is not valid framing — a reserved opcode, a control frame that is
// fragmented or longer than 125 bytes, a 64-bit length with its most
// significant bit set — makes the direction untrackable for good: it can
// only be ended by a plain close.

// frames is one direction's tracker: 10 bytes of state (rem, hdr, st),
// kept in dir next to its flags.
type frames struct {
	rem int64 // payload bytes of the current frame still to come; in a header: its extended length so far
	hdr uint8 // header bytes still to come after the second one (extended length, then mask key)
	st  uint8 // ws* flags
}

// frames.st flags.
const (
	wsBad       uint8 = 1 << iota // not valid framing: untrackable from here on
	wsCloseSeen                   // a close frame's header has passed in this direction
	wsHead1                       // the first header byte is read, the second is next
	wsMasked                      // the header being read has a mask key (its last 4 bytes)
	wsCtrl                        // the header being read is a control frame's
	wsCloseHdr                    // the header being read is a close frame's
)

// boundary reports whether the bytes fed so far end between two frames
// (or are none). Always false once untrackable.
func (f *frames) boundary() bool {
	return f.rem == 0 && f.hdr == 0 && f.st&(wsHead1|wsBad) == 0
}

// bad reports whether the direction is untrackable.
func (f *frames) bad() bool { return f.st&wsBad != 0 }

// inPayload reports whether the next byte is payload (not a header byte),
// and so whether up to rem bytes may pass without being looked at.
func (f *frames) inPayload() bool {
	return f.rem > 0 && f.hdr == 0 && f.st&wsHead1 == 0
}

// feed takes the next bytes of the stream. With stop it stops at the first
// boundary after at least one byte (the rest of b is not part of what is
// relayed); it returns how many bytes of b it took (all of them without
// stop, or once untrackable).
func (f *frames) feed(b []byte, stop bool) int {
	n := 0
	for n < len(b) {
		if f.st&wsBad != 0 {
			return len(b)
		}
		if f.rem > 0 && f.hdr == 0 && f.st&wsHead1 == 0 {
			// Payload: skipped without a look.
			if left := int64(len(b) - n); left <= f.rem {
				f.rem -= left
				return len(b)
			}
			n += int(f.rem)
			f.rem = 0
			if stop {
				return n
			}
			continue
		}
		if f.hdr == 0 && f.st&wsHead1 == 0 && len(b)-n >= 2 {
			// A whole header in b: no state kept between its bytes.
			if h, ok := f.header(b[n:]); ok {
				n += h
				if stop && f.rem == 0 {
					return n
				}
				continue
			}
			if f.st&wsBad != 0 {
				return len(b)
			}
		}
		f.step(b[n])
		n++
		if stop && f.boundary() {
			return n
		}
	}
	return n
}

// header parses a header that starts b, if b holds all of it: it returns
// its length and leaves rem at the frame's payload length. ok is false when
// b is too short (nothing consumed) or the header is not valid (wsBad).
func (f *frames) header(b []byte) (n int, ok bool) {
	b0, b1 := b[0], b[1]
	if !validFirst(b0) {
		f.st |= wsBad
		return 0, false
	}
	n = 2
	l7 := int64(b1 & 0x7f)
	if b0&0x08 != 0 && l7 > 125 {
		f.st |= wsBad
		return 0, false
	}
	switch l7 {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	if len(b) < n {
		return 0, false
	}
	switch l7 {
	case 126:
		l7 = int64(b[2])<<8 | int64(b[3])
	case 127:
		if b[2]&0x80 != 0 {
			f.st |= wsBad
			return 0, false
		}
		l7 = int64(b[2])<<56 | int64(b[3])<<48 | int64(b[4])<<40 | int64(b[5])<<32 |
			int64(b[6])<<24 | int64(b[7])<<16 | int64(b[8])<<8 | int64(b[9])
	}
	f.rem = l7
	if b0&0x0f == 0x8 {
		f.st |= wsCloseSeen
	}
	return n, true
}

// validFirst reports whether b0 may start a frame: a defined opcode, and a
// control frame only unfragmented.
func validFirst(b0 byte) bool {
	switch op := b0 & 0x0f; {
	case op <= 0x2:
		return true
	case op >= 0x8 && op <= 0xa:
		return b0&0x80 != 0
	}
	return false
}

// step takes one header byte (the slow path, for headers split across
// reads).
func (f *frames) step(c byte) {
	switch {
	case f.hdr == 0 && f.st&wsHead1 == 0: // first byte
		if !validFirst(c) {
			f.st |= wsBad
			return
		}
		f.st |= wsHead1
		if c&0x08 != 0 {
			f.st |= wsCtrl
		}
		if c&0x0f == 0x8 {
			f.st |= wsCloseHdr
		}
	case f.st&wsHead1 != 0: // second byte
		f.st &^= wsHead1
		l7 := int64(c & 0x7f)
		if f.st&wsCtrl != 0 && l7 > 125 {
			f.st |= wsBad
			return
		}
		f.rem = 0
		switch l7 {
		case 126:
			f.hdr = 2
		case 127:
			f.hdr = 8
		default:
			f.rem = l7
		}
		if c&0x80 != 0 {
			f.hdr += 4
			f.st |= wsMasked
		}
		if f.hdr == 0 {
			f.endHeader()
		}
	default: // extended length, then mask key
		lenLeft := f.hdr // extended length bytes still to come, when > 0
		if f.st&wsMasked != 0 {
			lenLeft -= 4
		}
		if f.st&wsMasked == 0 || f.hdr > 4 {
			if lenLeft == 8 && c&0x80 != 0 { // a 64-bit length's most significant bit
				f.st |= wsBad
				return
			}
			f.rem = f.rem<<8 | int64(c)
		}
		f.hdr--
		if f.hdr == 0 {
			f.endHeader()
		}
	}
}

func (f *frames) endHeader() {
	if f.st&wsCloseHdr != 0 {
		f.st |= wsCloseSeen
	}
	f.st &^= wsCtrl | wsCloseHdr | wsMasked
}

// skipHTTPHead returns b without the HTTP response head that starts it, if
// it starts with one (the 101 the engine writes before the backend's first
// frame; no frame can start with "HTTP/": 'H' would be a fragmented control
// frame). ok is false when the head does not end in b.
func skipHTTPHead(b []byte) (rest []byte, ok bool) {
	if !bytes.HasPrefix(b, []byte("HTTP/")) {
		return b, true
	}
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return nil, false
	}
	return b[i+4:], true
}

// Close frames. Codes (RFC 6455 §7.4.1).
const (
	CodeGoingAway      uint16 = 1001 // to the client on idle timeout; always to the backend
	CodeServiceRestart uint16 = 1012 // to the client on rebalance, drain and shutdown
)

// closeCode is the code the client gets for a close with reason r.
func closeCode(r Reason) uint16 {
	if r == IdleTimeout {
		return CodeGoingAway
	}
	return CodeServiceRestart
}

// appendCloseFrame appends a close frame with code: unmasked (toward the
// client), or masked with key (toward the backend, as a client must).
func appendCloseFrame(dst []byte, code uint16, masked bool, key [4]byte) []byte {
	if !masked {
		return append(dst, 0x88, 0x02, byte(code>>8), byte(code))
	}
	return append(dst, 0x88, 0x82, key[0], key[1], key[2], key[3], byte(code>>8)^key[0], byte(code)^key[1])
}
