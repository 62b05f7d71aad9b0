// wsgate patch tests (patch 9, connection_deferred.go: deferred
// registration of accepted connections).

//go:build linux

package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// registered reports whether c's socket is in its poller's epoll set, as
// /proc/self/fdinfo of the epoll fd lists it ("tfd: N").
func registered(t *testing.T, c *connection) bool {
	t.Helper()
	p, ok := c.operator.poll.(*defaultPoll)
	if !ok {
		t.Fatalf("poller %T", c.operator.poll)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", p.fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`tfd:\s+(\d+)`).FindAllSubmatch(b, -1) {
		if n, _ := strconv.Atoi(string(m[1])); n == c.fd {
			return true
		}
	}
	return false
}

// serveDeferred serves h on a listener of its own with deferred
// registration and the read threshold wsgate uses. With deferAccept the
// listener has TCP_DEFER_ACCEPT, as wsgate's: a connection is accepted
// once its first bytes are there.
func serveDeferred(t *testing.T, h OnRequest, deferAccept bool) string {
	t.Helper()
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if deferAccept {
		if err := syscall.SetsockoptInt(ln.Fd(), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 5); err != nil {
			t.Fatal(err)
		}
	}
	loop, err := NewEventLoop(h, WithReadThreshold(64<<10), WithDeferredRegister(true))
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

// dialSend connects and sends b in one write.
func dialSend(t *testing.T, addr string, b []byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(b)
	return nc
}

// A connection whose request was there at the accept is served without
// being registered; once its handler has returned with the connection
// open, it is registered, and the next request is served through the
// poller. Without the patch the socket is registered during the first run.
func TestDeferredRegisterFirstRun(t *testing.T) {
	var calls atomic.Int32
	inFirst := make(chan bool, 1)
	addr := serveDeferred(t, func(ctx context.Context, c Connection) error {
		conn := c.(*connection)
		if calls.Add(1) == 1 {
			inFirst <- registered(t, conn)
		}
		r := c.Reader()
		b, _ := r.Next(r.Len())
		c.Writer().WriteBinary(bytes.ToUpper(b))
		return c.Writer().Flush()
	}, true)
	nc := dialSend(t, addr, []byte("one"))
	b := make([]byte, 3)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "ONE" {
		t.Fatalf("read %q, %v", b, err)
	}
	if <-inFirst {
		t.Fatal("the socket was in the poller's epoll set during the first handler run")
	}
	nc.Write([]byte("two"))
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "TWO" {
		t.Fatalf("second request: read %q, %v", b, err)
	}
}

// A handler that needs more than the first read brought (waitRead)
// registers the socket and gets the rest through the poller.
func TestDeferredRegisterWaitRead(t *testing.T) {
	got := make(chan string, 1)
	addr := serveDeferred(t, func(ctx context.Context, c Connection) error {
		b, err := c.Reader().Next(4)
		if err != nil {
			got <- err.Error()
			return c.Close()
		}
		got <- string(b)
		return nil
	}, true)
	nc := dialSend(t, addr, []byte("AB"))
	time.Sleep(50 * time.Millisecond)
	nc.Write([]byte("CD"))
	select {
	case s := <-got:
		if s != "ABCD" {
			t.Fatalf("handler read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never got the rest of its input")
	}
}

// A handler that writes more than the socket takes registers it for
// output and finishes the write.
func TestDeferredRegisterLargeWrite(t *testing.T) {
	const size = 8 << 20
	addr := serveDeferred(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		r.Release()
		c.Writer().WriteBinary(make([]byte, size))
		return c.Writer().Flush()
	}, true)
	nc := dialSend(t, addr, []byte("x"))
	time.Sleep(100 * time.Millisecond) // the server's writes fill the socket first
	n, err := io.CopyN(io.Discard, nc, size)
	if err != nil || n != size {
		t.Fatalf("read %d of %d: %v", n, size, err)
	}
}

// A connection detached during its first handler run was never
// registered: nothing is detached from the poller (no error logged) and
// TakeFd hands over a socket that still works.
func TestDeferredRegisterDetach(t *testing.T) {
	var logged bytes.Buffer
	old := logger
	logger = log.New(&logged, "", 0)
	defer func() { logger = old }()
	out := make(chan taken, 1)
	addr := serveDeferred(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		r.Release()
		c.AddCloseCallback(func(c Connection) error {
			fd, err := TakeFd(c)
			out <- taken{c.(*connection), fd, err}
			return nil
		})
		return c.(interface{ Detach() error }).Detach()
	}, true)
	nc := dialSend(t, addr, []byte("go"))
	var got taken
	select {
	case got = <-out:
	case <-time.After(5 * time.Second):
		t.Fatal("no close callback")
	}
	if got.err != nil {
		t.Fatalf("TakeFd: %v", got.err)
	}
	defer syscall.Close(got.fd)
	if _, err := syscall.Write(got.fd, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "ok" {
		t.Fatalf("client read %q, %v", b, err)
	}
	if logged.Len() > 0 {
		t.Fatalf("netpoll logged: %s", logged.String())
	}
}

// With nothing to read at the accept, the connection is registered at
// once and served when its request comes.
func TestDeferredRegisterNothingAtAccept(t *testing.T) {
	addr := serveDeferred(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		b, _ := r.Next(r.Len())
		c.Writer().WriteBinary(bytes.ToUpper(b))
		return c.Writer().Flush()
	}, false)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	time.Sleep(50 * time.Millisecond) // accepted with nothing to read
	nc.Write([]byte("late"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "LATE" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// Connections closed from another goroutine while the accepting poller
// reads them first (a graceful shutdown finds a new connection idle): no
// panic, no race, nothing logged, every connection answered or closed.
// Before readFirst held the processing lock, the close freed the buffers
// and the operator under the read (a nil-pointer panic on the poller, or a
// read into freed buffers).
func TestDeferredRegisterCloseRace(t *testing.T) {
	var logged bytes.Buffer
	old := logger
	logger = log.New(&logged, "", 0)
	defer func() { logger = old }()
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetsockoptInt(ln.Fd(), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 5); err != nil {
		t.Fatal(err)
	}
	prepared := make(chan Connection, 1024)
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		b, _ := r.Next(r.Len())
		c.Writer().WriteBinary(b)
		return c.Writer().Flush()
	}, WithReadThreshold(64<<10), WithDeferredRegister(true), WithOnPrepare(func(c Connection) context.Context {
		prepared <- c
		return context.Background()
	}))
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	defer loop.Shutdown(context.Background())
	done := make(chan struct{})
	go func() { // closes every other connection as soon as it is set up
		i := 0
		for {
			select {
			case c := <-prepared:
				if i++; i%2 == 0 {
					c.Close()
				}
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	for i := 0; i < 300; i++ {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write([]byte("ping"))
		b := make([]byte, 4)
		n, err := io.ReadFull(nc, b)
		nc.Close()
		if err == nil && string(b) != "ping" {
			t.Fatalf("connection %d: read %q", i, b[:n])
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d: %v (want the answer, or the close)", i, err)
		}
	}
	if logged.Len() > 0 {
		t.Fatalf("netpoll logged: %s", logged.String())
	}
}

// A registration that fails (here: epoll refuses a regular file, EPERM)
// closes the connection when readFirst needed it, and fails the read that
// waited for it, at once: without either the connection would stay open
// and never polled, its reader waiting out its deadline.
func TestDeferredRegisterFailure(t *testing.T) {
	var logged bytes.Buffer
	SetLoggerOutput(&logged)
	defer SetLoggerOutput(os.Stderr)
	open := func() (*connection, int) {
		f, err := os.CreateTemp(t.TempDir(), "reg")
		if err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		c := &connection{}
		opts := &options{deferRegister: true, onRequest: func(context.Context, Connection) error {
			t.Error("the handler ran on nothing")
			return nil
		}}
		if err := c.init(&netFD{fd: fd}, opts); err != nil {
			t.Fatal(err)
		}
		if !c.deferred.pending.Load() {
			t.Fatal("not deferred")
		}
		return c, fd
	}

	c, fd := open()
	c.readFirst() // reads nothing (an empty file), so it must register: refused
	if c.IsActive() {
		t.Error("readFirst: the connection stays open after its registration failed")
	}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 {
		t.Error("readFirst: the fd stays open after its registration failed")
	}

	c, _ = open()
	c.SetReadTimeout(5 * time.Second)
	if _, err := c.Reader().Next(1); err == nil || errors.Is(err, ErrReadTimeout) {
		t.Errorf("Next on a connection that cannot be registered: %v; want the registration's error, not the deadline's", err)
	}
	c.Close()
	if !bytes.Contains(logged.Bytes(), []byte("register failed")) {
		t.Errorf("nothing logged: %q", logged.String())
	}
}
