//go:build !race

package loop

import (
	"testing"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/tunnel"
)

// discardConn is a client connection whose writes go nowhere: enough for
// the paths that answer a request themselves (error responses, redirects).
type discardConn struct{ netpoll.Connection }

func (discardConn) Writer() netpoll.Writer { return discardWriter{} }
func (discardConn) Reader() netpoll.Reader { return discardReader{} }

type discardReader struct{ netpoll.Reader }

func (discardReader) Skip(int) error { return nil }
func (discardReader) Release() error { return nil }

type discardWriter struct{ netpoll.Writer }

func (discardWriter) WriteBinary(b []byte) (int, error) { return len(b), nil }
func (discardWriter) Flush() error                      { return nil }

// answerServer is a Server with --redirect-https, for the paths that
// answer from a pooled scratch buffer.
func answerServer(tb testing.TB) *Server {
	tb.Helper()
	bal, err := balancer.New(balancer.Config{Backends: []balancer.BackendConfig{{Addr: "127.0.0.1:1"}}, Logf: func(string, ...any) {}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(bal.Close)
	engine, err := tunnel.New(tunnel.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { engine.Close() })
	s, err := New(Config{Listen: []string{"127.0.0.1:0"}, Balancer: bal, Tunnels: engine, Edge: EdgeConfig{RedirectHTTPS: true}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.closeListeners)
	return s
}

// answerPaths returns the three answers the proxy writes from its scratch
// buffers: an error response (fail), a rejected head (rejectErr), and the
// 301 of --redirect-https (edgeRequest).
func answerPaths(tb testing.TB) (fail, reject, redirect func()) {
	s := answerServer(tb)
	cc := &clientConn{conn: discardConn{}}
	ex := exchanges.Get().(*exchange)
	head := []byte("GET /some/path?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if err := ex.req.Parse(head, &http1.Limits{MaxHeaderBytes: 1 << 10}); err != nil {
		tb.Fatal(err)
	}
	fail = func() { s.fail(cc, 502, false) }
	reject = func() { s.rejectErr(cc, http1.ErrHeaderTooLarge); cc.linger = false }
	redirect = func() {
		if _, done := s.edgeRequest(cc, ex, head); !done {
			tb.Fatal("no redirect")
		}
	}
	return
}

// TestAnswerAllocs: answering a request from the proxy itself (an error,
// a rejected head, a redirect) allocates nothing once the pool is warm.
func TestAnswerAllocs(t *testing.T) {
	fail, reject, redirect := answerPaths(t)
	for name, f := range map[string]func(){"fail": fail, "rejectErr": reject, "redirect": redirect} {
		for range 100 {
			f()
		}
		if n := testing.AllocsPerRun(1000, f); n > 0 {
			t.Errorf("%s: %v allocations per answer, want 0", name, n)
		}
	}
}

func BenchmarkAnswer(b *testing.B) {
	fail, reject, redirect := answerPaths(b)
	for _, c := range []struct {
		name string
		f    func()
	}{{"fail", fail}, {"rejectErr", reject}, {"redirect", redirect}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f()
			}
		})
	}
}

// TestAnswerAllocsMixed: a status answered rarely among common ones (one
// answer in 32 here: too few for bytebufferpool's 95% cut), with a longer
// answer, allocates nothing either once the pool has calibrated.
func TestAnswerAllocsMixed(t *testing.T) {
	s := answerServer(t)
	cc := &clientConn{conn: discardConn{}}
	answers := func() {
		for i := range 32 {
			if i == 0 {
				s.fail(cc, 505, false) // 154 bytes
			} else {
				s.fail(cc, 502, false) // 124 bytes
			}
		}
	}
	for range 50000 / 32 { // past bytebufferpool's calibration threshold (42,000)
		answers()
	}
	if n := testing.AllocsPerRun(100, answers); n > 0 {
		t.Fatalf("%v allocations per 32 answers, want 0", n)
	}
}

// TestLongAnswerNotKept: once the pool has seen the usual answers, the
// buffer of a far longer one (a redirect to a long URL) is not kept.
func TestLongAnswerNotKept(t *testing.T) {
	for range 50000 { // past bytebufferpool's calibration threshold (42,000)
		b := buffers.Get()
		b.B = http1.AppendError(b.B, 502, false)
		buffers.Put(b)
	}
	b := buffers.Get()
	b.B = append(b.B, make([]byte, 1<<20)...)
	buffers.Put(b)
	for range 100 {
		b := buffers.Get()
		if cap(b.B) >= 1<<20 {
			t.Fatalf("a %d-byte buffer came back from the pool", cap(b.B))
		}
		defer buffers.Put(b)
	}
}
