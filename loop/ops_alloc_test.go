//go:build !race

package loop

import (
	"runtime"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/accesslog"
	"github.com/wsgate/wsgate/tunnel"
)

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// logBench is a Server with an access log to a discarding sink, an
// exchange whose head was read (head), its pool and backend, and the
// client connection it came on.
type logBench struct {
	s    *Server
	alog *accesslog.Log
	cc   *clientConn
	ex   *exchange
	head []byte
	pool *balancer.Pool
	be   *balancer.Backend
}

func newLogBench(tb testing.TB, head string) *logBench {
	tb.Helper()
	bal, err := balancer.New(balancer.Config{Backends: []balancer.BackendConfig{{Addr: "127.0.0.1:1"}}, Logf: func(string, ...any) {}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(bal.Close)
	alog := accesslog.New(discard{}, 0)
	tb.Cleanup(func() { alog.Close() })
	lb := &logBench{
		s:    &Server{cfg: Config{AccessLog: alog}, m: newServerMetrics()},
		alog: alog,
		cc:   &clientConn{fwd: http1.Forward{ClientIP: []byte("10.0.0.7")}},
		ex:   exchanges.Get().(*exchange),
		head: []byte(head),
		pool: bal.Pools()[0],
	}
	lb.be = lb.pool.Backends()[0]
	if err := lb.ex.req.Parse(lb.head, &http1.Limits{MaxHeaderBytes: 1 << 10}); err != nil {
		tb.Fatal(err)
	}
	return lb
}

// request serves the recorded request once: the record, then its line.
func (lb *logBench) request() {
	lb.s.recordHead(lb.ex, lb.head)
	lb.ex.rec.pool, lb.ex.rec.backend, lb.ex.rec.upstream = lb.pool, lb.be, true
	lb.ex.resp.ContentLength = 1234
	lb.cc.status = 200
	lb.s.exchangeDone(lb.cc, lb.ex)
}

// TestAccessLineAllocs: a request's access-log line, from the finished
// exchange through the queue and the writer to the sink, allocates
// nothing once the buffer pool is warm. (Queued lines hold their buffers
// until the writer returns them, so a burst grows the pool to the queue's
// depth once; this measures the steady state, each line written before
// the next.)
func TestAccessLineAllocs(t *testing.T) {
	lb := newLogBench(t, "GET /some/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	line := func() {
		n := lb.alog.Written()
		lb.request()
		for lb.alog.Written() == n {
			runtime.Gosched()
		}
	}
	for range 100 {
		line()
	}
	if n := testing.AllocsPerRun(1000, line); n > 0 {
		t.Fatalf("%v allocations per access-log line, want 0", n)
	}
	if d := lb.alog.Dropped(); d != 0 {
		t.Fatalf("%d lines dropped", d)
	}
}

// TestTunnelLineAllocs: a tunnel's done callback costs one allocation
// (the closure), and one more with a log (what the close line needs from
// the handshake, copied); running it allocates nothing more.
func TestTunnelLineAllocs(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		lb := newLogBench(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n")
		if !withLog {
			lb.s.cfg.AccessLog = nil
		}
		lb.s.recordHead(lb.ex, lb.head)
		lb.ex.rec.pool = lb.pool
		st := tunnel.Stats{Duration: time.Minute, ClientToBackend: 512, BackendToClient: 2048 + 129}
		run := func() {
			n := lb.alog.Written()
			lb.be.TunnelStarted()
			lb.s.tunnelDone(lb.cc, lb.ex, lb.be, 129)(st)
			for withLog && lb.alog.Written() == n {
				runtime.Gosched()
			}
		}
		for range 100 {
			run()
		}
		want := 1.0
		if withLog {
			want = 2
		}
		n := testing.AllocsPerRun(1000, run)
		t.Logf("log %v: %v allocations per tunnel", withLog, n)
		if n > want {
			t.Errorf("log %v: %v allocations per tunnel, want %v", withLog, n, want)
		}
	}
}

// BenchmarkExchangeDone is the per-request cost the operations work adds
// to every exchange with the access log off: recording the head's framing
// and counting the request by pool and status class.
func BenchmarkExchangeDone(b *testing.B) {
	lb := newLogBench(b, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	lb.s.cfg.AccessLog = nil
	b.ReportAllocs()
	for b.Loop() {
		lb.s.recordHead(lb.ex, lb.head)
		lb.ex.rec.pool = lb.pool
		lb.cc.status = 200
		lb.s.exchangeDone(lb.cc, lb.ex)
	}
}

// BenchmarkAccessLogLine is the cost of a request's access-log line, from
// the finished exchange to the line queued (the writer goroutine writes it
// to a discarding sink and returns the buffer to its pool).
func BenchmarkAccessLogLine(b *testing.B) {
	lb := newLogBench(b, "GET /some/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		lb.request()
	}
	b.StopTimer()
	if d := lb.alog.Dropped(); d > 0 {
		b.Logf("%d of %d lines dropped", d, b.N)
	}
}

// BenchmarkAccessLogTunnelLine is the cost of a tunnel's close line: the
// done callback built when the tunnel starts, then run when it ends.
func BenchmarkAccessLogTunnelLine(b *testing.B) {
	lb := newLogBench(b, "GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n")
	lb.s.recordHead(lb.ex, lb.head)
	lb.ex.rec.pool = lb.pool
	st := tunnel.Stats{Duration: time.Minute, ClientToBackend: 512, BackendToClient: 2048 + 129}
	b.ReportAllocs()
	for b.Loop() {
		lb.be.TunnelStarted()
		lb.s.tunnelDone(lb.cc, lb.ex, lb.be, 129)(st)
	}
}
