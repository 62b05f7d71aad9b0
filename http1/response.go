package http1

// Response is a parsed response head; Spans point into the buffer given to
// Parse.
type Response struct {
	Status        int
	Minor         int
	Headers       [MaxHeaders]Header
	N             int
	HeadLen       int
	ContentLength int64 // -1 when absent
	Chunked       bool
	Close         bool // backend will close: "Connection: close" or HTTP/1.0 without keep-alive

	kinds   [MaxHeaders]uint8
	f       fields
	lineEnd int // index of the CR ending the status line
}

// Parse parses a response head at the start of buf, with the same contract as
// Request.Parse. Every error it returns has Status 502 (a bad answer from a
// backend is a bad gateway). Differences from the request side: the status
// line is HTTP/1.0 or HTTP/1.1, SP, three digits 100..599, then SP and an
// optional reason phrase (a missing "SP reason" is tolerated); no Host,
// Expect or WebSocket rules; MaxLineBytes bounds the status line.
func (r *Response) Parse(buf []byte, lim *Limits) error {
	if c := r.parse(buf, lim); c != eNone {
		return c.resp()
	}
	return nil
}

func (r *Response) reset() {
	r.Status, r.Minor, r.N, r.HeadLen = 0, 0, 0, 0
	r.ContentLength, r.Chunked, r.Close = -1, false, false
	r.f = fields{}
	r.lineEnd = 0
}

func (r *Response) parse(buf []byte, lim *Limits) ecode {
	r.reset()
	maxHead, maxLine, maxHdrs := lim.norm()
	end, full := len(buf), false
	if end >= maxHead {
		end, full = maxHead, true
	}
	short := eNeedMore
	if full {
		short = eHeaderTooLarge
	}
	lend, lfull := maxLine+1, true
	if lend > end {
		lend, lfull = end, false
	}
	i, c := r.statusLine(buf, lend)
	switch c {
	case eNone:
	case eNeedMore:
		if lfull {
			return eLineTooLong
		}
		return short
	default:
		return c
	}
	if i == end {
		return short
	}
	if buf[i] != '\n' {
		return eBadLineEnd
	}
	i++
	for {
		h, next, headLen, c := nextField(buf, i, end, r.N, maxHdrs)
		if c != eNone {
			if c == eNeedMore {
				return short
			}
			return c
		}
		if headLen > 0 {
			r.HeadLen = headLen
			return r.finish(buf)
		}
		i = next
		k := kindOf(h.Name.Of(buf))
		r.Headers[r.N], r.kinds[r.N] = h, k
		r.N++
		if c := r.f.field(buf, k, h.Value); c != eNone {
			return c
		}
	}
}

// statusLine parses HTTP/1.x SP 3DIGIT [ SP reason ] CR and returns the index
// of the LF that must follow.
func (r *Response) statusLine(buf []byte, end int) (int, ecode) {
	const pat = "HTTP/0.0 000"
	for k := 0; k < len(pat); k++ {
		if k == end {
			return 0, eNeedMore
		}
		c := buf[k]
		if pat[k] == '0' {
			if c < '0' || c > '9' {
				return 0, eBadStatusLine
			}
		} else if c != pat[k] {
			return 0, eBadStatusLine
		}
	}
	if buf[5] != '1' || buf[7] > '1' {
		return 0, eVersion
	}
	r.Minor = int(buf[7] - '0')
	r.Status = int(buf[9]-'0')*100 + int(buf[10]-'0')*10 + int(buf[11]-'0')
	if r.Status < 100 || r.Status > 599 {
		return 0, eBadStatusLine
	}
	i := len(pat)
	if i == end {
		return 0, eNeedMore
	}
	if buf[i] == ' ' {
		i++
		for i < end && class[buf[i]]&cReason != 0 {
			i++
		}
		if i == end {
			return 0, eNeedMore
		}
	}
	switch buf[i] {
	case '\r':
	case '\n':
		return 0, eBadLineEnd
	default:
		return 0, eBadStatusLine
	}
	r.lineEnd = i
	return i + 1, eNone
}

func (r *Response) finish(buf []byte) ecode {
	chunked, c := r.f.framing(buf, r.Minor)
	if c != eNone {
		return c
	}
	r.Chunked = chunked
	if r.f.clSeen {
		r.ContentLength = r.f.contentLn
	}
	r.Close = r.f.connClose || (r.Minor == 0 && !r.f.connKeep)
	return eNone
}

// Get returns the first value of header name (case-insensitive). No allocation.
func (r *Response) Get(buf []byte, name string) ([]byte, bool) {
	return getHeader(buf, r.Headers[:r.N], name)
}

// Body returns how the response body is framed, given whether the request
// was HEAD: 1xx, 204, 304 and HEAD responses have none (whatever their
// headers say); then chunked; then Content-Length (BodyNone for 0); else
// BodyUntilClose (the connection layer must then close the client
// connection after the body, so pass close=true to AppendResponse).
func (r *Response) Body(head bool) BodyKind {
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return BodyNone
	case r.Chunked:
		return BodyChunked
	case r.ContentLength > 0:
		return BodyLength
	case r.ContentLength == 0:
		return BodyNone
	}
	return BodyUntilClose
}
