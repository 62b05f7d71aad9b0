//go:build !race

package accesslog

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestLineAllocs: building a line allocates nothing once the pool is
// warm. (Queued lines hold their buffers until the writer returns them, so
// a burst grows the pool to the queue's depth once; this measures the
// steady state, with the buffer returned.)
func TestLineAllocs(t *testing.T) {
	l := New(io.Discard, 0)
	defer l.Close()
	client, method, host, path := []byte("10.0.0.7"), []byte("GET"), []byte("example.com"), []byte("/some/path?q=1")
	start := time.Now()
	line := func() {
		ln := l.Line("request")
		lineFields(&ln, client, method, host, path, start)
		l.put(ln.b)
	}
	for range 100 {
		line()
	}
	if n := testing.AllocsPerRun(1000, line); n > 0 {
		t.Fatalf("%v allocations per access-log line, want 0", n)
	}
}

// TestLineAllocsMixed: lines of a little more than the usual length (one
// in 32 here: too few for bytebufferpool's 95% cut) allocate nothing
// either, once the pool has calibrated: lines up to minLine share a size.
func TestLineAllocsMixed(t *testing.T) {
	l := New(io.Discard, 0)
	defer l.Close()
	client, method, host := []byte("10.0.0.7"), []byte("GET"), []byte("example.com")
	short, longer := []byte("/some/path?q=1"), []byte("/some/path/"+strings.Repeat("x", 150))
	start := time.Now()
	lines := func() {
		for i := range 32 {
			path := short
			if i == 0 {
				path = longer
			}
			ln := l.Line("request")
			lineFields(&ln, client, method, host, path, start)
			l.put(ln.b)
		}
	}
	for range 50000 / 32 { // past bytebufferpool's calibration threshold (42,000)
		lines()
	}
	if n := testing.AllocsPerRun(100, lines); n > 0 {
		t.Fatalf("%v allocations per 32 lines, want 0", n)
	}
}
