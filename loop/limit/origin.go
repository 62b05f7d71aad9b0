package limit

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// AllowedOrigin is one --allowed-origin "[HOST]/PREFIX=ORIGIN": on the
// route [HOST]/PREFIX (balancer.RouteConfig's matching rules), a WebSocket
// handshake whose Origin header is not one of the origins listed for that
// route gets 403 and never reaches a backend. Repeat the flag to list
// several origins for a route; the most specific route wins, as with
// --route.
//
// A handshake without an Origin header is let through: browsers always send
// one, and cross-site WebSocket hijacking is a browser attack; a client
// that is not a browser can send any Origin it likes, so refusing the
// header's absence would protect nothing and break native clients.
type AllowedOrigin struct {
	Host, Prefix string
	Origin       string // "scheme://host[:port]", lower case; or "null"
}

// ParseAllowedOrigin parses "[HOST]/PREFIX=ORIGIN".
func ParseAllowedOrigin(s string) (AllowedOrigin, error) {
	var ao AllowedOrigin
	eq := strings.LastIndexByte(s, '=')
	if eq < 0 || strings.IndexByte(s[:eq], '/') < 0 {
		return ao, fmt.Errorf("want [HOST]/PREFIX=ORIGIN")
	}
	o, err := normalizeOrigin(s[eq+1:])
	if err != nil {
		return ao, err
	}
	host, prefix, err := parseHostPrefix(s[:eq])
	if err != nil {
		return ao, err
	}
	return AllowedOrigin{Host: host, Prefix: prefix, Origin: o}, nil
}

// normalizeOrigin checks an origin as browsers serialise it (RFC 6454):
// scheme://host[:port], no path; or "null".
func normalizeOrigin(o string) (string, error) {
	o = strings.ToLower(strings.TrimSuffix(o, "/"))
	if o == "null" {
		return o, nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://app.example.com", o)
	}
	return o, nil
}

// Origins holds the allowed origins per route. Immutable.
type Origins struct {
	rules   *balancer.Matcher
	origins [][]string // per rule (index of rules' idx)
}

func NewOrigins(aos []AllowedOrigin) Origins {
	var or Origins
	type key struct{ host, prefix string }
	idx := map[key]int{}
	var keys []key
	for _, ao := range aos {
		k := key{ao.Host, ao.Prefix}
		i, ok := idx[k]
		if !ok {
			i = len(keys)
			idx[k] = i
			keys = append(keys, k)
			or.origins = append(or.origins, nil)
		}
		or.origins[i] = append(or.origins[i], ao.Origin)
	}
	rules := make([]balancer.Rule, len(keys))
	for i, k := range keys {
		rules[i] = balancer.Rule{Host: k.host, Prefix: k.prefix}
	}
	or.rules = balancer.NewMatcher(rules)
	return or
}

// allowed reports whether origin (a header value) is listed for rule i.
// Scheme and host compare case-insensitively; a trailing "/" is ignored.
func (or *Origins) allowed(i int, origin []byte) bool {
	if n := len(origin); n > 0 && origin[n-1] == '/' {
		origin = origin[:n-1]
	}
	for _, o := range or.origins[i] {
		if http1.EqualFold(origin, o) {
			return true
		}
	}
	return false
}

// Refused reports whether a WebSocket handshake for host and path (a Host
// header value and the normalized path) with this Origin header (present
// says whether it was sent at all) is refused: a rule covers it, and the
// origin is not listed for that rule. A request without Origin is not
// from a browser, and is not refused.
func (or *Origins) Refused(host, path, origin []byte, present bool) bool {
	if !present {
		return false
	}
	i := or.rules.Match(host, path)
	return i >= 0 && !or.allowed(i, origin)
}
