// wsgate patch tests (connection_inline.go).

//go:build linux

package netpoll

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

type inlineKey struct{}

// serveInline serves a handler that holds the connection after its first
// call (the request consumed, as wsgate's does while a handshake waits),
// counts its calls, and sends every connection on conns. The context
// carries inlineKey.
func serveInline(t *testing.T, calls, closed *atomic.Int32, conns chan<- Connection, block <-chan struct{}) string {
	t.Helper()
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		n := calls.Add(1)
		r := c.Reader()
		if r.Len() > 0 {
			r.Skip(r.Len())
			r.Release()
		}
		if n == 1 {
			Hold(c, true)
			conns <- c
			if block != nil {
				<-block
			}
		}
		return nil
	}, WithOnPrepare(func(c Connection) context.Context {
		c.AddCloseCallback(func(Connection) error {
			closed.Add(1)
			return nil
		})
		return context.WithValue(context.Background(), inlineKey{}, "the connection's")
	}))
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		loop.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func dialInline(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("request"))
	return nc
}

// RunInline runs fn on the caller's goroutine, with the connection's
// context, and does not call the handler; fn's writes reach the peer.
// Returning true runs the handler once, on the runner.
func TestRunInline(t *testing.T) {
	var calls, closed atomic.Int32
	conns := make(chan Connection, 1)
	nc := dialInline(t, serveInline(t, &calls, &closed, conns, nil))
	c := <-conns
	waitFor(t, "the first task's end", func() bool { return c.(*connection).isUnlock(processing) })
	ran := false
	ok := RunInline(c, func(ctx context.Context, conn Connection) bool {
		ran = ctx.Value(inlineKey{}) == "the connection's" && conn == c && !c.(*connection).isUnlock(processing)
		conn.Writer().WriteBinary([]byte("inline"))
		conn.Writer().Flush()
		return false
	})
	if !ok || !ran {
		t.Fatalf("RunInline = %v, fn ran with the context and the lock: %v", ok, ran)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "inline" {
		t.Fatalf("read %q, %v", b, err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1: RunInline calls fn only", n)
	}
	if !c.(*connection).isUnlock(processing) {
		t.Fatal("processing lock held after RunInline")
	}
	RunInline(c, func(context.Context, Connection) bool { return true })
	waitFor(t, "the handler asked for", func() bool { return calls.Load() == 2 })
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2", n)
	}
}

// A Close (or Detach) made by fn runs the close callbacks before RunInline
// returns, on its goroutine; on a closed connection RunInline runs nothing.
func TestRunInlineClose(t *testing.T) {
	var calls, closed atomic.Int32
	conns := make(chan Connection, 1)
	nc := dialInline(t, serveInline(t, &calls, &closed, conns, nil))
	c := <-conns
	waitFor(t, "the first task's end", func() bool { return c.(*connection).isUnlock(processing) })
	if !RunInline(c, func(_ context.Context, conn Connection) bool { conn.Close(); return false }) {
		t.Fatal("RunInline = false")
	}
	if n := closed.Load(); n != 1 {
		t.Fatalf("close callbacks ran %d times when RunInline returned, want 1", n)
	}
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %v, want EOF", err)
	}
	if RunInline(c, func(context.Context, Connection) bool { t.Error("fn ran on a closed connection"); return false }) {
		t.Error("RunInline on a closed connection = true")
	}
	if n := calls.Load(); n != 1 || closed.Load() != 1 {
		t.Errorf("handler ran %d times, close callbacks %d, want 1 and 1", n, closed.Load())
	}
}

// While a handler task runs, fn does not run: RunInline returns false and
// the handler is called once more when the task ends.
func TestRunInlineWhileHandlerRuns(t *testing.T) {
	var calls, closed atomic.Int32
	conns := make(chan Connection, 1)
	block := make(chan struct{})
	dialInline(t, serveInline(t, &calls, &closed, conns, block))
	c := <-conns // its handler blocks
	if RunInline(c, func(context.Context, Connection) bool { t.Error("fn ran beside the handler"); return false }) {
		t.Error("RunInline beside a running handler = true")
	}
	close(block)
	waitFor(t, "the handler's second call", func() bool { return calls.Load() == 2 })
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
}
