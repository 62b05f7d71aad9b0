package loop

import (
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wsgate/wsgate/balancer"
)

// serverMetrics are one Server's counters, registered in its own
// metrics.Set (Server.Metrics), so two Servers in one process (tests, a
// successor during a drain) share nothing. Every counter is created in
// New, except the per-pool ones (on a pool's first request); the hot path
// only increments atomics.
type serverMetrics struct {
	set *metrics.Set

	accepted    *metrics.Counter
	status      [6]*metrics.Counter // by class: 1xx..5xx, [0] other
	upstreamErr map[string]*metrics.Counter
	rejects     map[int]*metrics.Counter
	// idleClosed counts pooled upstream connections found closed by their
	// backend (a keep-alive timeout: routine) when about to be reused.
	idleClosed *metrics.Counter

	// Operations (record.go): requests by pool and status class,
	// refused handshakes by reason, tunnel durations; access-log drops are
	// read from the AccessLog when scraped (New).
	tunnelDuration *metrics.Histogram
	poolCounters   sync.Map // pool name → *[6]*metrics.Counter, by status class
	handshake      map[string]*metrics.Counter

	// Edge (edge.go, accept.go, edge_proxy.go).
	refusedMaxConns, refusedPerIP, refusedOutOfFiles *metrics.Counter
	rateLimited, originRefused, redirects            *metrics.Counter
	proxyHeaders                                     map[string]*metrics.Counter

	// Stickiness (sticky.go).
	stickyHits, stickyTagged, stickyUntagged *metrics.Counter
	stickyMisses                             map[string]*metrics.Counter

	// The TLS front (tls.go).
	tlsHandshakes, tlsHandshakeErrs, tlsReloads, tlsReloadErrs *metrics.Counter
	// Connections by version and by whose code handles their records
	// (path "engine": wsgate's own, tunnel/tlsrec; "front": crypto/tls),
	// and TLS 1.3 tunnels handed to the engine or refused (tlsfront.Takeover).
	tlsConns12, tlsConns13Front, tlsConns13Engine *metrics.Counter
	tlsTakeovers, tlsTakeoverFails                *metrics.Counter
}

func newServerMetrics() *serverMetrics {
	set := metrics.NewSet()
	m := &serverMetrics{set: set}
	c := set.NewCounter
	m.accepted = c(`wsgate_connections_accepted_total`)
	for i := range m.status {
		m.status[i] = c(`wsgate_responses_total{class="` + className(i) + `"}`)
	}
	m.upstreamErr = map[string]*metrics.Counter{}
	for _, k := range []string{upRefused, upConnTO, upConnErr, upReset, upTimeout, upBadResp, upSendFail, upUnsolicited} {
		m.upstreamErr[k] = c(`wsgate_upstream_errors_total{kind="` + k + `"}`)
	}
	m.rejects = map[int]*metrics.Counter{}
	for _, st := range []int{400, 403, 404, 408, 413, 414, 417, 426, 429, 431, 501, 505} {
		m.rejects[st] = c(`wsgate_requests_rejected_total{status="` + strconv.Itoa(st) + `"}`)
	}
	m.idleClosed = c(`wsgate_upstream_idle_closed_total`)

	m.tunnelDuration = set.NewHistogram(`wsgate_tunnel_duration_seconds`)
	m.handshake = map[string]*metrics.Counter{}
	for _, r := range []string{hsBadHandshake, hsBadKey, hsBadVersion, hsNoRoute, hsNoBackend, hsConnect,
		hsTimeout, hsBad101, hsBadResponse, hsDeclined, hsAborted, hsOther} {
		m.handshake[r] = c(`wsgate_handshake_rejections_total{reason="` + r + `"}`)
	}

	m.refusedMaxConns = c(`wsgate_connections_refused_total{reason="max_conns"}`)
	m.refusedPerIP = c(`wsgate_connections_refused_total{reason="max_conns_per_ip"}`)
	m.refusedOutOfFiles = c(`wsgate_connections_refused_total{reason="out_of_files"}`)
	m.rateLimited = c(`wsgate_requests_rate_limited_total`)
	m.originRefused = c(`wsgate_websocket_origin_refused_total`)
	m.redirects = c(`wsgate_https_redirects_total`)
	m.proxyHeaders = map[string]*metrics.Counter{}
	for _, r := range []string{proxyResultOK, proxyResultBad, proxyResultTimeout} {
		m.proxyHeaders[r] = c(`wsgate_proxy_headers_total{result="` + r + `"}`)
	}

	m.stickyHits = c(`wsgate_sticky_hits_total`)
	m.stickyTagged = c(`wsgate_sticky_handshakes_total{result="tagged"}`)
	m.stickyUntagged = c(`wsgate_sticky_handshakes_total{result="untagged"}`)
	m.stickyMisses = map[string]*metrics.Counter{}
	for _, r := range []string{missUntagged, missUnknown, missUnhealthy, missUnreachable} {
		m.stickyMisses[r] = c(`wsgate_sticky_misses_total{reason="` + r + `"}`)
	}

	m.tlsHandshakes = c(`wsgate_tls_handshakes_total{result="ok"}`)
	m.tlsHandshakeErrs = c(`wsgate_tls_handshakes_total{result="error"}`)
	m.tlsReloads = c(`wsgate_tls_reloads_total{result="ok"}`)
	m.tlsReloadErrs = c(`wsgate_tls_reloads_total{result="error"}`)
	m.tlsConns12 = c(`wsgate_tls_connections_total{version="1.2",path="front"}`)
	m.tlsConns13Front = c(`wsgate_tls_connections_total{version="1.3",path="front"}`)
	m.tlsConns13Engine = c(`wsgate_tls_connections_total{version="1.3",path="engine"}`)
	m.tlsTakeovers = c(`wsgate_tls_takeovers_total{result="ok"}`)
	m.tlsTakeoverFails = c(`wsgate_tls_takeovers_total{result="fallback"}`)
	return m
}

func className(i int) string {
	if i == 0 {
		return "other"
	}
	return strconv.Itoa(i) + "xx"
}

func classOf(status int) int {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	return c
}

func (m *serverMetrics) countStatus(status int) { m.status[classOf(status)].Inc() }

// countReject counts a request the proxy refused itself (also counted in
// countStatus by the response it got).
func (m *serverMetrics) countReject(status int) {
	if c := m.rejects[status]; c != nil {
		c.Inc()
		return
	}
	m.set.GetOrCreateCounter(`wsgate_requests_rejected_total{status="` + strconv.Itoa(status) + `"}`).Inc()
}

func (m *serverMetrics) upstreamError(kind string)          { m.upstreamErr[kind].Inc() }
func (m *serverMetrics) countHandshakeReject(reason string) { m.handshake[reason].Inc() }
func (m *serverMetrics) countProxyHeader(result string)     { m.proxyHeaders[result].Inc() }
func (m *serverMetrics) stickyMiss(reason string)           { m.stickyMisses[reason].Inc() }

// countPoolStatus counts a request answered with status in pool p
// (pool "" when it was refused before routing); status 0 (no answer)
// counts as class "other".
func (m *serverMetrics) countPoolStatus(p *balancer.Pool, status int) {
	name := ""
	if p != nil {
		name = p.Name()
	}
	v, ok := m.poolCounters.Load(name)
	if !ok {
		var cs [6]*metrics.Counter
		for i := range cs {
			cs[i] = m.set.GetOrCreateCounter(`wsgate_requests_total{pool="` + name + `",class="` + className(i) + `"}`)
		}
		v, _ = m.poolCounters.LoadOrStore(name, &cs)
	}
	v.(*[6]*metrics.Counter)[classOf(status)].Inc()
}

// Metrics returns the Server's metrics, for an admin listener to write
// (metrics.Set.WritePrometheus) beside the process's own.
func (s *Server) Metrics() *metrics.Set { return s.m.set }
