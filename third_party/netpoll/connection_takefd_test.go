// wsgate patch tests (patch 8, connection_takefd.go: TakeFd, and no fcntl
// for a Conn that says its socket is non-blocking).

//go:build linux

package netpoll

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type taken struct {
	c   *connection
	fd  int
	err error
}

// serveTake serves connections whose handler, on input, registers a close
// callback that calls TakeFd (sending what it got on out) and then ends
// the connection with Detach (detach true) or Close.
func serveTake(t *testing.T, detach bool, inCallback func(c *connection), out chan<- taken) string {
	var closed atomic.Int32
	return serveHalfClose(t, func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		r.Release()
		c.AddCloseCallback(func(c Connection) error {
			conn := c.(*connection)
			if inCallback != nil {
				inCallback(conn)
			}
			fd, err := TakeFd(c)
			out <- taken{conn, fd, err}
			return nil
		})
		if detach {
			return c.(interface{ Detach() error }).Detach()
		}
		return c.Close()
	}, &closed)
}

// A connection closed with Detach hands its socket to TakeFd, and netpoll
// does not close it or read from it afterwards: once netpoll's own close
// has run, the socket still carries bytes both ways, and the client sees
// its end only when the taker closes it. Without Detach, TakeFd refuses.
func TestTakeFdAfterDetach(t *testing.T) {
	out := make(chan taken, 1)
	addr := serveTake(t, true, nil, out)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("go"))
	var got taken
	select {
	case got = <-out:
	case <-time.After(5 * time.Second):
		t.Fatal("no close callback")
	}
	if got.err != nil {
		t.Fatalf("TakeFd: %v", got.err)
	}
	fd := got.fd
	defer syscall.Close(fd)
	waitFor(t, "netpoll's own close of the connection", func() bool { return atomic.LoadUint32(&got.c.netFD.closed) != 0 })
	if _, err := syscall.Write(fd, []byte("taken")); err != nil {
		t.Fatalf("write to the taken socket: %v", err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "taken" {
		t.Fatalf("client read %q, %v", b, err)
	}
	nc.Write([]byte("more"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := syscall.Read(fd, b)
		if err == nil && n > 0 {
			if string(b[:n]) != "more" {
				t.Fatalf("taken socket read %q, want %q (netpoll read some of it?)", b[:n], "more")
			}
			break
		}
		if err != syscall.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("taken socket: read %d, %v", n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	syscall.Close(fd)
	if n, err := nc.Read(b); err != io.EOF {
		t.Fatalf("client read %d, %v after the taker's close; want EOF", n, err)
	}

	out2 := make(chan taken, 1)
	addr2 := serveTake(t, false, nil, out2)
	nc2, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	nc2.Write([]byte("go"))
	select {
	case got = <-out2:
	case <-time.After(5 * time.Second):
		t.Fatal("no close callback")
	}
	if got.err == nil {
		t.Fatalf("TakeFd of a connection closed with Close gave fd %d, want an error", got.fd)
	}
}

// TakeFd waits while the poller is handling an event it fetched for the
// socket before the detach (its operator in use), and afterwards the
// poller drops such events (do fails): no read of netpoll's reaches the
// socket once it is the taker's. Without the wait, TakeFd returns while
// the operator is still in use.
func TestTakeFdWaitsForPoller(t *testing.T) {
	var released atomic.Bool
	out := make(chan taken, 1)
	addr := serveTake(t, true, func(c *connection) {
		for !c.operator.do() { // as the poller does before it handles an event
			if atomic.LoadInt32(&c.operator.state) == 0 {
				t.Error("operator not registered")
				return
			}
			runtime.Gosched() // the poller is handling an event of its own: wait for it
		}
		go func() {
			time.Sleep(50 * time.Millisecond)
			released.Store(true)
			c.operator.done()
		}()
	}, out)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("go"))
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
	if !released.Load() {
		t.Fatal("TakeFd returned while the poller was handling an event")
	}
	if got.c.operator.do() {
		t.Fatal("the poller may still handle events of a taken socket")
	}
}

// nonblockingConn is a Conn that says its socket is non-blocking.
type nonblockingConn struct{ Conn }

func (nonblockingConn) Nonblocking() bool { return true }

type nonblockingListener struct{ Listener }

func (l nonblockingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return nonblockingConn{c.(Conn)}, nil
}

// A Conn that says its socket is non-blocking gets no fcntl: here the
// socket (from netpoll's own accept(2), blocking) is left blocking, which
// shows that no call was made; a plain Conn's is made non-blocking
// (TestAcceptedConnNonblocking).
func TestNonblockingConnNoFcntl(t *testing.T) {
	inner, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	prepared := make(chan int, 1)
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		return nil
	}, WithOnPrepare(func(c Connection) context.Context {
		prepared <- fdFlags(t, c.(Conn).Fd())
		return context.Background()
	}))
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(nonblockingListener{inner})
	defer loop.Shutdown(context.Background())
	nc, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	select {
	case fl := <-prepared:
		if fl&syscall.O_NONBLOCK != 0 {
			t.Fatalf("flags %#x: O_NONBLOCK set for a Conn that said it was non-blocking (an fcntl was made)", fl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
}
