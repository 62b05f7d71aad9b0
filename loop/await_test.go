package loop_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// The wait for a WebSocket backend's 101 without the handler (await.go).
// Each test checks with AwaitCounts which way its handshake went: taken
// by the tunnel engine's loop, or handed to a handler.

// switching answers a handshake read from br on c with a 101, in parts
// split at the given offsets (a pause between them).
func switching(c net.Conn, br *bufio.Reader, split ...int) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"
	at := 0
	for _, s := range split {
		io.WriteString(c, resp[at:s])
		at = s
		time.Sleep(50 * time.Millisecond)
	}
	io.WriteString(c, resp[at:])
}

// echoRest sends back to the client whatever it sends (the tests compare
// bytes, not frames).
func echoRest(c net.Conn, br *bufio.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			c.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// afterWaits holds a test backend's answer until n handshakes have begun
// to wait without their handler: a backend that answered first would find
// the handler still running, which then reads the answer itself (await.go:
// startAwait), and the test would not test the wait.
type afterWaits struct{ p atomic.Pointer[proxy] }

func (a *afterWaits) wait(n int64) {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if p := a.p.Load(); p != nil {
			if w, _ := p.srv.AwaitCounts(); w >= n {
				return
			}
		}
	}
}

// checkRelayed sends a frame through the tunnel on c, to a backend that
// sends back what it gets (echoRest), and checks it comes back intact.
func checkRelayed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	frame := maskedFrame("hi")
	c.Write(frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != string(frame) {
		t.Fatalf("relayed %q, %v", got, err)
	}
}

// write101 answers a handshake whose Sec-WebSocket-Key is key.
func write101(c net.Conn, key string) {
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(key)+"\r\n\r\n")
}

func checkAwait(t *testing.T, p *proxy, waited, onLoop int64) {
	t.Helper()
	w, l := p.srv.AwaitCounts()
	if w != waited || l != onLoop {
		t.Errorf("AwaitCounts: %d waited, %d finished on the loop; want %d and %d", w, l, waited, onLoop)
	}
}

// A 101 that arrives in parts is read part by part on the loop, which
// starts the tunnel when the head is whole; the tunnel relays.
func TestAwaitSplit101(t *testing.T) {
	var aw afterWaits
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		aw.wait(1)
		switching(c, br, 9, 40)
		echoRest(c, br)
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	c, br, resp := upgrade(t, p.addr)
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	checkRelayed(t, c, br)
	checkAwait(t, p, 1, 1)
}

// An interim response before the 101 goes on in a handler, which relays
// it (RFC 9110 15.2) and then the 101; the tunnel relays.
func TestAwaitInterimThenSwitch(t *testing.T) {
	var aw afterWaits
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		aw.wait(1)
		io.WriteString(c, "HTTP/1.1 102 Processing\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		write101(c, req.Header.Get("Sec-WebSocket-Key"))
		echoRest(c, br)
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, handshake("x", "/ws"))
	br := bufio.NewReader(c)
	head, err := readHead(br)
	if err != nil || !strings.HasPrefix(head, "HTTP/1.1 102 ") {
		t.Fatalf("first head %q, %v; want the 102", head, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("then %v, %v; want the 101", resp, err)
	}
	checkRelayed(t, c, br)
	checkAwait(t, p, 1, 0)
}

// A 101 with the wrong Sec-WebSocket-Accept is handed to a handler and
// answered 502; nothing of it reaches the client.
func TestAwaitBad101(t *testing.T) {
	var aw afterWaits
	be := rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		aw.wait(1)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n")
		time.Sleep(time.Second)
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	upgradeFails(t, p, 502)
	checkAwait(t, p, 1, 0)
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
}

// A client that sends a frame while its handshake waits (it should not,
// RFC 6455 4.1, but may): the poller does not read the client meanwhile
// (netpoll.HoldUnpolled), so the frame stays in the socket and the tunnel
// relays it after the 101, in order.
func TestAwaitClientFrameBeforeAnswer(t *testing.T) {
	var aw afterWaits
	got := make(chan string, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- err.Error()
			return
		}
		aw.wait(1)
		time.Sleep(150 * time.Millisecond) // the client's frame comes meanwhile
		write101(c, req.Header.Get("Sec-WebSocket-Key"))
		b := make([]byte, len(maskedFrame("early")))
		_, err = io.ReadFull(br, b)
		got <- string(b)
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, handshake("x", "/ws"))
	time.Sleep(50 * time.Millisecond)
	c.Write(maskedFrame("early"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v, %v; want the 101", resp, err)
	}
	if b := <-got; b != string(maskedFrame("early")) {
		t.Fatalf("backend read %q after its 101, want the client's frame", b)
	}
	checkAwait(t, p, 1, 1)
}

// A client that resets its connection while its handshake waits: the
// answer then starts a tunnel whose client is gone, which ends at once;
// the backend sees its connection close, and every count goes back.
func TestAwaitClientGoneBeforeAnswer(t *testing.T) {
	var aw afterWaits
	closed := make(chan error, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			closed <- err
			return
		}
		aw.wait(1)
		time.Sleep(150 * time.Millisecond) // the client resets meanwhile
		write101(c, req.Header.Get("Sec-WebSocket-Key"))
		_, err = br.ReadByte()
		closed <- err
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	c := dial(t, p.addr)
	io.WriteString(c, handshake("x", "/ws"))
	time.Sleep(50 * time.Millisecond)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	if err := <-closed; err != io.EOF && !isReset(err) {
		t.Fatalf("backend's read after its 101: %v, want the proxy's close", err)
	}
	eventually(t, "tunnels closed", func() bool { return p.engine.Len() == 0 })
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
	eventually(t, "no exchange in flight", func() bool { return p.srv.InFlight() == 0 })
	checkAwait(t, p, 1, 1)
}

// On a connection the poller reads (a keep-alive one: registered after
// its first request), a client that resets while its handshake waits is
// seen at once: the close callback ends the wait (awaitGone), closing the
// backend's connection before it answers, and every count goes back.
func TestAwaitClientGoneOnPolledConnection(t *testing.T) {
	closed := make(chan error, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			closed <- err
			return
		}
		if req.Header.Get("Upgrade") == "" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		_, err = br.ReadByte() // never answers: the proxy closes first
		closed <- err
	})
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v, %v", resp, err)
	}
	io.ReadAll(io.LimitReader(br, 2))
	io.WriteString(c, handshake("x", "/ws"))
	eventually(t, "the handshake waiting", func() bool { w, _ := p.srv.AwaitCounts(); return w == 1 })
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case err := <-closed:
		if err != io.EOF && !isReset(err) {
			t.Fatalf("backend's read: %v, want the proxy's close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's connection stayed open after its client reset")
	}
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
	eventually(t, "no exchange in flight", func() bool { return p.srv.InFlight() == 0 })
	checkAwait(t, p, 1, 0)
}

// The tunnel engine stopping while a handshake waits ends the wait at
// once (closePending tells the Notifier): the client is answered 502, not
// after the response timeout.
func TestAwaitEngineStops(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		time.Sleep(3 * time.Second) // no answer while the engine stops
	})
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.ResponseTimeout = 30 * time.Second
	})
	c := dial(t, p.addr)
	io.WriteString(c, handshake("x", "/ws"))
	eventually(t, "the handshake waiting", func() bool { w, _ := p.srv.AwaitCounts(); return w == 1 })
	p.engine.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("client: %v (the wait outlived the engine)", err)
	}
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
}
