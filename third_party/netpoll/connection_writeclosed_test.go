// wsgate patch tests (patch 5, upstream #416: Writer methods after Close).

//go:build linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
)

// Upstream's test from #416 (bd031f0, after v0.7.2), with Append added:
// once a connection is closed and its buffers recycled, every Writer
// method returns an error instead of dereferencing the released buffer.
// Without the patch, Malloc, WriteBinary, WriteString, WriteByte,
// WriteDirect and Append panic (nil pointer).
func TestWriterAfterClose(t *testing.T) {
	r, w := GetSysFdPairs()
	rconn, wconn := &connection{}, &connection{}
	rconn.init(&netFD{fd: r}, nil)
	wconn.init(&netFD{fd: w}, nil)

	err := wconn.Close()
	MustNil(t, err)

	for wconn.IsActive() {
		runtime.Gosched()
	}

	methods := []struct {
		name string
		fn   func() error
	}{
		{"Malloc", func() error { _, err := wconn.Malloc(1); return err }},
		{"MallocAck", func() error { return wconn.MallocAck(0) }},
		{"WriteBinary", func() error { _, err := wconn.WriteBinary([]byte("hi")); return err }},
		{"WriteString", func() error { _, err := wconn.WriteString("hi"); return err }},
		{"WriteByte", func() error { return wconn.WriteByte('a') }},
		{"WriteDirect", func() error { return wconn.WriteDirect([]byte("hi"), 0) }},
		{"Append", func() error {
			lb := NewLinkBuffer()
			lb.WriteBinary([]byte("hi"))
			lb.Flush()
			return wconn.Append(lb)
		}},
		{"Flush", func() error { return wconn.Flush() }},
	}
	for _, tc := range methods {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Writer.%s panicked after Close: %v", tc.name, r)
				}
			}()
			err := tc.fn()
			Assert(t, err != nil, fmt.Sprintf("Writer.%s should return error after Close", tc.name))
		})
	}
	rconn.Close()
}

// The way wsgate could meet it: a server connection whose peer hung up
// while no handler ran is closed by the poller (its buffers recycled), and
// a goroutine that kept the connection writes to it afterwards. Inside a
// handler this cannot happen (the buffers are recycled only once the
// handler has returned), so this is a goroutine outside it.
func TestWriteBinaryAfterPeerClose(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	MustNil(t, err)
	conns := make(chan Connection, 1)
	closed := make(chan struct{})
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		return r.Release()
	}, WithOnPrepare(func(c Connection) context.Context {
		c.AddCloseCallback(func(Connection) error {
			close(closed)
			return nil
		})
		conns <- c
		return context.Background()
	}))
	MustNil(t, err)
	go loop.Serve(ln)
	defer loop.Shutdown(context.Background())

	nc, err := net.Dial("tcp", ln.Addr().String())
	MustNil(t, err)
	c := <-conns
	nc.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's close did not close the connection")
	}
	for _, msg := range []string{"HTTP/1.1 502 Bad Gateway\r\n\r\n", "more"} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("WriteBinary after the peer closed panicked: %v", r)
				}
			}()
			_, err := c.Writer().WriteBinary([]byte(msg))
			if !errors.Is(err, ErrConnClosed) {
				t.Fatalf("WriteBinary after the peer closed: %v, want ErrConnClosed", err)
			}
		}()
	}
	if err := c.Writer().Flush(); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Flush after the peer closed: %v, want ErrConnClosed", err)
	}
}
