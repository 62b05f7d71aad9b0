package loop

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

// TestAccessLogSlowSinkDrops: with a sink that does not take anything,
// sending never blocks; what does not fit the queue is dropped and
// counted, and everything queued is written once the sink moves.
func TestAccessLogSlowSinkDrops(t *testing.T) {
	w := blockedWriter{release: make(chan struct{})}
	const queue, n = 16, 1000
	a := NewAccessLog(w, queue)
	// Lines of 4 KiB: the writer's 64 KiB buffer takes at most 16 of them
	// before it blocks in the sink, however the goroutines are scheduled.
	line := `{"pad":"` + strings.Repeat("x", 4096-11) + "\"}\n"
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			bp := lineBufs.Get().(*[]byte)
			*bp = append((*bp)[:0], line...)
			a.send(bp)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sending to an access log whose sink is stuck blocked")
	}
	// The writer took a few lines (into its buffer, then blocked in the
	// sink), the queue holds queue more; the rest were dropped.
	if d := a.Dropped(); d < n/2 || d > n-queue {
		t.Fatalf("dropped %d of %d lines with a queue of %d, want most of them", d, n, queue)
	}
	close(w.release)
	a.Close()
	if got := a.Written() + a.Dropped(); got != n {
		t.Fatalf("written %d + dropped %d = %d, want %d", a.Written(), a.Dropped(), got, n)
	}
}

// TestAccessLogJSONEscaping: whatever bytes a request carries, each line
// is valid JSON and round-trips the text.
func TestAccessLogJSONEscaping(t *testing.T) {
	for _, s := range []string{"/plain", `/q"uote\back`, "/ctl\x01\x1f\t\r\n", "/utf8-é-✓", "/bad-\xff\xfe"} {
		b := appendJSONString([]byte(`{"v":`), []byte(s))
		b = append(b, '}')
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%q → %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		want = strings.ReplaceAll(want, "\ufffd\ufffd", "\ufffd\ufffd") // each bad byte is one U+FFFD
		if s == "/bad-\xff\xfe" {
			want = "/bad-\ufffd\ufffd"
		}
		if m["v"] != want {
			t.Fatalf("%q → %q, want %q", s, m["v"], want)
		}
	}
	if b := appendJSONStr(nil, `pool"x`); string(b) != `"pool\"x"` {
		t.Fatalf("appendJSONStr: %s", b)
	}
}

// TestAccessLogWriterOrder: lines from many goroutines all arrive, each
// whole, when the sink keeps up.
func TestAccessLogWriterOrder(t *testing.T) {
	var buf syncBuffer
	a := NewAccessLog(&buf, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				bp := lineBufs.Get().(*[]byte)
				b := append((*bp)[:0], `{"g":`...)
				b = append(b, byte('0'+g))
				b = append(b, `,"i":"`...)
				b = append(b, strings.Repeat("x", i)...)
				*bp = append(b, "\"}\n"...)
				a.send(bp)
			}
		}()
	}
	wg.Wait()
	a.Close()
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines)+int(a.Dropped()) != 1600 {
		t.Fatalf("%d lines + %d dropped, want 1600", len(lines), a.Dropped())
	}
	for _, l := range lines {
		if !json.Valid(l) {
			t.Fatalf("torn line: %q", l)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Bytes()
}

var _ io.Writer = blockedWriter{}
