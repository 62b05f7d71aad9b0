package bench

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs resolution (values kept in nanoseconds) up to 100 s,
// three significant digits.
const (
	histMin  = 1_000
	histMax  = 100_000_000_000
	histSigs = 3
	nShards  = 8
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigs) }

// recorder takes latencies from many goroutines. Each goroutine records into
// one of nShards histograms (by connection number) under that shard's lock;
// the reporter drains the shards into interval and total histograms once a
// second, so the hot path never waits on the reporter for long.
type recorder struct {
	shards [nShards]shard
	// total holds everything drained so far; owned by the reporter goroutine
	// (flush), read by others only after the run ended.
	total *hdrhistogram.Histogram
	// interval is scratch for flush; owned by the reporter goroutine.
	interval *hdrhistogram.Histogram
}

type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // mu must be held
	_  [40]byte                // keep shards on separate cache lines
}

func newRecorder() *recorder {
	r := &recorder{total: newHist(), interval: newHist()}
	for i := range r.shards {
		r.shards[i].h = newHist()
	}
	return r
}

// record adds one latency; id picks the shard (a connection number).
func (r *recorder) record(id int, d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	} else if v > histMax {
		v = histMax
	}
	s := &r.shards[id%nShards]
	s.mu.Lock()
	s.h.RecordValue(v)
	s.mu.Unlock()
}

// flush drains the shards into total and returns the histogram of values
// recorded since the last flush (valid until the next flush). Only one
// goroutine calls flush.
func (r *recorder) flush() *hdrhistogram.Histogram {
	r.interval.Reset()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if s.h.TotalCount() > 0 {
			r.interval.Merge(s.h)
			s.h.Reset()
		}
		s.mu.Unlock()
	}
	r.total.Merge(r.interval)
	return r.interval
}

// counters are the run's event counts, updated atomically from any goroutine.
type counters struct {
	open        atomic.Int64 // connections open now
	maxOpen     atomic.Int64
	connected   atomic.Int64 // successful handshakes
	attempts    atomic.Int64 // handshakes attempted
	failed      atomic.Int64 // handshakes that failed (not counting those cut short by the end)
	dropped     atomic.Int64 // established connections that ended before the run did
	messages    atomic.Int64 // round trips completed (echo) or acks received (socketio)
	bytes       atomic.Int64 // payload bytes sent and received
	errors      atomic.Int64
	unsolicited atomic.Int64 // data messages that answered nothing we sent
	upgraded    atomic.Int64 // socketio: polling sessions upgraded to websocket
	sidUnknown  atomic.Int64 // socketio: "Session ID unknown" answers

	mu    sync.Mutex
	kinds map[string]int64 // failure kind -> count; mu must be held
	nodes map[string]int64 // node name -> answers; mu must be held
}

func (c *counters) opened() {
	n := c.open.Add(1)
	for {
		m := c.maxOpen.Load()
		if n <= m || c.maxOpen.CompareAndSwap(m, n) {
			return
		}
	}
}

// fail counts one failure of the given kind.
func (c *counters) fail(kind string) {
	c.errors.Add(1)
	c.mu.Lock()
	if c.kinds == nil {
		c.kinds = map[string]int64{}
	}
	c.kinds[kind]++
	c.mu.Unlock()
}

func (c *counters) snapshot() (kinds, nodes map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.kinds), maps.Clone(c.nodes)
}

// Percentiles reported in summaries.
var summaryPercentiles = []float64{50, 90, 99, 99.9}

// LatencySummary is a latency distribution in milliseconds.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p99_9_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func summarize(h *hdrhistogram.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	return LatencySummary{
		Count:  h.TotalCount(),
		MinMS:  ms(h.Min()),
		MeanMS: h.Mean() / 1e6,
		P50MS:  ms(h.ValueAtQuantile(50)),
		P90MS:  ms(h.ValueAtQuantile(90)),
		P99MS:  ms(h.ValueAtQuantile(99)),
		P999MS: ms(h.ValueAtQuantile(99.9)),
		MaxMS:  ms(h.Max()),
	}
}

// PercentilePoint is one point of a percentile distribution plot.
type PercentilePoint struct {
	Percentile float64 `json:"percentile"`
	MS         float64 `json:"ms"`
}

// distribution samples h at percentiles spaced evenly on a log scale of
// 1/(1-p), as HdrHistogram's plots do: 0, 50, 75, 87.5 … up to the max.
func distribution(h *hdrhistogram.Histogram) []PercentilePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	var pts []PercentilePoint
	for _, p := range []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 87.5, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99,
		99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999} {
		pts = append(pts, PercentilePoint{p, ms(h.ValueAtQuantile(p))})
	}
	pts = append(pts, PercentilePoint{100, ms(h.Max())})
	return pts
}

// Sample is one second of a run, for the progress line and the timeline.
type Sample struct {
	T          float64 `json:"t"` // seconds since the start
	Open       int64   `json:"open"`
	Connected  int64   `json:"connected"` // handshakes completed in the interval
	Messages   int64   `json:"messages"`  // round trips completed in the interval
	PerSecond  float64 `json:"per_second"`
	Errors     int64   `json:"errors"` // failures in the interval
	P50MS      float64 `json:"p50_ms"`
	P90MS      float64 `json:"p90_ms"`
	P99MS      float64 `json:"p99_ms"`
	MaxMS      float64 `json:"max_ms"`
	HandshakeP float64 `json:"handshake_p99_ms"`
}

func sortedKeys(m map[string]int64) []string {
	return slices.Sorted(maps.Keys(m))
}
