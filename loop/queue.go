package loop

import (
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// Per-backend max-conns and the queue in front of them (issue 18). The
// waiting itself is the balancer's (Pool.PickWait: FIFO per pool, a freed
// slot goes to the head of the queue, a timeout on the balancer's clock);
// here are the answers and the counters.
//
// A queued request holds its exchange and a parked handler goroutine, no
// upstream socket: nothing is dialed before a slot is granted. When the
// wait ends without a slot the client gets 503 with Retry-After, and the
// connection stays open for its next request unless the request said close.

// DefaultQueueTimeout is how long a request waits for a backend slot.
const DefaultQueueTimeout = 5 * time.Second

// queueRefused answers a request that found no backend slot within the
// queue timeout (or a full queue) with 503 and Retry-After.
func (s *Server) queueRefused(cc *clientConn, pool *balancer.Pool, err error, close bool) action {
	reason := "timeout"
	if err == balancer.ErrQueueFull {
		reason = "full"
	}
	s.m.set.GetOrCreateCounter(`wsgate_queue_refused_total{pool="` + pool.Name() + `",reason="` + reason + `"}`).Inc()
	secs := int((s.cfg.QueueTimeout + time.Second - 1) / time.Second)
	b := buffers.Get()
	b.B = http1.AppendRetryAfter(b.B, 503, secs, close)
	return s.sendError(cc, b, 503, close) // exchange.go, as fail
}

// queueWait records how long a request waited for its slot (also a wait
// that timed out).
func (m *serverMetrics) queueWait(pool string, d time.Duration) {
	m.set.GetOrCreateHistogram(`wsgate_queue_wait_seconds{pool="` + pool + `"}`).Update(d.Seconds())
}
