package loop

import (
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wsgate/wsgate/balancer"
)

// Metrics of the operations work (issue 8): requests by pool and status
// class, refused WebSocket handshakes by reason, tunnel durations, access
// log drops. All counters are created once (per pool: on its first
// request); the hot path does a sync.Map load and an atomic add.
var (
	mLogDropped     = metrics.GetOrCreateCounter(`wsgate_access_log_dropped_total`)
	mTunnelDuration = metrics.GetOrCreateHistogram(`wsgate_tunnel_duration_seconds`)

	poolCounters sync.Map // pool name → *[6]*metrics.Counter, by status class as mStatus
	mHandshake   = map[string]*metrics.Counter{}
)

// Why a WebSocket handshake did not become a tunnel.
const (
	hsBadHandshake = "bad_handshake"   // not a GET, or has a body (400)
	hsBadKey       = "bad_key"         // Sec-WebSocket-Key missing or invalid (400)
	hsBadVersion   = "bad_version"     // Sec-WebSocket-Version not 13 (426)
	hsNoRoute      = "no_route"        // no route for the host and path (404)
	hsNoBackend    = "no_backend"      // no healthy backend in the pool (503)
	hsConnect      = "connect_failed"  // no backend could be reached (502)
	hsTimeout      = "backend_timeout" // the backend did not answer in time (504)
	hsBad101       = "bad_101"         // a 101 with a wrong Sec-WebSocket-Accept or Upgrade (502)
	hsBadResponse  = "bad_response"    // the backend's answer was not HTTP, or it reset (502)
	hsDeclined     = "declined"        // the backend answered with another status
	hsAborted      = "aborted"         // the client went away before an answer
	hsOther        = "other"           // anything else the proxy refused (413, 431, ...)
)

func init() {
	for _, r := range []string{hsBadHandshake, hsBadKey, hsBadVersion, hsNoRoute, hsNoBackend, hsConnect,
		hsTimeout, hsBad101, hsBadResponse, hsDeclined, hsAborted, hsOther} {
		mHandshake[r] = metrics.GetOrCreateCounter(`wsgate_handshake_rejections_total{reason="` + r + `"}`)
	}
}

func countHandshakeReject(reason string) { mHandshake[reason].Inc() }

// handshakeReason classifies a valid handshake that got status instead
// of 101; backendStatus is the status line the backend sent, if any.
func handshakeReason(r *accessRec, status, backendStatus int) string {
	switch {
	case r.upstream:
		return hsDeclined
	case status == 0:
		return hsAborted
	case status == 404:
		return hsNoRoute
	case status == 503:
		return hsNoBackend
	case status == 504:
		return hsTimeout
	case status == 502 && r.backend == nil:
		return hsConnect
	case status == 502 && backendStatus == 101:
		return hsBad101
	case status == 502:
		return hsBadResponse
	}
	return hsOther
}

// countPoolStatus counts a request answered with status in pool p
// (pool "" when it was refused before routing); status 0 (no answer)
// counts as class "other".
func countPoolStatus(p *balancer.Pool, status int) {
	name := ""
	if p != nil {
		name = p.Name()
	}
	v, ok := poolCounters.Load(name)
	if !ok {
		var cs [6]*metrics.Counter
		for i := range cs {
			class := "other"
			if i > 0 {
				class = strconv.Itoa(i) + "xx"
			}
			cs[i] = metrics.GetOrCreateCounter(`wsgate_requests_total{pool="` + name + `",class="` + class + `"}`)
		}
		v, _ = poolCounters.LoadOrStore(name, &cs)
	}
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	v.(*[6]*metrics.Counter)[c].Inc()
}
