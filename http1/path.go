package http1

// Path normalization (RFC 3986 6.2.2). Every decision wsgate makes on a path
// (routes and their strip, origin rules, rate limits, Socket.IO detection) is
// made on one normalized form of it, and that same form is what the backend
// is sent, so a percent-encoding or a dot segment cannot make wsgate and a
// backend that decodes see two different paths.
//
// The rules, in RFC 3986 6.2.2's order:
//
//   - percent-encodings of unreserved characters (ALPHA / DIGIT / "-" / "." /
//     "_" / "~") are decoded: "/%77s" is "/ws";
//   - every other percent-encoding keeps its encoding, with its hex digits
//     upper-cased: "%3b" is "%3B";
//   - then dot segments are removed (RFC 3986 5.2.4 remove_dot_segments),
//     "." and ".." also when they were percent-encoded ("%2e%2E"); ".." above
//     the root stays at the root ("/../a" is "/a"), as browsers and Go's
//     path.Clean do.
//
// Refused, each with a 400:
//
//   - a malformed percent-encoding ("%", "%4", "%zz"): ErrBadTarget;
//   - "%2F", "%5C" and "%00" in any case, and a literal '\': ErrBadPath.
//     wsgate keeps "%2F" encoded and so reads "/a%2F..%2Fb" as one segment,
//     while a backend that decodes before it splits (or that takes '\' for
//     '/', as some do) sees segments, and dot segments, that wsgate never
//     decided on. A NUL ends a C string early in many backends. Refusing is
//     the only answer that no backend can read differently.
//
// Repeated slashes are not merged: RFC 3986 does not make "//" equal to "/"
// (an empty segment is a segment), backends differ in whether they merge,
// and since the backend is sent exactly the form the decision was made on,
// "//ws" can only be decided on, and reach the backend, as "//ws". A route or
// rule on "/ws" does not match it.
//
// Everything else is kept as given: sub-delims, ":" and "@", and literal
// bytes (no encoding is added).

// AppendNormalPath appends the normalized form of the path p (no query) to
// dst and returns the extended buffer, or dst[:len(dst)] (bytes past it may
// have been written) and ErrBadTarget or ErrBadPath when p is refused (both
// 400; see the package's path rules above). The result is never longer than
// p, so with cap(dst)-len(dst) >= len(p) it does not allocate.
// A p that does not start with '/' is normalized as RFC 3986 5.2.4 does it
// ("../a" is "a"). Normalizing is idempotent.
func AppendNormalPath(dst, p []byte) ([]byte, error) {
	out, c := appendNormalPath(dst, p)
	if c != eNone {
		return out, c.req()
	}
	return out, nil
}

// PathIsNormal reports whether p is accepted and already normal, that is
// whether AppendNormalPath(nil, p) would return p itself with no error: no
// percent-encoding of an unreserved character, none in lower case, none
// malformed or refused, no literal '\', no "." or ".." segment. It costs one
// scan and allocates nothing.
func PathIsNormal(p []byte) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if class[c]&cPathPlain != 0 {
			continue
		}
		switch c {
		case '%':
			if i+2 >= len(p) || !isUpperHex(p[i+1]) || !isUpperHex(p[i+2]) {
				return false
			}
			if b := unhex(p[i+1])<<4 | unhex(p[i+2]); class[b]&cUnreserved != 0 || refusedEncoded(b) {
				return false
			}
			i += 2
		case '.':
			if i == 0 || p[i-1] == '/' {
				j := i + 1
				if j < len(p) && p[j] == '.' {
					j++
				}
				if j == len(p) || p[j] == '/' {
					return false
				}
			}
		case '\\':
			return false
		}
		// Anything else ('?', bytes a request target cannot hold) is kept.
	}
	return true
}

func isUpperHex(b byte) bool { return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'F') }

// refusedEncoded reports whether a percent-encoding of b is refused.
func refusedEncoded(b byte) bool { return b == '/' || b == '\\' || b == 0 }

const upperHexDigits = "0123456789ABCDEF"

// appendNormalPath is AppendNormalPath with an ecode.
//
// The output is a sequence of units, each an optional '/' and a segment
// (segments hold no '/', since %2F is refused); only the first may lack its
// '/'. Each segment is decoded into dst first and then checked for "." and
// "..", which is remove_dot_segments applied to the decoded units:
//   - "/." drops the unit, "/.." also drops the unit before it (its '/' and
//     segment); when it is the last segment of p a lone "/" is left instead
//     (rules B and C: "/a/." is "/a/", "/a/.." is "/");
//   - "." or ".." without a leading '/' (only at the start of a relative p,
//     rules A and D) goes with the '/' after it.
func appendNormalPath(dst, p []byte) ([]byte, ecode) {
	base := len(dst)
	i := 0
	for i < len(p) {
		unit := len(dst)
		if p[i] == '/' {
			dst = append(dst, '/')
			i++
		}
		seg := len(dst)
		for i < len(p) && p[i] != '/' {
			c := p[i]
			if c != '%' {
				if c == '\\' {
					return dst[:base], eBadPath
				}
				dst = append(dst, c)
				i++
				continue
			}
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return dst[:base], eBadTarget
			}
			b := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case class[b]&cUnreserved != 0:
				dst = append(dst, b)
			case refusedEncoded(b):
				return dst[:base], eBadPath
			default:
				dst = append(dst, '%', upperHexDigits[b>>4], upperHexDigits[b&15])
			}
			i += 3
		}
		s := dst[seg:]
		dot := len(s) == 1 && s[0] == '.'
		dotdot := len(s) == 2 && s[0] == '.' && s[1] == '.'
		if !dot && !dotdot {
			continue
		}
		lead := seg > unit
		dst = dst[:unit]
		if dotdot { // drop the unit before, with its '/'
			j := len(dst)
			for j > base {
				j--
				if dst[j] == '/' {
					break
				}
			}
			dst = dst[:j]
		}
		switch {
		case !lead:
			if i < len(p) { // the '/' after a leading "./" or "../"
				i++
			}
		case i == len(p):
			dst = append(dst, '/')
		}
	}
	return dst, eNone
}
