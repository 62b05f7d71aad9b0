package http1

// Limits bound a head. Zero (or negative) fields mean the defaults.
type Limits struct {
	MaxHeaderBytes int // whole head incl. request line and final CRLF; default 16 KiB -> ErrHeaderTooLarge (431)
	MaxLineBytes   int // request line without its CRLF; default 8 KiB -> ErrURITooLong (414)
	MaxHeaders     int // header lines; default 100, values above the MaxHeaders const are clamped -> ErrTooManyHeaders (431)
}

// Defaults for the zero Limits.
const (
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxLineBytes   = 8 << 10
	DefaultMaxHeaders     = 100
)

// maxHeadCap keeps every offset of a head inside a Span's uint32.
const maxHeadCap = 1 << 30

// MaxHeaders is the capacity of the fixed header arrays.
const MaxHeaders = 100

// MaxConnectionTokens bounds how many header names a Connection header may
// nominate as hop-by-hop (besides close, keep-alive and upgrade); more is 400.
const MaxConnectionTokens = 8

func (l *Limits) norm() (head, line, hdrs int) {
	head, line, hdrs = DefaultMaxHeaderBytes, DefaultMaxLineBytes, DefaultMaxHeaders
	if l == nil {
		return
	}
	if l.MaxHeaderBytes > 0 {
		head = min(l.MaxHeaderBytes, maxHeadCap)
	}
	if l.MaxLineBytes > 0 {
		line = l.MaxLineBytes
	}
	if l.MaxHeaders > 0 {
		hdrs = min(l.MaxHeaders, MaxHeaders)
	}
	return
}

// Span is an offset range into the buffer the head was parsed from. It stays
// valid as long as those bytes stay where they are.
type Span struct{ Off, Len uint32 }

// Of returns the bytes s names in buf (the buffer the head was parsed from).
func (s Span) Of(buf []byte) []byte { return buf[s.Off : s.Off+s.Len : s.Off+s.Len] }

func span(from, to int) Span { return Span{uint32(from), uint32(to - from)} }

// Header is one header line: Name as received (a token), Value trimmed of OWS.
type Header struct{ Name, Value Span }

// BodyKind says how a message body is framed.
type BodyKind uint8

const (
	BodyNone       BodyKind = iota // no body (or Content-Length: 0)
	BodyLength                     // Content-Length bytes
	BodyChunked                    // chunked; validate with ChunkScanner
	BodyUntilClose                 // responses only: until the backend closes
)

// Header kinds recognised by name; kOther for the rest.
const (
	kOther uint8 = iota
	kHost
	kContentLength
	kTransferEncoding
	kConnection
	kKeepAlive
	kProxyConnection
	kTE
	kTrailer
	kUpgrade
	kProxyAuthorization
	kProxyAuthenticate
	kExpect
	kXForwardedFor
	kXForwardedProto
	kXForwardedHost
	kXRealIP
	kForwarded
	kSecWebSocketKey
	kSecWebSocketVersion
	kSecWebSocketAccept
	kHTTP2Settings
	kFramingLookalike // content_length, transfer_encoding (any '_' for '-'): refused in requests
)

// kindOf classifies a header name (case-insensitive).
func kindOf(n []byte) uint8 {
	switch len(n) {
	case 2:
		if equalFold(n, "te") {
			return kTE
		}
	case 4:
		if equalFold(n, "host") {
			return kHost
		}
	case 6:
		if equalFold(n, "expect") {
			return kExpect
		}
	case 7:
		if equalFold(n, "upgrade") {
			return kUpgrade
		}
		if equalFold(n, "trailer") {
			return kTrailer
		}
	case 9:
		if equalFold(n, "forwarded") {
			return kForwarded
		}
		if equalFold(n, "x-real-ip") {
			return kXRealIP
		}
	case 10:
		if equalFold(n, "connection") {
			return kConnection
		}
		if equalFold(n, "keep-alive") {
			return kKeepAlive
		}
	case 14:
		if equalFold(n, "content-length") {
			return kContentLength
		}
		if equalFold(n, "http2-settings") {
			return kHTTP2Settings
		}
		if lookalike(n, "content-length") {
			return kFramingLookalike
		}
	case 15:
		if equalFold(n, "x-forwarded-for") {
			return kXForwardedFor
		}
	case 16:
		if equalFold(n, "x-forwarded-host") {
			return kXForwardedHost
		}
		if equalFold(n, "proxy-connection") {
			return kProxyConnection
		}
	case 17:
		if equalFold(n, "transfer-encoding") {
			return kTransferEncoding
		}
		if equalFold(n, "x-forwarded-proto") {
			return kXForwardedProto
		}
		if equalFold(n, "sec-websocket-key") {
			return kSecWebSocketKey
		}
		if lookalike(n, "transfer-encoding") {
			return kFramingLookalike
		}
	case 18:
		if equalFold(n, "proxy-authenticate") {
			return kProxyAuthenticate
		}
	case 19:
		if equalFold(n, "proxy-authorization") {
			return kProxyAuthorization
		}
	case 20:
		if equalFold(n, "sec-websocket-accept") {
			return kSecWebSocketAccept
		}
	case 21:
		if equalFold(n, "sec-websocket-version") {
			return kSecWebSocketVersion
		}
	}
	return kOther
}

// lookalike reports whether n spells the lower-case name s with at least one
// '-' written as '_' (case-insensitive). Some servers (CGI, PHP, Rails
// behind a gateway that maps '_' to '-') read such a name as s: a request
// whose framing they would read differently from us.
func lookalike(n []byte, s string) bool {
	if len(n) != len(s) {
		return false
	}
	under := false
	for i := 0; i < len(n); i++ {
		if n[i] == '_' && s[i] == '-' {
			under = true
			continue
		}
		if lower(n[i]) != s[i] {
			return false
		}
	}
	return under
}

// nextField reads the header section's next line at i, looking no further
// than end: the empty line that ends the head (headLen is then the head's
// length), or a field (h, and next where the line after it starts). n is
// the number of fields read so far, of at most maxN. eNeedMore: the line is
// incomplete. Requests and responses share it; what a field means is theirs.
func nextField(buf []byte, i, end, n, maxN int) (h Header, next, headLen int, code ecode) {
	if i >= end {
		return h, 0, 0, eNeedMore
	}
	switch buf[i] {
	case '\r':
		if i+1 == end {
			return h, 0, 0, eNeedMore
		}
		if buf[i+1] != '\n' {
			return h, 0, 0, eBadLineEnd
		}
		return h, 0, i + 2, eNone
	case '\n':
		return h, 0, 0, eBadLineEnd
	case ' ', '\t':
		return h, 0, 0, eObsFold
	}
	if n == maxN {
		return h, 0, 0, eTooManyHeaders
	}
	h, next, code = scanField(buf, i, end)
	return h, next, 0, code
}

// scanField parses one header line "name:OWS value OWS CRLF" starting at i,
// looking no further than end. It returns the index after the CRLF.
// eNeedMore means the line is incomplete within end.
func scanField(buf []byte, i, end int) (h Header, next int, code ecode) {
	start := i
	for i < end && class[buf[i]]&cToken != 0 {
		i++
	}
	if i == end {
		return h, 0, eNeedMore
	}
	if buf[i] != ':' || i == start {
		return h, 0, eBadHeaderName
	}
	h.Name = span(start, i)
	i++
	for i < end && isOWS(buf[i]) {
		i++
	}
	vs := i
	for i < end && class[buf[i]]&cValue != 0 {
		i++
	}
	if i == end {
		return h, 0, eNeedMore
	}
	switch buf[i] {
	case '\r':
	case '\n':
		return h, 0, eBadLineEnd
	default:
		return h, 0, eBadHeaderValue
	}
	if i+1 == end {
		return h, 0, eNeedMore
	}
	if buf[i+1] != '\n' {
		return h, 0, eBadLineEnd
	}
	ve := i
	for ve > vs && isOWS(buf[ve-1]) {
		ve--
	}
	h.Value = span(vs, ve)
	return h, i + 2, eNone
}

// fields is the shared header-section scanner state: what Request and
// Response both learn from their header lines.
type fields struct {
	clSeen    bool
	cl        Span // first Content-Length value
	contentLn int64
	teCount   int
	teBad     bool // some Transfer-Encoding value is not a well-formed list
	teValue   Span // first Transfer-Encoding value
	connClose bool
	connKeep  bool
	connUpg   bool
	nconn     int
	conn      [MaxConnectionTokens]Span // other names listed in Connection
}

// field applies the framing/connection semantics of one header line that
// both sides share. It returns a non-zero code to reject the head.
func (f *fields) field(buf []byte, kind uint8, v Span) ecode {
	val := v.Of(buf)
	switch kind {
	case kContentLength:
		if f.clSeen {
			// A repeat is accepted only when byte-identical (as net/http does).
			if string(val) != string(f.cl.Of(buf)) {
				return eBadContentLength
			}
			return eNone
		}
		n, ok := parseContentLength(val)
		if !ok {
			return eBadContentLength
		}
		f.clSeen, f.cl, f.contentLn = true, v, n
	case kTransferEncoding:
		if f.teCount == 0 {
			f.teValue = v
		}
		f.teCount++
		if !validCodingList(val) {
			return eBadTransferEncoding
		}
	case kConnection:
		return f.connection(buf, v)
	}
	return eNone
}

// framing checks Transfer-Encoding against Content-Length and the version;
// it reports whether the message is chunked.
func (f *fields) framing(buf []byte, minor int) (chunked bool, code ecode) {
	if f.teCount == 0 {
		return false, eNone
	}
	if minor == 0 {
		return false, eTEHTTP10
	}
	if f.clSeen {
		return false, eTEWithCL
	}
	if f.teCount != 1 || !equalFold(f.teValue.Of(buf), "chunked") {
		return false, eUnknownTransferCoding
	}
	return true, eNone
}

// parseContentLength accepts 1*DIGIT below 2^62.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	const limit = 1<<62 - 1
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// connection parses a Connection value: a comma list of tokens (empty
// elements ignored, RFC 9110 5.6.1).
func (f *fields) connection(buf []byte, v Span) ecode {
	val := v.Of(buf)
	for i := 0; i <= len(val); {
		s, e, next := listElem(val, i)
		i = next
		if s == e {
			continue
		}
		tok := val[s:e]
		if !allToken(tok) {
			return eBadConnection
		}
		switch {
		case equalFold(tok, "close"):
			f.connClose = true
		case equalFold(tok, "keep-alive"):
			f.connKeep = true
		case equalFold(tok, "upgrade"):
			f.connUpg = true
		default:
			if f.nconn == MaxConnectionTokens {
				return eBadConnection
			}
			f.conn[f.nconn] = Span{v.Off + uint32(s), uint32(e - s)}
			f.nconn++
		}
	}
	return eNone
}

// listElem returns the bounds of the comma-separated element of v that starts
// at i, trimmed of OWS, and the index after its comma (len(v)+1 at the end).
// It does not understand quoted strings; callers use it only for token lists.
func listElem(v []byte, i int) (s, e, next int) {
	for i < len(v) && isOWS(v[i]) {
		i++
	}
	s = i
	for i < len(v) && v[i] != ',' {
		i++
	}
	e = i
	for e > s && isOWS(v[e-1]) {
		e--
	}
	return s, e, i + 1
}

// hasToken reports whether the comma list v has an element equal to tok
// (case-insensitive).
func hasToken(v []byte, tok string) bool {
	for i := 0; i <= len(v); {
		s, e, next := listElem(v, i)
		i = next
		if equalFold(v[s:e], tok) {
			return true
		}
	}
	return false
}

// validCodingList reports whether v is a well-formed transfer-coding list
// (RFC 9112 7, RFC 9110 5.6): 1#( token *( OWS ";" OWS token "=" ( token /
// quoted-string ) ) ), empty elements allowed but at least one element.
func validCodingList(v []byte) bool {
	i, n, elems := 0, len(v), 0
	ows := func() {
		for i < n && isOWS(v[i]) {
			i++
		}
	}
	token := func() bool {
		s := i
		for i < n && isToken(v[i]) {
			i++
		}
		return i > s
	}
	for {
		ows()
		if i < n && v[i] == ',' {
			i++
			continue
		}
		if i == n {
			return elems > 0
		}
		if !token() {
			return false
		}
		elems++
		for {
			ows()
			if i == n {
				return true
			}
			if v[i] == ',' {
				i++
				break
			}
			if v[i] != ';' {
				return false
			}
			i++
			ows()
			if !token() {
				return false
			}
			if i == n || v[i] != '=' {
				return false
			}
			i++
			if i < n && v[i] == '"' {
				i++
				for {
					if i == n {
						return false
					}
					c := v[i]
					i++
					if c == '"' {
						break
					}
					if c == '\\' {
						if i == n {
							return false
						}
						i++
					}
				}
			} else if !token() {
				return false
			}
		}
	}
}

// validHost reports whether h is uri-host [ ":" port ] (RFC 3986 3.2.2):
// a reg-name of unreserved / sub-delims (pct-encoding rejected), a dotted
// IPv4 address (covered by reg-name), or an IPv6 literal in brackets
// (IPvFuture and zones rejected); port is at most 5 digits, <= 65535, and
// may be empty. An empty h is valid (RFC 9110 7.2 allows an empty Host);
// an empty host with a port is not.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	i := 0
	if h[0] == '[' {
		j := 1
		for j < len(h) && h[j] != ']' {
			j++
		}
		if j == len(h) || !validIPv6(h[1:j]) {
			return false
		}
		i = j + 1
	} else {
		for i < len(h) && class[h[i]]&cHost != 0 {
			i++
		}
		if i == 0 {
			return false
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' {
		return false
	}
	port := h[i+1:]
	if len(port) > 5 {
		return false
	}
	p := 0
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
		p = p*10 + int(c-'0')
	}
	return p <= 65535
}

// validIPv6 reports whether s is an IPv6address (RFC 3986 3.2.2), with an
// optional dotted IPv4 tail; no zone.
func validIPv6(s []byte) bool {
	n := len(s)
	if n < 2 {
		return false
	}
	groups, dbl, i := 0, false, 0
	if s[0] == ':' {
		if s[1] != ':' {
			return false
		}
		dbl, i = true, 2
		if i == n {
			return true
		}
	}
	for {
		j := i
		for j < n && isHex(s[j]) {
			j++
		}
		if j < n && s[j] == '.' {
			if !validIPv4(s[i:]) {
				return false
			}
			groups += 2
			break
		}
		if j == i || j-i > 4 {
			return false
		}
		groups++
		if j == n {
			break
		}
		if s[j] != ':' {
			return false
		}
		j++
		if j == n {
			return false
		}
		if s[j] == ':' {
			if dbl {
				return false
			}
			dbl = true
			j++
			if j == n {
				break
			}
		}
		i = j
	}
	if dbl {
		return groups <= 7
	}
	return groups == 8
}

// validIPv4 reports whether s is dotted-decimal IPv4 without leading zeros.
func validIPv4(s []byte) bool {
	parts, v, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || v > 255 {
				return false
			}
			parts++
			v, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || (digits == 1 && v == 0) || digits == 3 {
			return false
		}
		v = v*10 + int(c-'0')
		digits++
	}
	return parts == 4
}

// getHeader returns the first value of name among hs[:n].
func getHeader(buf []byte, hs []Header, name string) ([]byte, bool) {
	for i := range hs {
		if equalFold(hs[i].Name.Of(buf), name) {
			return hs[i].Value.Of(buf), true
		}
	}
	return nil, false
}
