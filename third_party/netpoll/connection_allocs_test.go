// wsgate patch tests (patch 11, connection_allocs.go: netpoll's own close
// work runs after the close callbacks, not as two of them).

//go:build linux

package netpoll

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// The server's map entry and the finalizer still come after every close
// callback the user added: inside the callback the connection is still in
// the map and its socket open; after it, the entry is gone and the socket
// closed.
func TestCloseCallbacksBeforeNetpollsOwn(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		inMap, fdOpen bool
		c             *connection
	}
	got := make(chan seen, 1)
	ownCallbacks := make(chan bool, 1)
	var loop EventLoop
	loop, err = NewEventLoop(func(ctx context.Context, c Connection) error {
		ownCallbacks <- c.(*connection).closeCallbacks.Load() != nil
		c.Reader().Skip(c.Reader().Len())
		c.AddCloseCallback(func(c Connection) error {
			conn := c.(*connection)
			v, ok := loop.(*eventLoop).svr.connections.Load(conn.fd)
			_, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(conn.fd), syscall.F_GETFD, 0)
			got <- seen{inMap: ok && v == conn, fdOpen: e == 0, c: conn}
			return nil
		})
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		loop.Shutdown(ctx)
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("x"))
	if <-ownCallbacks {
		t.Error("an accepted connection came with a close callback of netpoll's own")
	}
	var s seen
	select {
	case s = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no close callback")
	}
	if !s.inMap || !s.fdOpen {
		t.Fatalf("in the close callback: in the server's map %v, socket open %v; want both", s.inMap, s.fdOpen)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("client read %d, %v; want the connection closed", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		loop.(*eventLoop).svr.connections.Range(func(_, v interface{}) bool {
			found = found || v == s.c
			return true
		})
		if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection is still in the server's map after its close")
		}
		time.Sleep(time.Millisecond)
	}
}

// init registers no close callback, and Close still runs the finalizer:
// the socket is closed.
func TestInitRegistersNoCloseCallback(t *testing.T) {
	conns := make([]*connection, 20)
	peers := make([]int, len(conns))
	for i := range conns {
		r, w := GetSysFdPairs()
		peers[i] = w // open until the end: no hang-up for the poller to handle meanwhile
		conns[i] = &connection{}
		if err := conns[i].init(&netFD{fd: r}, nil); err != nil {
			t.Fatal(err)
		}
		if conns[i].closeCallbacks.Load() != nil {
			t.Fatal("init registered a close callback")
		}
	}
	for i, c := range conns {
		fd := c.fd
		c.Close()
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 {
			t.Errorf("fd %d still open after Close", fd)
		}
		syscall.Close(peers[i])
	}
}
