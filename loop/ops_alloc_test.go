//go:build !race

package loop

import (
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// TestAccessLineAllocs: building a request's line allocates nothing once
// the buffer pool is warm. (Queued lines hold their buffers until the
// writer returns them, so a burst grows the pool to the queue's depth
// once; this measures the steady state, with the buffer returned.)
func TestAccessLineAllocs(t *testing.T) {
	var r accessRec
	r.data = append(r.data, "GET"...)
	r.m = len(r.data)
	r.data = append(r.data, "example.com"...)
	r.h = len(r.data)
	r.data = append(r.data, "/some/path?q=1"...)
	r.start = time.Now()
	client := []byte("10.0.0.7")
	var sink discard
	line := func() {
		bp := lineBufs.Get().(*[]byte)
		b := appendLineStart(*bp, "request", client)
		b = append(b, `,"method":`...)
		b = appendJSONString(b, r.data[:r.m])
		b = append(b, `,"host":`...)
		b = appendJSONString(b, r.data[r.m:r.h])
		b = append(b, `,"path":`...)
		b = appendJSONString(b, r.data[r.h:])
		b = appendPoolBackend(b, nil, nil)
		b = appendDuration(b, time.Since(r.start))
		b = appendBytes(b, 0, 1234)
		*bp = append(b, "}\n"...)
		sink.Write(*bp)
		*bp = (*bp)[:0]
		lineBufs.Put(bp)
	}
	for range 100 {
		line()
	}
	if n := testing.AllocsPerRun(1000, line); n > 0 {
		t.Fatalf("%v allocations per access-log line, want 0", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkExchangeDone is the per-request cost the operations work adds
// to every exchange with the access log off: recording the head's framing
// and counting the request by pool and status class.
func BenchmarkExchangeDone(b *testing.B) {
	bal, err := balancer.New(balancer.Config{Backends: []balancer.BackendConfig{{Addr: "127.0.0.1:1"}}, Logf: func(string, ...any) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer bal.Close()
	s := &Server{}
	cc := &clientConn{}
	ex := exchanges.Get().(*exchange)
	head := []byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if err := ex.req.Parse(head, &http1.Limits{MaxHeaderBytes: 1 << 10}); err != nil {
		b.Fatal(err)
	}
	pool := bal.Pools()[0]
	b.ReportAllocs()
	for b.Loop() {
		s.recordHead(ex, head)
		ex.rec.pool = pool
		cc.status = 200
		s.exchangeDone(cc, ex)
	}
}
