package loop

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// dialPending with a request head sends it right after the connect, in
// place of connectDone's poll (pending.go). These tests use real loopback
// sockets; what the kernel answers a send on a connecting socket is what
// the code relies on, and is tested as such.

var testHead = []byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")

func testEngine(t *testing.T) *tunnel.Engine {
	t.Helper()
	e, err := tunnel.New(tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// answerHead is the backend of these tests: on c it reads n bytes (the
// head), answers "answer", reads until the proxy's side closes, and sends
// all it read on got (nil on an error).
func answerHead(c net.Conn, n int, got chan<- []byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	head := make([]byte, n)
	if _, err := io.ReadFull(c, head); err != nil {
		got <- nil
		return
	}
	c.Write([]byte("answer"))
	rest, _ := io.ReadAll(c)
	got <- append(head, rest...)
}

// finishHead sends what dialPending did not send of head through the
// exchange's roundTrip, reads the answer, closes, and checks that the
// backend received head exactly once.
func finishHead(t *testing.T, ps *pendSock, head []byte, got <-chan []byte) {
	t.Helper()
	uc, err := newUpConn(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	if uc.headSent() != ps.sent {
		t.Fatalf("headSent %d, but dialPending sent %d", uc.headSent(), ps.sent)
	}
	uc.c.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64)
	n, serr, err := uc.roundTrip(head[uc.headSent():], buf)
	if serr != nil || err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("roundTrip of the rest: %q, send %v, read %v", buf[:n], serr, err)
	}
	uc.c.Close()
	if b := <-got; string(b) != string(head) {
		t.Fatalf("backend received %d bytes, want the %d-byte head once, intact", len(b), len(head))
	}
}

// A connected socket takes the head with the connect: the pendSock says
// all of it went, so the exchange sends nothing more (roundTrip with an
// empty req only waits for the answer), and the backend receives the
// head exactly once. That the send, not a poll, found the connection up
// shows in sent: the poll's path sends nothing.
func TestDialPendingSendsHead(t *testing.T) {
	e := testEngine(t)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", addr, err)
			continue
		}
		defer ln.Close()
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- nil
				return
			}
			answerHead(c, len(testHead), got)
		}()
		ap := netip.MustParseAddrPort(ln.Addr().String())
		ps, err := dialPending(e, ap, ln.Addr().String(), time.Second, testHead)
		if err != nil {
			t.Fatalf("%s: %v", ap, err)
		}
		if ps.sent != len(testHead) {
			ps.Close()
			t.Fatalf("%s: sent %d bytes of the %d-byte head with the connect", ap, ps.sent, len(testHead))
		}
		finishHead(t, ps, testHead, got)
	}
}

// A refused connect is found by the send and returned as dialPending
// returned it before (an *os.PathError "connect", refused by the
// metrics' kind), so that connectTo goes on to the next backend. The
// reserved address is bound and never listens: a connect to it is
// refused, and on loopback the refusal comes after connect(2) returned
// EINPROGRESS, so it is the send that sees it.
func TestDialPendingRefused(t *testing.T) {
	e := testEngine(t)
	addr := reserveAddr(t)
	ap := netip.MustParseAddrPort(addr)

	// What the code relies on: the connect is in progress, and a send then
	// returns the refusal (not EAGAIN, not EPIPE).
	fd, err := startConnect(ap, addr)
	if err != nil {
		t.Logf("connect(2) itself failed (%v): the send's refusal is not reached on this kernel", err)
	} else {
		_, err := rawsys.Write(fd, testHead)
		rawsys.Close(fd)
		if err != unix.ECONNREFUSED {
			t.Fatalf("send after a refused connect: %v, want ECONNREFUSED", err)
		}
	}

	for _, first := range [][]byte{testHead, nil} {
		ps, err := dialPending(e, ap, addr, time.Second, first)
		if err == nil {
			ps.Close()
			t.Fatalf("head %v: dial to a refusing address succeeded", first != nil)
		}
		var pe *os.PathError
		if !errors.As(err, &pe) || pe.Op != "connect" || pe.Path != addr || !errors.Is(err, syscall.ECONNREFUSED) || dialErrKind(err) != upRefused {
			t.Fatalf("head %v: %#v (%v, kind %s), want a connect PathError, refused", first != nil, err, err, dialErrKind(err))
		}
	}
}

// A connect still in progress takes nothing: the send says EAGAIN and the
// socket waits for the connect as without a head; once it is up, the
// whole head goes out with the exchange's wait for the answer, once. A
// listener whose accept queue is full (backlog 0, not accepting) drops
// SYNs; accepting makes room, and the client's retransmitted SYN (a
// second later) completes the connect.
func TestDialPendingStillConnecting(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a SYN retransmission")
	}
	e := testEngine(t)
	lfd, ap := neverAccepting(t) // dial_linux_test.go

	// Fill the accept queue: a dial that times out found it full.
	var held []*pendSock
	defer func() {
		for _, ps := range held {
			ps.Close()
		}
	}()
	full := false
	for range 8 {
		ps, err := dialPending(e, ap, ap.String(), 200*time.Millisecond, testHead)
		if err == nil {
			held = append(held, ps)
			continue
		}
		if !isTimeout(err) || dialErrKind(err) != upConnTO {
			t.Fatalf("dial to a full accept queue: %v (kind %s), want a connect timeout", err, dialErrKind(err))
		}
		full = true
		break
	}
	if !full {
		t.Skip("this kernel completed every connect to a full accept queue")
	}

	type dialed struct {
		ps  *pendSock
		err error
	}
	res := make(chan dialed, 1)
	go func() {
		ps, err := dialPending(e, ap, ap.String(), 20*time.Second, testHead)
		res <- dialed{ps, err}
	}()
	time.Sleep(100 * time.Millisecond) // its SYN is dropped (a later one finds room)
	var accepted []int
	defer func() {
		for _, fd := range accepted {
			unix.Close(fd)
		}
	}()
	for range held { // the queued connections; the heads they sent stay unread
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, fd)
	}
	d := <-res
	if d.err != nil {
		t.Fatal(d.err)
	}
	ps := d.ps
	defer ps.Close()
	if ps.sent != 0 {
		t.Logf("the connect was up when the head was sent (%d bytes): the fallback was not exercised", ps.sent)
	}
	cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(cfd), "backend")
	c, err := net.FileConn(f) // a duplicate
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan []byte, 1)
	go answerHead(c, len(testHead), got)
	finishHead(t, ps, testHead, got)
}

// A head too big for the socket's buffers goes partly with the connect:
// sent says how much, the exchange sends the rest (roundTrip with the
// remainder), and the backend receives every byte once, in order. The
// backend reads only after dialPending returned, so the send cannot take
// 8 MiB at once.
func TestDialPendingPartialSend(t *testing.T) {
	e := testEngine(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	head := make([]byte, 8<<20)
	for i := range head {
		head[i] = byte(i*7 + i>>10)
	}
	start := make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		<-start
		answerHead(c, len(head), got)
	}()
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ps, err := dialPending(e, ap, ln.Addr().String(), time.Second, head)
	close(start)
	if err != nil {
		t.Fatal(err)
	}
	if ps.sent <= 0 || ps.sent >= len(head) {
		ps.Close()
		t.Fatalf("sent %d of %d bytes with the connect; the test needs a partial send", ps.sent, len(head))
	}
	finishHead(t, ps, head, got)
}
