// wsgate patch tests (connection_wake.go).

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

// A handler that returns with its request pending (all input consumed) is
// run again by Wake, and answers then; a second Wake while that handler
// runs calls it once more after it returns; a Wake after the connection
// closed calls nothing.
func TestWakeRunsHandler(t *testing.T) {
	var closed, calls atomic.Int32
	conns := make(chan Connection, 1)
	release := make(chan struct{})
	var pending atomic.Bool
	addr := serveHalfClose(t, func(ctx context.Context, c Connection) error {
		n := calls.Add(1)
		r := c.Reader()
		if r.Len() > 0 { // the request: consumed, answered later
			r.Skip(r.Len())
			r.Release()
			pending.Store(true)
			conns <- c
			return nil
		}
		if pending.Swap(false) {
			if n == 2 {
				<-release // a Wake arrives while this runs
			}
			c.Writer().WriteBinary([]byte("answer"))
			return c.Writer().Flush()
		}
		return nil // a spurious call: nothing to do
	}, &closed)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("request"))
	c := <-conns
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times before Wake, want 1", n)
	}
	if !Wake(c) {
		t.Fatal("Wake = false")
	}
	waitFor(t, "the woken handler", func() bool { return calls.Load() == 2 })
	Wake(c) // the handler is still running: it runs once more after
	close(release)
	b := make([]byte, 6)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "answer" {
		t.Fatalf("read %q, %v", b, err)
	}
	waitFor(t, "the third call", func() bool { return calls.Load() == 3 })
	nc.Close()
	waitFor(t, "the close callback", func() bool { return closed.Load() == 1 })
	Wake(c)
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 3 {
		t.Errorf("handler ran %d times, want 3 (no call after the close)", n)
	}
	if Wake(nil) {
		t.Error("Wake(nil) = true")
	}
}

// A held connection (Hold: a request waits, its handler returned) is not
// idle, and its peer's FIN ends the input instead of closing it: the woken
// handler still answers, and the connection closes after that answer once
// it is no longer held. Without Hold the FIN closes it at once.
func TestHoldHalfClose(t *testing.T) {
	for _, hold := range []bool{true, false} {
		var closed atomic.Int32
		conns := make(chan Connection, 1)
		var pending atomic.Bool
		addr := serveHalfClose(t, func(ctx context.Context, c Connection) error {
			r := c.Reader()
			if r.Len() > 0 {
				r.Skip(r.Len())
				r.Release()
				pending.Store(true)
				Hold(c, hold)
				conns <- c
				return nil
			}
			if pending.Swap(false) {
				Hold(c, false)
				c.Writer().WriteBinary([]byte("answer"))
				return c.Writer().Flush()
			}
			return nil
		}, &closed)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("request"))
		c := <-conns
		time.Sleep(20 * time.Millisecond)
		if idle := c.(*connection).isIdle(); idle == hold {
			t.Fatalf("hold %v: isIdle %v", hold, idle)
		}
		nc.(*net.TCPConn).CloseWrite()
		time.Sleep(50 * time.Millisecond)
		if !hold {
			waitFor(t, "the close of an unheld connection on FIN", func() bool { return closed.Load() == 1 })
			nc.Close()
			continue
		}
		if closed.Load() != 0 {
			t.Fatal("a held connection was closed by its peer's FIN")
		}
		Wake(c)
		b, err := io.ReadAll(nc) // the answer, then the close
		if err != nil || string(b) != "answer" {
			t.Fatalf("read %q, %v (want the answer, then EOF)", b, err)
		}
		waitFor(t, "the close callback", func() bool { return closed.Load() == 1 })
		nc.Close()
	}
}
