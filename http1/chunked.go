package http1

// Bounds of the chunked framing.
const (
	// MaxChunkLineBytes bounds a chunk-size line with its extensions (CRLF
	// excluded). It stays under net/http's 4096-byte chunk line limit so a Go
	// backend accepts what we pass on.
	MaxChunkLineBytes = 4000
	// MaxTrailerBytes bounds the trailer section after the last chunk,
	// including its final CRLF; net/http refuses trailers that do not fit
	// its 4 KiB read buffer.
	MaxTrailerBytes = 4096
)

// Chunk scanner states.
const (
	csSize         uint8 = iota // in chunk-size hex digits
	csExtBWS                    // BWS after an ext value, before ";"
	csExtPreName                // after ";", before ext name
	csExtName                   // in ext name
	csExtPreEq                  // BWS after ext name, before "=" or ";"
	csExtPreVal                 // after "=", before value
	csExtTokVal                 // in token value
	csExtQuoted                 // inside quoted-string
	csExtQPair                  // after backslash in quoted-string
	csExtAfterQ                 // right after closing quote
	csSizeLF                    // after CR of size line
	csData                      // in chunk data
	csDataCR                    // expecting CR after data
	csDataLF                    // expecting LF after data
	csTrailerStart              // at the start of a trailer line (or the final CRLF)
	csTrailerName               // in a trailer field name
	csTrailerValue              // in a trailer field value
	csTrailerLF                 // after CR of a trailer line
	csEndLF                     // after CR of the final empty line
	csDone
	csError
)

// ChunkScanner validates a chunked body (RFC 9112 7.1) incrementally while
// the caller forwards the raw bytes unchanged. It keeps no reference to the
// bytes it is given. The zero value is ready; Reset makes it reusable.
//
// Strictness: chunk-size is 1 to 16 HEXDIG with no sign, prefix or
// whitespace, below 2^62; chunk extensions follow the RFC grammar (BWS
// allowed around ";" and "=", except right after the size, which net/http
// refuses, and before the CRLF, which the grammar does not allow), and a size line with them is at most
// MaxChunkLineBytes; every line ends in CRLF (bare CR or LF rejected); data is
// followed by CRLF; trailer fields are checked like header lines (token name,
// colon, valid value, no obs-fold) and the trailer section is at most
// MaxTrailerBytes; the framing overhead rule of net/http (at most 16 bytes
// plus twice the data per chunk, 16 KiB of slack) is enforced. Errors are
// *Error with Status 400.
type ChunkScanner struct {
	state   uint8
	digits  uint8  // hex digits of the current size
	size    uint64 // current chunk size, then bytes left in its data
	line    int    // bytes of the current size line / trailer section so far
	payload int64
	excess  int64
	err     *Error
}

// Reset prepares s for a new body.
func (s *ChunkScanner) Reset() { *s = ChunkScanner{} }

// Payload returns the decoded data bytes seen so far.
func (s *ChunkScanner) Payload() int64 { return s.payload }

// Committed returns a lower bound of the payload of a valid body: the data
// bytes seen plus what the current chunk-size line has announced and not yet
// arrived. A body limit can be enforced with it as soon as a chunk is
// announced, before its data is read.
func (s *ChunkScanner) Committed() int64 { return s.payload + int64(s.size) }

// Done reports whether the whole body has been consumed.
func (s *ChunkScanner) Done() bool { return s.state == csDone }

// Scan consumes a prefix of p. n is how many bytes of p belong to the chunked
// body (forward them); done is true once the last chunk and the trailer
// section's final CRLF have been consumed (n stops there: pipelined bytes
// after it are not consumed). err is an *Error; after one, Scan keeps
// returning it. Scan with more data continues where it left off.
func (s *ChunkScanner) Scan(p []byte) (n int, done bool, err error) {
	if s.state == csDone {
		return 0, true, nil
	}
	if s.state == csError {
		return 0, false, s.err
	}
	i := 0
	for i < len(p) {
		c := p[i]
		switch s.state {
		case csData:
			k := len(p) - i
			if uint64(k) > s.size {
				k = int(s.size)
			}
			i += k
			s.size -= uint64(k)
			s.payload += int64(k)
			if s.size == 0 {
				s.state = csDataCR
			}
			continue
		case csDataCR:
			if c != '\r' {
				return s.fail(i, ErrBadChunk)
			}
			s.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return s.fail(i, ErrBadChunk)
			}
			s.state, s.digits, s.size, s.line = csSize, 0, 0, 0
			i++
			continue
		case csSize:
			if isHex(c) {
				if s.digits == 16 || s.size>>58 != 0 {
					return s.fail(i, ErrBadChunk)
				}
				s.size = s.size<<4 | uint64(unhex(c))
				s.digits++
				break
			}
			if s.digits == 0 {
				return s.fail(i, ErrBadChunk)
			}
			switch c {
			case '\r':
				s.state = csSizeLF
			case ';':
				// No BWS between size and ";": net/http refuses it.
				s.state = csExtPreName
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtBWS:
			switch c {
			case ' ', '\t':
			case ';':
				s.state = csExtPreName
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtPreName:
			if isToken(c) {
				s.state = csExtName
			} else if !isOWS(c) {
				return s.fail(i, ErrBadChunk)
			}
		case csExtName:
			switch {
			case isToken(c):
			case c == '=':
				s.state = csExtPreVal
			case c == ';':
				s.state = csExtPreName
			case c == '\r':
				s.state = csSizeLF
			case isOWS(c):
				s.state = csExtPreEq
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtPreEq:
			switch c {
			case ' ', '\t':
			case '=':
				s.state = csExtPreVal
			case ';':
				s.state = csExtPreName
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtPreVal:
			switch {
			case isOWS(c):
			case c == '"':
				s.state = csExtQuoted
			case isToken(c):
				s.state = csExtTokVal
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtTokVal:
			switch {
			case isToken(c):
			case c == ';':
				s.state = csExtPreName
			case c == '\r':
				s.state = csSizeLF
			case isOWS(c):
				s.state = csExtBWS
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtQuoted:
			switch {
			case c == '"':
				s.state = csExtAfterQ
			case c == '\\':
				s.state = csExtQPair
			case c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f):
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csExtQPair:
			if c != '\t' && c != ' ' && (c < 0x21 || c == 0x7f) {
				return s.fail(i, ErrBadChunk)
			}
			s.state = csExtQuoted
		case csExtAfterQ:
			switch {
			case c == ';':
				s.state = csExtPreName
			case c == '\r':
				s.state = csSizeLF
			case isOWS(c):
				s.state = csExtBWS
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csSizeLF:
			if c != '\n' {
				return s.fail(i, ErrBadChunk)
			}
			// net/http's overhead rule: the size line and the data's CRLF
			// count, 16 bytes plus twice the data are free.
			s.excess += int64(s.line) + 1 // s.line counted the CR
			s.excess -= 16 + 2*int64(s.size)
			s.excess = max(s.excess, 0)
			if s.excess > 16<<10 {
				return s.fail(i, ErrChunkOverhead)
			}
			s.line = 0
			if s.size == 0 {
				s.state = csTrailerStart
			} else {
				s.state = csData
			}
			i++
			continue
		case csTrailerStart:
			switch {
			case c == '\r':
				s.state = csEndLF
			case isToken(c):
				s.state = csTrailerName
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csTrailerName:
			switch {
			case isToken(c):
			case c == ':':
				s.state = csTrailerValue
			default:
				return s.fail(i, ErrBadChunk)
			}
		case csTrailerValue:
			switch {
			case c == '\r':
				s.state = csTrailerLF
			case class[c]&cValue == 0:
				return s.fail(i, ErrBadChunk)
			}
		case csTrailerLF:
			if c != '\n' {
				return s.fail(i, ErrBadChunk)
			}
			s.state = csTrailerStart
		case csEndLF:
			if c != '\n' {
				return s.fail(i, ErrBadChunk)
			}
			s.state = csDone
			return i + 1, true, nil
		}
		// Bytes of a size line (with its CR) and of the trailer section
		// (all but the final LF) count against their bounds.
		if s.state < csData {
			s.line++
			if s.line > MaxChunkLineBytes+1 || (s.line > MaxChunkLineBytes && s.state != csSizeLF) {
				return s.fail(i, ErrChunkLineTooLong)
			}
		} else if s.state >= csTrailerStart {
			s.line++
			if s.line >= MaxTrailerBytes {
				return s.fail(i, ErrTrailerTooLarge)
			}
		}
		i++
	}
	return i, false, nil
}

func (s *ChunkScanner) fail(i int, e *Error) (int, bool, error) {
	s.state, s.err = csError, e
	return i, false, e
}
