package http1

// Request is a parsed request head. All Spans point into the buffer given to
// Parse; the Request is only meaningful together with that buffer.
// A Request is about 2 KiB: reuse one per connection. Do not copy one: it
// owns a buffer (the normalized path) that Parse reuses.
type Request struct {
	Method, Target Span
	Minor          int // HTTP/1.<Minor>, 0 or 1
	Headers        [MaxHeaders]Header
	N              int  // headers used
	HeadLen        int  // bytes of the head including the final empty line (and any leading empty lines skipped)
	Host           Span // Host header value; for an HTTP/1.0 absolute-form target without Host, the target's authority
	ContentLength  int64
	Chunked        bool // Transfer-Encoding: chunked (the only accepted coding)
	Close          bool // "Connection: close", or HTTP/1.0 without "Connection: keep-alive"
	Expect100      bool // HTTP/1.1 "Expect: 100-continue"; answer 100 only when Body() != BodyNone
	Upgrade        bool // HTTP/1.1 with an Upgrade header (any protocol) and the Connection option "upgrade"
	WebSocket      bool // a complete, valid RFC 6455 client handshake
	WSKey          Span // Sec-WebSocket-Key value when WebSocket
	// Query is the target's query with its "?" (from the first "?" to the
	// end of the target, as received), Len 0 when there is none.
	Query Span

	kinds    [MaxHeaders]uint8 // kindOf each header name
	f        fields
	absForm  bool
	auth     Span // authority of an absolute-form target
	hostSet  bool
	hasPath  bool   // origin-form or absolute-form (not "*")
	star     bool   // forwarded as "*": OPTIONS *, or OPTIONS absolute-form with no path and no query
	pathNorm bool   // the normalized path is npath, not rawPath
	rawPath  Span   // the target's path as received (empty for "http://h")
	query    uint32 // offset of the target's first '?' (its end when none)
	pathAttn bool   // the path may not be normal: it has '%', '\\' or "/."
	npath    []byte // normalized path when it differs from rawPath; kept across Parses
}

// Parse parses a request head at the start of buf. It returns ErrNeedMore
// when buf holds no complete head yet, but a limit error (431, 414) as soon
// as a limit is provably exceeded and a syntax error as soon as a complete
// prefix of buf is invalid, so garbage is refused without waiting. The result
// for a prefix of buf is always ErrNeedMore or the result for buf.
// On success r describes buf[:r.HeadLen]. Parse resets r first.
// Up to 4 empty lines (CRLF) before the request line are skipped (RFC 9112 2.2).
//
// Parse also normalizes the target's path (AppendNormalPath) as soon as the
// request line is complete; a path that is refused is the error (400). No
// allocation when the path is already normal (PathIsNormal, the common
// case); otherwise the normalized path goes to a buffer r keeps across
// Parses, allocated only when it must grow.
func (r *Request) Parse(buf []byte, lim *Limits) error {
	if c := r.parse(buf, lim); c != eNone {
		return c.req()
	}
	return nil
}

func (r *Request) reset() {
	r.Method, r.Target, r.Minor, r.N, r.HeadLen = Span{}, Span{}, 0, 0, 0
	r.Host, r.ContentLength = Span{}, -1
	r.Chunked, r.Close, r.Expect100, r.Upgrade, r.WebSocket = false, false, false, false, false
	r.WSKey = Span{}
	r.f = fields{}
	r.absForm, r.auth, r.hostSet = false, Span{}, false
	r.Query, r.rawPath = Span{}, Span{}
	r.hasPath, r.star, r.pathNorm = false, false, false
	// query and pathAttn are set by requestLine before target reads them;
	// npath is read only when pathNorm.
}

// maxLeadingCRLF is how many empty lines before a request line are skipped.
const maxLeadingCRLF = 4

func (r *Request) parse(buf []byte, lim *Limits) ecode {
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

	i := 0
	for k := 0; k < maxLeadingCRLF && i < end && buf[i] == '\r'; k++ {
		if i+1 == end {
			return short
		}
		if buf[i+1] != '\n' {
			return eBadLineEnd
		}
		i += 2
	}

	// Request line, scanned no further than maxLine+1 bytes so that an
	// overlong line is 414 whatever follows.
	lend, lfull := i+maxLine+1, true
	if lend > end {
		lend, lfull = end, false
	}
	i, c := r.requestLine(buf, i, lend)
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
	if c := r.target(buf); c != eNone {
		return c
	}

	// Header section.
	var wsKeys, wsVers int
	var wsVer Span
	expectBad := false
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
			return r.finish(buf, wsKeys, wsVers, wsVer, expectBad)
		}
		i = next
		k := kindOf(h.Name.Of(buf))
		r.Headers[r.N], r.kinds[r.N] = h, k
		r.N++
		switch k {
		case kOther:
		case kFramingLookalike:
			return eBadHeaderName
		case kHost:
			if r.hostSet {
				return eDuplicateHost
			}
			if !validHost(h.Value.Of(buf)) {
				return eBadHost
			}
			r.hostSet, r.Host = true, h.Value
		case kExpect:
			if !equalFold(h.Value.Of(buf), "100-continue") {
				expectBad = true
			} else if r.Minor == 1 {
				r.Expect100 = true
			}
		case kUpgrade:
			r.Upgrade = true
			if r.Minor == 1 && !validProtocolList(h.Value.Of(buf)) {
				return eBadHeaderValue
			}
		case kSecWebSocketKey:
			wsKeys++
			r.WSKey = h.Value
		case kSecWebSocketVersion:
			wsVers++
			wsVer = h.Value
		default:
			if c := r.f.field(buf, k, h.Value); c != eNone {
				return c
			}
		}
	}
}

// requestLine parses METHOD SP TARGET SP HTTP/d.d CR, looking no further than
// end, and returns the index of the LF that must follow.
func (r *Request) requestLine(buf []byte, i, end int) (int, ecode) {
	start := i
	for i < end && isToken(buf[i]) {
		i++
	}
	if i == end {
		return 0, eNeedMore
	}
	if buf[i] != ' ' || i == start {
		if buf[i] == '\n' {
			return 0, eBadLineEnd
		}
		return 0, eBadMethod
	}
	r.Method = span(start, i)
	i++
	start = i
	// The target: cTarget bytes and pct-encoded. On the way, note where the
	// query starts and whether the path holds a byte that may make it not
	// normal ('%', '\\', '.' after '/'), so that setPath looks at a normal
	// path no further.
	q, attn := -1, false
scan:
	for i < end {
		c := buf[i]
		if class[c]&cPathPlain != 0 {
			i++
			continue
		}
		switch c {
		case '?':
			if q < 0 {
				q = i
			}
		case '.':
			attn = attn || q < 0 && buf[i-1] == '/'
		case '\\':
			attn = attn || q < 0
		case '%':
			attn = attn || q < 0
			// pct-encoded = "%" HEXDIG HEXDIG
			for k := 1; k <= 2; k++ {
				if i+k == end {
					return 0, eNeedMore
				}
				if !isHex(buf[i+k]) {
					return 0, eBadTarget
				}
			}
			i += 2
		default:
			break scan
		}
		i++
	}
	if i == end {
		return 0, eNeedMore
	}
	switch {
	case buf[i] == '\n':
		return 0, eBadLineEnd
	case buf[i] == '\r' && i == start:
		return 0, eBadRequestLine
	case buf[i] == '\r':
		return 0, eBadRequestLine // HTTP/0.9 style line without version
	case buf[i] != ' ':
		return 0, eBadTarget
	case i == start:
		return 0, eBadRequestLine // two spaces
	}
	r.Target = span(start, i)
	if q < 0 {
		q = i
	}
	r.query, r.pathAttn = uint32(q), attn
	i++
	// HTTP-version = "HTTP/" DIGIT "." DIGIT, then CR.
	const pat = "HTTP/0.0"
	for k := 0; k < len(pat); k++ {
		if i+k == end {
			return 0, eNeedMore
		}
		c := buf[i+k]
		if pat[k] == '0' {
			if c < '0' || c > '9' {
				return 0, eBadVersion
			}
		} else if c != pat[k] {
			return 0, eBadVersion
		}
	}
	major, minor := buf[i+5]-'0', buf[i+7]-'0'
	i += len(pat)
	if i == end {
		return 0, eNeedMore
	}
	switch buf[i] {
	case '\r':
	case '\n':
		return 0, eBadLineEnd
	default:
		return 0, eBadVersion
	}
	if major != 1 || minor > 1 {
		return 0, eVersion
	}
	r.Minor = int(minor)
	return i + 1, eNone
}

// target checks the form of the request-target against the method
// (RFC 9112 3.2).
func (r *Request) target(buf []byte) ecode {
	t := r.Target.Of(buf)
	connect := string(r.Method.Of(buf)) == "CONNECT"
	switch {
	case t[0] == '/':
		if connect {
			return eBadTarget
		}
		return r.setPath(buf, r.Target.Off)
	case t[0] == '*':
		if len(t) != 1 || string(r.Method.Of(buf)) != "OPTIONS" {
			return eBadTarget
		}
		r.star = true
		return eNone
	case connect:
		// authority-form: host ":" port, port required.
		c := lastColon(t)
		if c <= 0 || c == len(t)-1 || !validHost(t) {
			return eBadTarget
		}
		return eConnect
	}
	// absolute-form: ("http" / "https") "://" authority path-abempty [ "?" query ]
	var rest []byte
	switch {
	case len(t) > 7 && equalFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && equalFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return eBadTarget
	}
	a := 0
	for a < len(rest) && rest[a] != '/' && rest[a] != '?' {
		a++
	}
	if a == 0 {
		return eBadHost
	}
	auth := rest[:a]
	if !validHost(auth) {
		return eBadHost
	}
	off := r.Target.Off + uint32(len(t)-len(rest))
	r.absForm, r.auth = true, Span{off, uint32(a)}
	if a == len(rest) && string(r.Method.Of(buf)) == "OPTIONS" {
		// "OPTIONS http://h": the last proxy sends "*" (RFC 9112 3.2.4).
		r.star = true
		return eNone
	}
	return r.setPath(buf, off+uint32(a))
}

// setPath records the path (from off up to the first '?') and the query
// (the rest) of the target, and normalizes the path when it is not normal.
func (r *Request) setPath(buf []byte, off uint32) ecode {
	end, q := r.Target.Off+r.Target.Len, r.query // requestLine found q
	r.hasPath, r.rawPath, r.Query = true, Span{off, q - off}, Span{q, end - q}
	p := r.rawPath.Of(buf)
	if len(p) > 0 && (!r.pathAttn || PathIsNormal(p)) {
		return eNone
	}
	if cap(r.npath) <= len(p) {
		r.npath = make([]byte, 0, max(len(p)+1, 64))
	}
	r.pathNorm = true
	if len(p) == 0 { // "http://h" or "http://h?q": the path is "/"
		r.npath = append(r.npath[:0], '/')
		return eNone
	}
	var c ecode
	r.npath, c = appendNormalPath(r.npath[:0], p)
	return c
}

// Path returns the target's normalized path (see AppendNormalPath): a
// subslice of buf when the path as received is already normal, else a
// buffer of r that the next Parse overwrites. For an absolute-form target it
// is the path after the authority ("/" when empty). It is nil when the
// target has no path: "*" (OPTIONS), and "OPTIONS http://h", which is sent
// on as "*". Every decision on the path (route, strip, origin, rate limit,
// Socket.IO detection) should be made on Path, since it is what the backend
// is sent (AppendRequest, AppendTarget). No allocation.
func (r *Request) Path(buf []byte) []byte {
	switch {
	case !r.hasPath:
		return nil
	case r.pathNorm:
		return r.npath
	}
	return r.rawPath.Of(buf)
}

// PathChanged reports whether Path differs from the path as received
// (percent-encodings decoded or upper-cased, dot segments removed, or the
// empty path of "http://h" made "/").
func (r *Request) PathChanged() bool { return r.pathNorm }

// TargetChanged reports whether the target AppendRequest sends (when
// Forward.Target is nil) differs from the one received: the path changed, or
// the target was absolute-form (sent on in origin form, or as "*").
func (r *Request) TargetChanged() bool { return r.pathNorm || r.absForm }

// AppendTarget appends the request target to send upstream, in origin form:
// Path without its first stripLen bytes, with a "/" put back when what
// remains is empty or does not start with "/" (as balancer.AppendStripped),
// then Query as received. stripLen is clamped to [0, len(Path)]. For a target
// with no path (see Path) it appends "*". It appends at most len(r.Target)
// bytes and allocates only when dst lacks room.
func (r *Request) AppendTarget(dst, buf []byte, stripLen int) []byte {
	if r.star || !r.hasPath {
		return append(dst, '*')
	}
	p := r.Path(buf)
	stripLen = min(max(stripLen, 0), len(p))
	rest := p[stripLen:]
	if stripLen > 0 && (len(rest) == 0 || rest[0] != '/') {
		dst = append(dst, '/')
	}
	dst = append(dst, rest...)
	return append(dst, r.Query.Of(buf)...)
}

func lastColon(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ':' {
			return i
		}
		if b[i] == ']' {
			return -1
		}
	}
	return -1
}

// finish applies the checks that need the whole head.
func (r *Request) finish(buf []byte, wsKeys, wsVers int, wsVer Span, expectBad bool) ecode {
	if r.absForm {
		if !r.hostSet {
			r.Host = r.auth
		} else if !equalFoldBytes(r.auth.Of(buf), r.Host.Of(buf)) {
			return eHostMismatch
		}
	}
	if r.Minor == 1 && !r.hostSet {
		return eMissingHost
	}
	chunked, c := r.f.framing(buf, r.Minor)
	if c != eNone {
		return c
	}
	r.Chunked = chunked
	if r.f.clSeen {
		r.ContentLength = r.f.contentLn
	}
	if expectBad && r.Minor == 1 {
		return eExpectation
	}
	r.Close = r.f.connClose || (r.Minor == 0 && !r.f.connKeep)
	// An upgrade is requested only by HTTP/1.1 with both Upgrade and the
	// "upgrade" connection option (RFC 9110 7.8); an unpaired Upgrade or
	// option, or either in HTTP/1.0, is ignored (and not forwarded).
	r.Upgrade = r.Upgrade && r.f.connUpg && r.Minor == 1
	if !r.Upgrade {
		r.WSKey = Span{}
		return eNone
	}
	// Upgrade present: a handshake only if it asks for websocket.
	ws := false
	for i := 0; i < r.N; i++ {
		if r.kinds[i] == kUpgrade && hasToken(r.Headers[i].Value.Of(buf), "websocket") {
			ws = true
			break
		}
	}
	if !ws {
		r.WSKey = Span{}
		return eNone
	}
	if string(r.Method.Of(buf)) != "GET" || r.Chunked || r.ContentLength > 0 {
		return eBadWebSocket
	}
	if wsKeys != 1 || !validWSKey(r.WSKey.Of(buf)) {
		return eBadWebSocketKey
	}
	if wsVers != 1 || string(wsVer.Of(buf)) != "13" {
		return eBadWebSocketVersion
	}
	r.WebSocket = true
	return eNone
}

// validProtocolList reports whether v is a list of protocol = token [ "/" token ]
// (RFC 9110 7.8), empty elements allowed.
func validProtocolList(v []byte) bool {
	for i := 0; i <= len(v); {
		s, e, next := listElem(v, i)
		i = next
		el := v[s:e]
		if len(el) == 0 {
			continue
		}
		slash := -1
		for j, c := range el {
			if c == '/' {
				slash = j
				break
			}
		}
		if slash < 0 {
			if !allToken(el) {
				return false
			}
		} else if !allToken(el[:slash]) || !allToken(el[slash+1:]) {
			return false
		}
	}
	return true
}

// validWSKey reports whether k is base64 (standard alphabet, padded) of 16
// bytes: 22 alphabet characters then "==". Non-zero padding bits are
// tolerated, as by Go's encoding/base64 in its default mode.
func validWSKey(k []byte) bool {
	if len(k) != 24 || k[22] != '=' || k[23] != '=' {
		return false
	}
	for _, c := range k[:22] {
		if !isAlnum(c) && c != '+' && c != '/' {
			return false
		}
	}
	return true
}

// IsMethod reports whether the method is m (case-sensitive, as methods are).
func (r *Request) IsMethod(buf []byte, m string) bool {
	return string(r.Method.Of(buf)) == m
}

// Get returns the first value of header name (case-insensitive). No allocation.
func (r *Request) Get(buf []byte, name string) ([]byte, bool) {
	return getHeader(buf, r.Headers[:r.N], name)
}

// Body returns how the request body is framed: BodyChunked, BodyLength for a
// Content-Length above zero, else BodyNone (never BodyUntilClose).
func (r *Request) Body() BodyKind {
	switch {
	case r.Chunked:
		return BodyChunked
	case r.ContentLength > 0:
		return BodyLength
	}
	return BodyNone
}
