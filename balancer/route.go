package balancer

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// RouteConfig is one --route value, "[HOST]/PREFIX=POOL[,strip]".
//
// Matching rules (Balancer.Route):
//
//   - Host: "" matches any host; "example.com" matches that host exactly,
//     ASCII case-insensitively, ignoring the request's port and one trailing
//     dot; "*.example.com" matches any name ending in ".example.com" (at any
//     depth) but not "example.com" itself.
//   - Prefix matches whole path segments: "/ws" matches "/ws" and "/ws/x"
//     (whatever the query), but not "/wsx". A trailing slash is dropped when parsing
//     ("/ws/" is "/ws"). "/" matches every path. Bytes are compared as
//     normalized by http1 (RFC 3986 6.2.2: unreserved characters decoded,
//     dot segments removed), case-sensitive. A prefix is made of unreserved
//     characters and "/" only, with no dot segments.
//   - Order: routes for the request's exact host are tried first (longest
//     prefix first), then wildcard routes (longest suffix first), then
//     host-less routes; the first match wins, so a host whose own routes
//     do not cover a path falls back to the host-less ones.
//   - Strip removes Prefix from the path before forwarding: with "/api" and
//     strip, "/api/users?x" goes out as "/users?x" and "/api" as "/"
//     (http1.Request.AppendTarget).
type RouteConfig struct {
	Host   string // "" (any host), "example.com" or "*.example.com"; lower case after parsing
	Prefix string // starts with "/"; no trailing "/" unless it is "/"
	Pool   string // "" means DefaultPool
	Strip  bool
}

// String returns the route in --route syntax.
func (r RouteConfig) String() string {
	s := r.Host + r.Prefix + "=" + r.Pool
	if r.Strip {
		s += ",strip"
	}
	return s
}

// ParseRoute parses the --route value "[HOST]/PREFIX=POOL[,strip]". The
// prefix runs from the first "/" to the last "=", so that a prefix holding
// "=" or "," is refused with a message naming that character (normalizeRoute).
// Errors start with `balancer: route "VALUE": `.
func ParseRoute(s string) (RouteConfig, error) {
	fail := func(format string, args ...any) (RouteConfig, error) {
		return RouteConfig{}, fmt.Errorf("balancer: route %q: %s", s, fmt.Sprintf(format, args...))
	}
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return fail("missing /PREFIX (want [HOST]/PREFIX=POOL[,strip])")
	}
	rest := s[slash:]
	eq := strings.LastIndexByte(rest, '=')
	if eq < 0 {
		return fail("missing =POOL (want [HOST]/PREFIX=POOL[,strip])")
	}
	rc := RouteConfig{Host: s[:slash], Prefix: rest[:eq]}
	pool, opts, hasOpts := strings.Cut(rest[eq+1:], ",")
	rc.Pool = pool
	if pool == "" {
		return fail("empty pool name after '='")
	}
	if hasOpts {
		for opt := range strings.SplitSeq(opts, ",") {
			switch opt {
			case "strip":
				rc.Strip = true
			case "":
				return fail("empty option after comma")
			default:
				return fail("unknown option %q (want strip)", opt)
			}
		}
	}
	rc, err := normalizeRoute(rc)
	if err != nil {
		return fail("%v", err)
	}
	return rc, nil
}

// normalizeRoute checks a RouteConfig (parsed or built by hand) and returns
// it in canonical form: lower-case host, no trailing slash, pool named.
func normalizeRoute(rc RouteConfig) (RouteConfig, error) {
	if rc.Pool == "" {
		rc.Pool = DefaultPool
	}
	if err := checkPoolName(rc.Pool); err != nil {
		return rc, err
	}
	h := strings.ToLower(strings.TrimSuffix(rc.Host, "."))
	switch {
	case h == "":
	case strings.HasPrefix(h, "["):
		if !strings.HasSuffix(h, "]") {
			return rc, fmt.Errorf("host %q: want [IPv6] without a port", rc.Host)
		}
		if a, err := netip.ParseAddr(h[1 : len(h)-1]); err != nil || !a.Is6() {
			return rc, fmt.Errorf("host %q: invalid IPv6 address", rc.Host)
		}
	default:
		name := h
		if strings.HasPrefix(h, "*.") {
			name = h[2:]
		}
		if strings.IndexByte(name, ':') >= 0 {
			return rc, fmt.Errorf("host %q: must not include a port", rc.Host)
		}
		if name == "" || strings.IndexByte(name, '*') >= 0 {
			return rc, fmt.Errorf("host %q: only a leading \"*.\" wildcard is allowed", rc.Host)
		}
		if err := checkHostName(name); err != nil {
			return rc, err
		}
	}
	rc.Host = h
	p := rc.Prefix
	if p == "" || p[0] != '/' {
		return rc, fmt.Errorf("prefix %q must start with /", p)
	}
	// A prefix is compared with the request's normalized path (http1's
	// RFC 3986 normalization), so it must be normalized itself, and made
	// only of characters whose percent-encoded form normalization decodes
	// (unreserved) and "/": a reserved character (";", "@", ...) stays
	// encoded in a normalized path, so "/a;b" would miss "/a%3Bb", which a
	// decoding backend takes for "/a;b".
	for i := 0; i < len(p); i++ {
		if c := p[i]; !prefixByte(c) {
			return rc, fmt.Errorf("prefix %q: character %q not allowed (letters, digits, \"-._~\" and \"/\" only; write the path decoded)", p, c)
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return rc, fmt.Errorf("prefix %q: %q segments are not allowed (requests are matched with dot segments removed)", p, seg)
		}
	}
	p = strings.TrimRight(p, "/")
	if p == "" {
		p = "/"
	}
	rc.Prefix = p
	return rc, nil
}

// routeKind orders rules (Matcher): more specific hosts first.
type routeKind uint8

const (
	routeExact routeKind = iota
	routeWildcard
	routeAnyHost
)

// hasPrefixFold reports whether b starts with lower, comparing ASCII
// letters case-insensitively; lower must be lower case.
func hasPrefixFold(b []byte, lower string) bool {
	if len(b) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// HostName returns the host part of a Host header value: without ":port",
// and without one trailing dot. "[::1]:80" gives "[::1]". It is the form
// routes and rules match on.
func HostName(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i >= 0 {
			return h[:i+1]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	return h
}

// prefixByte: an unreserved character (RFC 3986 2.3) or "/".
func prefixByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '/'
}
