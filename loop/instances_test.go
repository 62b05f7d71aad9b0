package loop_test

import (
	"github.com/wsgate/wsgate/loop/limit"

	"net"
	"testing"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// Two Servers in one process (tests, a successor during a drain) share no
// counters and no limits: each has its own metrics.Set and its own tables.
func TestTwoServersShareNothing(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) { serveEcho(c, nil) })
	limited := func(lc *loop.Config, _ *tunnel.Config) {
		lc.Edge.RateLimits = []limit.RateLimit{{Prefix: "/x", Rate: 0.001, Burst: 1}}
	}
	a := startProxy(t, []string{be}, limited)
	b := startProxy(t, []string{be}, limited)
	req := "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
	if got := status(t, a.addr, req); got != 200 {
		t.Fatalf("a, first: %d", got)
	}
	if got := status(t, a.addr, req); got != 429 {
		t.Fatalf("a, second: %d, want 429", got)
	}
	if got := status(t, b.addr, req); got != 200 {
		t.Fatalf("b, first: %d, want 200 (a's bucket is not b's)", got)
	}
	for _, c := range []struct {
		p    *proxy
		name string
		want uint64
	}{
		{a, `wsgate_connections_accepted_total`, 2},
		{b, `wsgate_connections_accepted_total`, 1},
		{a, `wsgate_requests_rate_limited_total`, 1},
		{b, `wsgate_requests_rate_limited_total`, 0},
		{a, `wsgate_responses_total{class="2xx"}`, 1},
		{b, `wsgate_responses_total{class="2xx"}`, 1},
	} {
		if got := c.p.counter(c.name); got != c.want {
			who := "a"
			if c.p == b {
				who = "b"
			}
			t.Errorf("%s: %s = %d, want %d", who, c.name, got, c.want)
		}
	}
}
