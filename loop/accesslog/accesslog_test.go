package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockedWriter never returns from Write until released: a sink that
// stopped (a full disk, a stuck pipe).
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// fill starts a line of type "t" holding v (the queue tests' lines).
func fill(l *Log, v string) Line {
	ln := l.Line("t")
	ln.String("v", v)
	return ln
}

// TestSlowSinkDrops: with a sink that does not take anything, submitting
// never blocks; what does not fit the queue is dropped and counted, and
// everything queued is written once the sink moves.
func TestSlowSinkDrops(t *testing.T) {
	w := blockedWriter{release: make(chan struct{})}
	const queue, n = 16, 1000
	l := New(w, queue)
	// Lines of about 4 KiB: the writer's 64 KiB buffer takes at most 16 of
	// them before it blocks in the sink, however the goroutines are
	// scheduled.
	pad := strings.Repeat("x", 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			ln := fill(l, pad)
			l.Submit(&ln)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("submitting to an access log whose sink is stuck blocked")
	}
	// The writer took a few lines (into its buffer, then blocked in the
	// sink), the queue holds queue more; the rest were dropped.
	if d := l.Dropped(); d < n/2 || d > n-queue {
		t.Fatalf("dropped %d of %d lines with a queue of %d, want most of them", d, n, queue)
	}
	close(w.release)
	l.Close()
	if got := l.Written() + l.Dropped(); got != n {
		t.Fatalf("written %d + dropped %d = %d, want %d", l.Written(), l.Dropped(), got, n)
	}
}

// slowWriter takes everything, slowly.
type slowWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestCloseFlushes: Close returns once every queued line is in the sink;
// a line submitted after Close is dropped and counted, without a panic.
func TestCloseFlushes(t *testing.T) {
	var w slowWriter
	const n = 500
	l := New(&w, n)
	for i := range n {
		ln := l.Line("t")
		ln.Int("i", int64(i))
		l.Submit(&ln)
	}
	l.Close()
	if l.Written() != n || l.Dropped() != 0 {
		t.Fatalf("written %d, dropped %d, want %d and 0", l.Written(), l.Dropped(), n)
	}
	lines := bytes.Split(bytes.TrimSuffix(w.b.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != n {
		t.Fatalf("%d lines in the sink after Close, want %d", len(lines), n)
	}
	for i, b := range lines {
		var m struct{ I int }
		if err := json.Unmarshal(b, &m); err != nil || m.I != i {
			t.Fatalf("line %d: %s (%v)", i, b, err)
		}
	}
	ln := fill(l, "late")
	l.Submit(&ln)
	if l.Dropped() != 1 || l.Written() != n {
		t.Fatalf("after Close: written %d, dropped %d, want %d and 1", l.Written(), l.Dropped(), n)
	}
	l.Close() // twice is fine
}

// TestEscaping: whatever bytes a value carries, the line is valid JSON
// and round-trips the text, each byte that starts no valid UTF-8 sequence
// becoming one U+FFFD.
func TestEscaping(t *testing.T) {
	l := New(io.Discard, 0)
	defer l.Close()
	for _, c := range []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/q"uote\back`, `/q"uote\back`},
		{"/ctl\x00\x01\x1f\x7f\t\r\n", "/ctl\x00\x01\x1f\x7f\t\r\n"},
		{"/utf8-é-✓-😀", "/utf8-é-✓-😀"},
		{"/bad-\xff\xfe", "/bad-\ufffd\ufffd"},
		{"/cut-\xe2\x9c", "/cut-\ufffd\ufffd"},
		{"\u2028", "\u2028"},
		{"", ""},
	} {
		for _, asString := range []bool{false, true} {
			ln := l.Line("t")
			if asString {
				ln.String("v", c.in)
			} else {
				ln.ByteString("v", []byte(c.in))
			}
			b := append(ln.b.B, '}')
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%q → %s: %v", c.in, b, err)
			}
			if m["v"] != c.want {
				t.Fatalf("%q → %q, want %q", c.in, m["v"], c.want)
			}
			l.put(ln.b)
		}
	}
	ln := l.Line("t")
	ln.String("pool", `pool"x`)
	if got := string(ln.b.B[strings.Index(string(ln.b.B), `,"pool"`):]); got != `,"pool":"pool\"x"` {
		t.Fatalf("String: %s", got)
	}
}

// TestLineShape: a line is one JSON object on one line, the time (UTC,
// microseconds) and the type first, then the fields in the order added.
func TestLineShape(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, 0)
	before := time.Now()
	ln := l.Line("request")
	ln.ByteString("client", []byte("10.0.0.7"))
	ln.Int("status", 200)
	ln.Int("bytes_in", -1)
	ln.Millis("duration_ms", 1234567*time.Nanosecond)
	ln.String("reason", "client_closed")
	l.Submit(&ln)
	l.Close()
	line := buf.String()
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	const rest = `","type":"request","client":"10.0.0.7","status":200,"bytes_in":-1,"duration_ms":1.234,"reason":"client_closed"}` + "\n"
	if !strings.HasPrefix(line, `{"time":"`) || !strings.HasSuffix(line, rest) {
		t.Fatalf("line %q", line)
	}
	ts := strings.TrimSuffix(strings.TrimPrefix(line, `{"time":"`), rest)
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || len(ts) != len("2006-01-02T15:04:05.000000Z") || !strings.HasSuffix(ts, "Z") {
		t.Fatalf("time %q: %v", ts, err)
	}
	if d := tm.Sub(before); d < -time.Microsecond || d > time.Minute {
		t.Fatalf("time %v, %v after the call", tm, d)
	}
}

// TestWriterOrder: lines from many goroutines all arrive, each whole,
// when the sink keeps up.
func TestWriterOrder(t *testing.T) {
	var w slowWriter
	l := New(&w, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ln := l.Line("t")
				ln.Int("g", int64(g))
				ln.String("i", strings.Repeat("x", i))
				l.Submit(&ln)
			}
		}()
	}
	wg.Wait()
	l.Close()
	lines := bytes.Split(bytes.TrimSpace(w.b.Bytes()), []byte("\n"))
	if len(lines)+int(l.Dropped()) != 1600 {
		t.Fatalf("%d lines + %d dropped, want 1600", len(lines), l.Dropped())
	}
	for _, b := range lines {
		if !json.Valid(b) {
			t.Fatalf("torn line: %q", b)
		}
	}
}

// TestHugeLineNotKept: once the pool has seen the usual line lengths, the
// buffer of a line far longer than those is not kept for later lines.
func TestHugeLineNotKept(t *testing.T) {
	l := New(io.Discard, 0)
	defer l.Close()
	for range 50000 { // past bytebufferpool's calibration threshold (42,000)
		ln := fill(l, "/usual/path?q=1")
		l.put(ln.b)
	}
	huge := strings.Repeat("x", 1<<20)
	ln := fill(l, huge)
	l.put(ln.b)
	for range 100 {
		b := l.get()
		if cap(b.B) >= 1<<20 {
			t.Fatalf("a %d-byte buffer came back from the pool", cap(b.B))
		}
		defer l.put(b)
	}
}

// lineFields adds the fields of a request line (loop/record.go's).
func lineFields(ln *Line, client, method, host, path []byte, start time.Time) {
	ln.ByteString("client", client)
	ln.ByteString("method", method)
	ln.ByteString("host", host)
	ln.ByteString("path", path)
	ln.Int("status", 200)
	ln.String("pool", "default")
	ln.String("backend", "10.0.0.11:3000")
	ln.Millis("duration_ms", time.Since(start))
	ln.Int("bytes_in", 0)
	ln.Int("bytes_out", 1234)
}

// BenchmarkLine is the building of a request line alone, into a pooled
// buffer, without the queue and the writer.
func BenchmarkLine(b *testing.B) {
	l := New(io.Discard, 0)
	defer l.Close()
	client, method, host, path := []byte("10.0.0.7"), []byte("GET"), []byte("example.com"), []byte("/some/path?q=1")
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ln := l.Line("request")
		lineFields(&ln, client, method, host, path, start)
		l.put(ln.b)
	}
}

// BenchmarkLineMixed builds request lines of which one in 32 has a 4 KiB
// path: the pool keeps buffers of the usual size, and the long lines
// allocate theirs (about 8 KiB per long line, 1/32 of the lines) instead of
// growing a buffer that every later line would then hold.
func BenchmarkLineMixed(b *testing.B) {
	l := New(io.Discard, 0)
	defer l.Close()
	client, method, host := []byte("10.0.0.7"), []byte("GET"), []byte("example.com")
	short, long := []byte("/some/path?q=1"), []byte("/"+strings.Repeat("x", 4095))
	start := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		path := short
		if i++; i%32 == 0 {
			path = long
		}
		ln := l.Line("request")
		lineFields(&ln, client, method, host, path, start)
		l.put(ln.b)
	}
}
