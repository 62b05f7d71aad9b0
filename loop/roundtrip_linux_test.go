package loop

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// roundTripPeer dials a loopback listener whose accepted connection is given
// to serve, and wraps the dialled side as an upConn.
func roundTripPeer(t *testing.T, serve func(net.Conn)) *upConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		serve(c)
	}()
	f, err := dialRaw(netip.MustParseAddrPort(ln.Addr().String()), ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := newUpConn(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.c.Close() })
	uc.c.SetDeadline(time.Now().Add(10 * time.Second))
	return uc
}

// roundTrip writes the request and reads the answer; a request larger than
// the socket buffers (the write inside the wait is partial) is finished
// the ordinary way, and every byte arrives before the answer is read.
func TestRoundTrip(t *testing.T) {
	for _, size := range []int{200, 16 << 20} {
		req := bytes.Repeat([]byte("r"), size)
		got := make(chan int, 1)
		uc := roundTripPeer(t, func(c net.Conn) {
			defer c.Close()
			time.Sleep(20 * time.Millisecond) // the proxy's write fills the buffers first
			n, _ := io.ReadFull(c, make([]byte, size))
			got <- n
			c.Write([]byte("answer"))
		})
		buf := make([]byte, 64)
		n, serr, err := uc.roundTrip(req, buf)
		if serr != nil || err != nil || string(buf[:n]) != "answer" {
			t.Fatalf("%d-byte request: %q, send %v, read %v", size, buf[:n], serr, err)
		}
		if m := <-got; m != size {
			t.Fatalf("backend read %d of %d bytes", m, size)
		}
	}
}

// A backend that closes without answering gives io.EOF (the exchange's
// stale test); one that never answers gives a timeout at the deadline; a
// closed connection fails the send.
func TestRoundTripErrors(t *testing.T) {
	uc := roundTripPeer(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 3))
		c.Close()
	})
	if _, serr, err := uc.roundTrip([]byte("GET"), make([]byte, 8)); serr != nil || !errors.Is(err, io.EOF) {
		t.Fatalf("peer closed: send %v, read %v; want io.EOF", serr, err)
	}

	hold := make(chan struct{})
	defer close(hold)
	uc = roundTripPeer(t, func(c net.Conn) { <-hold; c.Close() })
	uc.c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, serr, err := uc.roundTrip([]byte("GET"), make([]byte, 8)); serr != nil || !isTimeout(err) {
		t.Fatalf("silent peer: send %v, read %v; want a timeout", serr, err)
	}

	uc = roundTripPeer(t, func(c net.Conn) { c.Close() })
	uc.c.Close()
	if _, serr, _ := uc.roundTrip([]byte("GET"), make([]byte, 8)); serr == nil {
		t.Fatal("closed connection: the send did not fail")
	}

	// The peer reset the connection before the request: the write or the
	// wait reports it (never a hang until the deadline).
	// (The reset waits until the dial has finished: a reset that lands
	// while connect's result is being read fails the dial instead.)
	dialed := make(chan struct{})
	uc = roundTripPeer(t, func(c net.Conn) {
		<-dialed
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	close(dialed)
	time.Sleep(20 * time.Millisecond)
	_, serr, err := uc.roundTrip([]byte("GET"), make([]byte, 8))
	if e := errors.Join(serr, err); !errors.Is(e, syscall.ECONNRESET) && !errors.Is(e, syscall.EPIPE) && !errors.Is(e, io.EOF) {
		t.Fatalf("reset peer: send %v, read %v", serr, err)
	}
}
