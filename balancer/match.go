package balancer

import (
	"fmt"
	"sort"
	"strings"
)

// A Rule is one "[HOST]/PREFIX", as --route, --rate-limit and
// --allowed-origin write it, in normalized form (ParseRule): Host lower
// case, "" (any host), "example.com" or "*.example.com"; Prefix starts
// with "/", made of unreserved characters and "/", no dot segments, no
// trailing "/" unless it is "/". The matching rules are RouteConfig's.
type Rule struct {
	Host, Prefix string
}

// ParseRule parses and normalizes "[HOST]/PREFIX" by --route's rules.
// Errors say what is wrong, without naming the flag.
func ParseRule(s string) (Rule, error) {
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return Rule{}, fmt.Errorf("missing /PREFIX")
	}
	rc, err := normalizeRoute(RouteConfig{Host: s[:slash], Prefix: s[slash:], Pool: DefaultPool})
	if err != nil {
		return Rule{}, err
	}
	return Rule{rc.Host, rc.Prefix}, nil
}

// Matcher finds the most specific Rule for a request: rules for its exact
// host first, then wildcard hosts (longest suffix first), then host-less
// rules; within each, the longest prefix matching on a path-segment
// boundary. Balancer.Route uses one for the routes; the edge's rate limits
// and origin rules use their own. Immutable; safe for concurrent use; Match
// does not allocate.
type Matcher struct {
	rules []compiledRule // in matching order
}

type compiledRule struct {
	kind   routeKind
	host   string // exact: lower-case host; wildcard: lower-case suffix with its leading "."
	prefix string
	idx    int // into the slice given to NewMatcher
}

// NewMatcher compiles rules, which must be normalized (ParseRule).
func NewMatcher(rules []Rule) *Matcher {
	m := &Matcher{rules: make([]compiledRule, 0, len(rules))}
	for i, r := range rules {
		c := compiledRule{kind: routeAnyHost, prefix: r.Prefix, idx: i}
		switch {
		case strings.HasPrefix(r.Host, "*."):
			c.kind, c.host = routeWildcard, r.Host[1:]
		case r.Host != "":
			c.kind, c.host = routeExact, r.Host
		}
		m.rules = append(m.rules, c)
	}
	sort.SliceStable(m.rules, func(i, j int) bool {
		a, b := &m.rules[i], &m.rules[j]
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.kind == routeWildcard && len(a.host) != len(b.host) {
			return len(a.host) > len(b.host)
		}
		return len(a.prefix) > len(b.prefix)
	})
	return m
}

// Match returns the index (into NewMatcher's slice) of the rule for host, a
// Host header value (port allowed; may be empty), and path, the request's
// normalized path (http1.Request.Path); -1 when none matches.
func (m *Matcher) Match(host, path []byte) int {
	if m == nil || len(m.rules) == 0 {
		return -1
	}
	h := HostName(host)
	for i := range m.rules {
		r := &m.rules[i]
		if r.matchHost(h) && r.matchPath(path) {
			return r.idx
		}
	}
	return -1
}

// matchHost reports whether the rule's host accepts h (already without
// port and trailing dot).
func (r *compiledRule) matchHost(h []byte) bool {
	switch r.kind {
	case routeExact:
		return len(h) == len(r.host) && hasPrefixFold(h, r.host)
	case routeWildcard:
		return len(h) > len(r.host) && hasPrefixFold(h[len(h)-len(r.host):], r.host)
	}
	return true
}

// matchPath reports whether path starts with the rule's prefix on a
// segment boundary.
func (r *compiledRule) matchPath(path []byte) bool {
	if r.prefix == "/" {
		return true
	}
	n := len(r.prefix)
	if len(path) < n || string(path[:n]) != r.prefix {
		return false
	}
	return len(path) == n || path[n] == '/'
}
