package loop

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// Counters are created once; the hot path only increments atomics.
var (
	mAccepted    = metrics.GetOrCreateCounter(`wsgate_connections_accepted_total`)
	mStatus      [6]*metrics.Counter // by class: 1xx..5xx, [0] other
	mUpstreamErr = map[string]*metrics.Counter{}
	mRejects     = map[int]*metrics.Counter{}
	// mIdleClosed counts pooled upstream connections found closed by their
	// backend (a keep-alive timeout: routine) when about to be reused.
	mIdleClosed = metrics.GetOrCreateCounter(`wsgate_upstream_idle_closed_total`)
)

func init() {
	for i := range mStatus {
		class := "other"
		if i > 0 {
			class = strconv.Itoa(i) + "xx"
		}
		mStatus[i] = metrics.GetOrCreateCounter(`wsgate_responses_total{class="` + class + `"}`)
	}
	for _, k := range []string{upRefused, upConnTO, upConnErr, upReset, upTimeout, upBadResp, upSendFail, upUnsolicited} {
		mUpstreamErr[k] = metrics.GetOrCreateCounter(`wsgate_upstream_errors_total{kind="` + k + `"}`)
	}
	for _, st := range []int{400, 404, 408, 413, 414, 417, 431, 501, 505} {
		mRejects[st] = metrics.GetOrCreateCounter(`wsgate_requests_rejected_total{status="` + strconv.Itoa(st) + `"}`)
	}
}

func countStatus(status int) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	mStatus[c].Inc()
}

// countReject counts a request the proxy refused itself (also counted in
// countStatus by the response it got).
func countReject(status int) {
	if c := mRejects[status]; c != nil {
		c.Inc()
		return
	}
	metrics.GetOrCreateCounter(`wsgate_requests_rejected_total{status="` + strconv.Itoa(status) + `"}`).Inc()
}

func upstreamError(kind string) { mUpstreamErr[kind].Inc() }
