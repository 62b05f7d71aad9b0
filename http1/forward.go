package http1

// Forward says how to rewrite a request for the upstream.
type Forward struct {
	ClientIP []byte // textual client address, no port; bytes that cannot appear in an address are dropped
	Proto    string // "http" or "https"
	Trusted  bool   // peer is a trusted proxy: append to the client's X-Forwarded-For and Forwarded and keep its X-Forwarded-Proto/Host and X-Real-IP; otherwise replace them
	// Target, when non-nil, replaces the request target in the request line
	// (a route that strips its prefix: build it with Request.AppendTarget);
	// the caller keeps it valid (visible ASCII, origin form). nil sends
	// Request.AppendTarget(dst, buf, 0) when TargetChanged, else the target
	// as received (the two are then the same bytes).
	Target []byte
}

// hopByHop reports whether headers of kind k are never forwarded as
// received. Upgrade and Connection are restored by AppendRequest for a
// WebSocket handshake and kept by AppendResponse for a 101.
func hopByHop(k uint8) bool {
	switch k {
	case kConnection, kKeepAlive, kProxyConnection, kTE, kTrailer, kUpgrade,
		kProxyAuthorization, kProxyAuthenticate, kHTTP2Settings:
		return true
	}
	return false
}

// protected reports whether a header of kind k is kept even when Connection
// names it: dropping framing or Host would change what the message means.
func protected(k uint8) bool {
	return k == kHost || k == kContentLength || k == kTransferEncoding
}

// named reports whether name is listed in Connection.
func (f *fields) named(buf, name []byte) bool {
	for i := 0; i < f.nconn; i++ {
		if equalFoldBytes(f.conn[i].Of(buf), name) {
			return true
		}
	}
	return false
}

// MaxAppendRequest returns an upper bound of the bytes AppendRequest appends
// for r and f: with cap(dst)-len(dst) at least this, it does not allocate.
func MaxAppendRequest(r *Request, f *Forward) int {
	// The target sent when f.Target is nil is never longer than r.Target
	// (AppendTarget); "Host: " host CRLF is added for an HTTP/1.0
	// absolute-form request without Host.
	ip, host, proto := len(f.ClientIP), int(r.Host.Len), len(f.Proto)
	return r.HeadLen + 2*r.N + 264 + 4*ip + 4*host + 3*proto + len(f.Target)
}

// MaxAppendResponse returns an upper bound of the bytes AppendResponse (or
// AppendResponseKeepAlive) appends for resp.
func MaxAppendResponse(resp *Response) int {
	return resp.HeadLen + 2*resp.N + 64
}

// AppendRequest appends to dst the head to send upstream for r (parsed from
// buf):
//
//   - the request line with its method and version as received (an
//     HTTP/1.0 request is sent as HTTP/1.0, with "Connection: keep-alive"
//     added so the upstream connection can be reused), and as target
//     f.Target when non-nil, else the normalized path and the query as
//     received (r.AppendTarget(dst, buf, 0)): an absolute-form target is
//     sent in origin form (RFC 9112 3.2.1, to an origin server), or as "*"
//     for "OPTIONS http://h" (RFC 9112 3.2.4), and a path that is not
//     normal is sent normalized, so the backend sees the path every
//     decision was made on. A target that needs neither is sent unchanged;
//   - "Host: " with the target's authority first, for an absolute-form
//     request without Host (HTTP/1.0), whose target no longer carries it;
//   - headers in their order, rebuilt as "Name: value" with the name as
//     received, except: Connection, Keep-Alive, Proxy-Connection, TE,
//     Trailer, Upgrade, HTTP2-Settings, Proxy-Authorization (credentials for a proxy, never
//     for the backend) and every header named in Connection (but Host,
//     Content-Length and Transfer-Encoding are never dropped that way) are
//     removed; Expect is removed (the proxy answers 100 itself); repeated
//     identical Content-Length headers are sent once;
//   - X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and
//     Forwarded: when f.Trusted, the client's X-Forwarded-For and Forwarded
//     values are merged into one line each with our hop appended, and its
//     X-Forwarded-Proto/Host and X-Real-IP are kept (ours added only when
//     absent); otherwise all client copies are dropped and ours set.
//     X-Forwarded-Host and Forwarded's host= are left out when Host is empty;
//   - for r.WebSocket, "Connection: Upgrade" and "Upgrade: websocket"
//     (Sec-WebSocket-* headers are kept as received).
//
// It never allocates when cap(dst)-len(dst) >= MaxAppendRequest(r, f).
func AppendRequest(dst, buf []byte, r *Request, f *Forward) []byte {
	dst = append(dst, r.Method.Of(buf)...)
	dst = append(dst, ' ')
	switch {
	case f.Target != nil:
		dst = append(dst, f.Target...)
	case r.TargetChanged():
		dst = r.AppendTarget(dst, buf, 0)
	default:
		dst = append(dst, r.Target.Of(buf)...)
	}
	if r.Minor == 0 {
		dst = append(dst, " HTTP/1.0\r\n"...)
	} else {
		dst = append(dst, " HTTP/1.1\r\n"...)
	}
	if r.absForm && !r.hostSet {
		dst = appendField(dst, "Host", r.auth.Of(buf))
	}
	var haveXFP, haveXFH, haveXRIP bool
	nXFF, nFwd := 0, 0
	clDone := false
	for i := 0; i < r.N; i++ {
		h, k := r.Headers[i], r.kinds[i]
		if r.f.nconn > 0 && !protected(k) && r.f.named(buf, h.Name.Of(buf)) {
			continue
		}
		switch {
		case hopByHop(k) || k == kExpect:
			continue
		case k == kContentLength:
			if clDone {
				continue
			}
			clDone = true
		case k == kXForwardedFor:
			nXFF++
			continue
		case k == kForwarded:
			nFwd++
			continue
		case k == kXForwardedProto || k == kXForwardedHost || k == kXRealIP:
			if !f.Trusted {
				continue
			}
			haveXFP = haveXFP || k == kXForwardedProto
			haveXFH = haveXFH || k == kXForwardedHost
			haveXRIP = haveXRIP || k == kXRealIP
		}
		dst = appendField(dst, h.Name.Of(buf), h.Value.Of(buf))
	}
	host := r.Host.Of(buf)

	// Forwarded (RFC 7239): for=ip;host=h;proto=p
	dst = append(dst, "Forwarded: "...)
	if n := len(dst); f.Trusted && nFwd > 0 {
		if dst = r.appendJoined(dst, buf, kForwarded); len(dst) > n {
			dst = append(dst, ", "...)
		}
	}
	dst = append(dst, "for="...)
	dst = appendForwardedNode(dst, f.ClientIP)
	if len(host) > 0 {
		dst = append(dst, ";host="...)
		dst = appendForwardedValue(dst, host)
	}
	dst = append(dst, ";proto="...)
	dst = appendForwardedValue(dst, f.Proto)
	dst = append(dst, "\r\n"...)

	dst = append(dst, "X-Forwarded-For: "...)
	if n := len(dst); f.Trusted && nXFF > 0 {
		if dst = r.appendJoined(dst, buf, kXForwardedFor); len(dst) > n {
			dst = append(dst, ", "...)
		}
	}
	dst = appendIP(dst, f.ClientIP)
	dst = append(dst, "\r\n"...)
	if !haveXFH && len(host) > 0 {
		dst = appendField(dst, "X-Forwarded-Host", host)
	}
	if !haveXFP {
		dst = append(dst, "X-Forwarded-Proto: "...)
		dst = appendSafe(dst, f.Proto)
		dst = append(dst, "\r\n"...)
	}
	if !haveXRIP {
		dst = append(dst, "X-Real-IP: "...)
		dst = appendIP(dst, f.ClientIP)
		dst = append(dst, "\r\n"...)
	}
	switch {
	case r.WebSocket:
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: websocket\r\n"...)
	case r.Minor == 0:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendJoined appends the non-empty values of all headers of kind k joined
// by ", ".
func (r *Request) appendJoined(dst, buf []byte, k uint8) []byte {
	first := true
	for i := 0; i < r.N; i++ {
		if r.kinds[i] != k || r.Headers[i].Value.Len == 0 {
			continue
		}
		if r.f.nconn > 0 && r.f.named(buf, r.Headers[i].Name.Of(buf)) {
			continue
		}
		if !first {
			dst = append(dst, ", "...)
		}
		first = false
		dst = append(dst, r.Headers[i].Value.Of(buf)...)
	}
	return dst
}

func appendField[T string | []byte](dst []byte, name T, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// ipByte reports whether c may appear in a textual IP address (with a zone).
func ipByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == ':' || c == '%' || c == '_' || c == '-'
}

// appendIP appends the address bytes of ip, dropping anything else so that a
// bad ClientIP can never break the head.
func appendIP(dst, ip []byte) []byte {
	for _, c := range ip {
		if ipByte(c) {
			dst = append(dst, c)
		}
	}
	return dst
}

// appendSafe appends the token bytes of v.
func appendSafe(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if isToken(v[i]) {
			dst = append(dst, v[i])
		}
	}
	return dst
}

// appendForwardedNode appends a Forwarded node: IPv6 as "[addr]" quoted,
// IPv4 bare, "unknown" when empty.
func appendForwardedNode(dst, ip []byte) []byte {
	v6, n := false, 0
	for _, c := range ip {
		if ipByte(c) {
			n++
			v6 = v6 || c == ':'
		}
	}
	switch {
	case n == 0:
		return append(dst, "unknown"...)
	case v6:
		dst = append(dst, `"[`...)
		dst = appendIP(dst, ip)
		return append(dst, `]"`...)
	}
	return appendIP(dst, ip)
}

// appendForwardedValue appends v as a token, or as a quoted-string when it
// holds other bytes (host:port, say). v comes from a validated head.
func appendForwardedValue[T string | []byte](dst []byte, v T) []byte {
	tok := len(v) > 0
	for i := 0; i < len(v); i++ {
		tok = tok && isToken(v[i])
	}
	if tok {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		if class[c]&cValue != 0 {
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// AppendResponse appends to dst the head to send to the client for resp
// (parsed from buf):
//
//   - the status line with its version written as HTTP/1.1 (the proxy speaks
//     HTTP/1.1 to the client, RFC 9110 6.2); status code and reason as received;
//   - headers in their order as "Name: value", without Connection,
//     Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Proxy-Authenticate
//     and headers named in Connection (Content-Length and
//     Transfer-Encoding are always kept);
//   - for a 101, Connection and Upgrade are kept as received and close is
//     ignored;
//   - "Connection: close" when close is true.
//
// It never allocates when cap(dst)-len(dst) >= MaxAppendResponse(resp).
func AppendResponse(dst, buf []byte, resp *Response, close bool) []byte {
	return appendResponse(dst, buf, resp, close, false)
}

// AppendResponseKeepAlive is AppendResponse(dst, buf, resp, false) with a
// "Connection: keep-alive" header: the answer to an HTTP/1.0 client that
// asked for keep-alive and keeps it.
func AppendResponseKeepAlive(dst, buf []byte, resp *Response) []byte {
	return appendResponse(dst, buf, resp, false, true)
}

func appendResponse(dst, buf []byte, resp *Response, close, keepAlive bool) []byte {
	dst = append(dst, "HTTP/1.1"...)
	dst = append(dst, buf[8:resp.lineEnd]...)
	dst = append(dst, "\r\n"...)
	up := resp.Status == 101
	for i := 0; i < resp.N; i++ {
		h, k := resp.Headers[i], resp.kinds[i]
		if up && (k == kConnection || k == kUpgrade) {
			dst = appendField(dst, h.Name.Of(buf), h.Value.Of(buf))
			continue
		}
		if hopByHop(k) {
			continue
		}
		if resp.f.nconn > 0 && k != kContentLength && k != kTransferEncoding && resp.f.named(buf, h.Name.Of(buf)) {
			continue
		}
		dst = appendField(dst, h.Name.Of(buf), h.Value.Of(buf))
	}
	switch {
	case up:
	case close:
		dst = append(dst, "Connection: close\r\n"...)
	case keepAlive:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}
