package limit

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/balancer"
)

// RateLimit is one --rate-limit "[HOST]/PREFIX=N/s[,burst=B]": requests on
// the route (balancer.RouteConfig's matching rules) get Rate per second per
// client address, with bursts of Burst (default: Rate rounded up, at least 1).
type RateLimit struct {
	Host, Prefix string
	Rate         float64 // requests per second
	Burst        int
}

// ParseRateLimit parses "[HOST]/PREFIX=N/s[,burst=B]"; N may also be per
// minute ("N/m").
func ParseRateLimit(s string) (RateLimit, error) {
	var rl RateLimit
	rest := s
	if i := strings.LastIndex(rest, ",burst="); i >= 0 {
		b, err := strconv.Atoi(rest[i+len(",burst="):])
		if err != nil || b < 1 || b > 1<<20 {
			return rl, fmt.Errorf("burst %q: want a whole number 1..1048576", rest[i+len(",burst="):])
		}
		rl.Burst = b
		rest = rest[:i]
	}
	eq := strings.LastIndexByte(rest, '=')
	if eq < 0 || strings.IndexByte(rest, '/') < 0 {
		return rl, fmt.Errorf("want [HOST]/PREFIX=N/s[,burst=B]")
	}
	rate, per, ok := strings.Cut(rest[eq+1:], "/")
	n, err := strconv.ParseFloat(rate, 64)
	if !ok || err != nil || !(n > 0) || math.IsInf(n, 0) || (per != "s" && per != "m") {
		return rl, fmt.Errorf("rate %q: want N/s or N/m with N > 0", rest[eq+1:])
	}
	if per == "m" {
		n /= 60
	}
	rl.Rate = n
	host, prefix, err := parseHostPrefix(rest[:eq])
	if err != nil {
		return rl, err
	}
	rl.Host, rl.Prefix = host, prefix
	if rl.Burst == 0 {
		rl.Burst = max(1, int(math.Ceil(rl.Rate)))
	}
	return rl, nil
}

// parseHostPrefix checks and normalises "[HOST]/PREFIX" by the rules of
// --route (balancer.ParseRule).
func parseHostPrefix(hp string) (host, prefix string, err error) {
	r, err := balancer.ParseRule(hp)
	return r.Host, r.Prefix, err
}

// Rates applies a set of rate limits: the most specific rule for a request
// (balancer.Matcher), then that rule's bucket for the client. Immutable
// once built, except for the tables, which guard themselves.
type Rates struct {
	match  *balancer.Matcher
	tables []*BucketTable // parallel to the rules
}

// NewRates builds the limits rls, which must have Rate > 0.
func NewRates(rls []RateLimit) (*Rates, error) {
	r := &Rates{}
	rules := make([]balancer.Rule, len(rls))
	for i, rl := range rls {
		if !(rl.Rate > 0) {
			return nil, fmt.Errorf("rate limit %s%s: rate must be positive", rl.Host, rl.Prefix)
		}
		rules[i] = balancer.Rule{Host: rl.Host, Prefix: rl.Prefix}
		r.tables = append(r.tables, NewBucketTable(rl.Rate, max(rl.Burst, 1)))
	}
	r.match = balancer.NewMatcher(rules)
	return r, nil
}

// Take takes a token for client k from the rule for host and path (a Host
// header value and the normalized path). It returns false, with the
// seconds until a token will be there, when the client is over the limit;
// true when it is not, or no rule applies.
func (r *Rates) Take(host, path []byte, k Key) (ok bool, retryAfter int) {
	i := r.match.Match(host, path)
	if i < 0 {
		return true, 0
	}
	t := r.tables[i]
	return t.Take(k, t.Now())
}
