// wsgate patch tests (connection_halfclose.go).

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

// serveHalfClose starts an event loop with the read threshold set (the
// patch is active only then) and handler h; it returns the address.
func serveHalfClose(t *testing.T, h OnRequest, closed *atomic.Int32) string {
	t.Helper()
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loop, err := NewEventLoop(h, WithReadThreshold(64<<10), WithOnPrepare(func(c Connection) context.Context {
		c.AddCloseCallback(func(Connection) error {
			closed.Add(1)
			return nil
		})
		return context.Background()
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

// A request followed by the client's FIN, answered after the FIN came:
// the answer still reaches the client, and then the connection closes.
func TestHalfCloseAnswerAfterFIN(t *testing.T) {
	var closed atomic.Int32
	addr := serveHalfClose(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		req, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // the FIN arrives meanwhile
		c.Writer().WriteBinary(append([]byte("got "), req...))
		return c.Writer().Flush()
	}, &closed)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("ping"))
	nc.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(nc) // the answer, then EOF: the server closed
	if err != nil || string(b) != "got ping" {
		t.Fatalf("read %q, %v; want %q then EOF", b, err, "got ping")
	}
	waitFor(t, "the close callback", func() bool { return closed.Load() == 1 })
}

// A handler waiting for more input than the peer will send gets ErrEOF as
// soon as the FIN comes, not at its read timeout.
func TestHalfCloseWakesWaitingReader(t *testing.T) {
	var closed atomic.Int32
	errc := make(chan error, 1)
	addr := serveHalfClose(t, func(ctx context.Context, c Connection) error {
		c.SetReadTimeout(10 * time.Second)
		_, err := c.Reader().Next(100) // only 4 bytes will ever come
		errc <- err
		c.Writer().WriteBinary([]byte("bye"))
		c.Writer().Flush()
		return c.Close()
	}, &closed)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("ping"))
	time.Sleep(50 * time.Millisecond) // the handler waits for more
	nc.(*net.TCPConn).CloseWrite()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Next(100) after a FIN with 4 bytes: no error")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting reader was not woken by the FIN")
	}
	if b, _ := io.ReadAll(nc); string(b) != "bye" {
		t.Fatalf("read %q after the FIN, want the handler's write %q", b, "bye")
	}
}

// A FIN on an idle connection (no handler, nothing unread) closes it, as
// upstream does.
func TestHalfCloseIdleFINCloses(t *testing.T) {
	var closed atomic.Int32
	addr := serveHalfClose(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		r.Release()
		return nil
	}, &closed)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond) // served, now idle
	nc.(*net.TCPConn).CloseWrite()
	waitFor(t, "the idle connection closed after the FIN", func() bool { return closed.Load() == 1 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
