package loop_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// A WebSocket handshake's backend socket is dialed onto the tunnel
// engine's loop (loop/pending.go): the failures of the ordinary path must
// be answered the same way on it.

// The handshake's head is sent right after the connect (dialPending): to
// the refusing address, whose connect is still in progress when connect(2)
// returns on loopback, it is that send that finds the refusal.
func TestUpgradeConnectFailureTriesNextBackend(t *testing.T) {
	be := wsEchoBackend(t, "a", false)
	refusing := loop.ReserveAddr(t) // bound, never listening: refused
	p := startProxy(t, []string{refusing, be}, nil)
	for i := range 10 {
		c, _, err := websocket.DefaultDialer.Dial(p.wsURL(fmt.Sprintf("/ws%d", i)), nil)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "x" {
			t.Fatalf("echo %d: %q, %v", i, m, err)
		}
		c.Close()
	}
	eventually(t, "tunnels closed", func() bool { return p.engine.Len() == 0 })
	if n := p.backendActive(refusing); n != 0 {
		t.Errorf("refusing backend's count %d", n)
	}
}

// A handshake's head goes out with the backend's connect, and the exchange
// does not send it again: the backend receives it once, and nothing else
// before the client's frames. A refusing first backend got nothing, so
// the next one is tried as before.
func TestUpgradeHeadSentOnce(t *testing.T) {
	got := make(chan string, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- "bad head: " + err.Error()
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		rest, _ := io.ReadAll(br) // until the tunnel closes
		got <- string(rest)
	})
	refusing := loop.ReserveAddr(t)
	p := startProxy(t, []string{refusing, be}, nil)
	for i := range 4 {
		c, _, resp := upgrade(t, p.addr)
		if resp.StatusCode != 101 {
			t.Fatalf("handshake %d: status %d", i, resp.StatusCode)
		}
		c.Close()
		if rest := <-got; rest != "" {
			t.Fatalf("handshake %d: the backend received %q after the head", i, rest)
		}
	}
}

// A handshake that took a pooled connection the backend then closed
// unanswered is replayed on a new connection (forward's stale retry),
// dialed onto the engine's loop with the head sent with its connect: the
// new connection carries the head once.
func TestUpgradeStaleRetrySendsHeadOnce(t *testing.T) {
	var conns atomic.Int32
	got := make(chan string, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if conns.Add(1) == 1 { // the plain request's; pooled after its answer
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			readHead(br) // the handshake: closed unanswered, as if gone stale
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		rest, _ := io.ReadAll(br)
		got <- string(rest)
	})
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	io.WriteString(c, handshake("x", "/ws"))
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("handshake: status %d, want 101 from the replay", resp.StatusCode)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("backend saw %d connections, want the pooled one and the replay's", n)
	}
	c.Close()
	if rest := <-got; rest != "" {
		t.Fatalf("the replay's connection received %q after the head", rest)
	}
}

// The response timeout ends a handshake's wait for its 101, which it
// spends without its handler (await.go): 504, the backend blamed
// (passive health), its count back.
func TestUpgradeResponseTimeoutGives504(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		time.Sleep(2 * time.Second) // never answers in time
	})
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.ResponseTimeout = 300 * time.Millisecond
	})
	upgradeFails(t, p, 504)
	checkAwait(t, p, 1, 0)
	if b := p.bal.Pools()[0].Backends()[0]; b.Failures() != 1 {
		t.Errorf("%d failures reported, want the timeout's", b.Failures())
	}
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
	if n := p.engine.Len(); n != 0 {
		t.Errorf("%d tunnels after a timed-out upgrade", n)
	}
}

func TestUpgradeBackendClosesGives502(t *testing.T) {
	for _, name := range []string{"fin", "half-head"} {
		t.Run(name, func(t *testing.T) {
			be := rawBackend(t, func(c net.Conn) {
				readHead(bufio.NewReader(c))
				if name == "half-head" {
					io.WriteString(c, "HTTP/1.1 101 Switching")
				}
				c.Close()
			})
			upgradeFails(t, startProxy(t, []string{be}, nil), 502)
		})
	}
}

// upgradeFails sends a WebSocket handshake through p and checks that it
// gets status, and that no tunnel is left.
func upgradeFails(t *testing.T, p *proxy, status int) {
	t.Helper()
	_, _, resp := upgrade(t, p.addr)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	if n := p.engine.Len(); n != 0 {
		t.Errorf("%d tunnels after a failed upgrade", n)
	}
}

// A declined upgrade's backend connection is closed after its answer,
// never pooled: the next request opens a connection of its own.
func TestDeclinedUpgradeConnectionNotPooled(t *testing.T) {
	var conns atomic.Int32
	be := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
		}
	})
	p := startProxy(t, []string{be}, nil)
	for i := range 3 {
		c, _, resp := upgrade(t, p.addr)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || string(body) != "no" {
			t.Fatalf("upgrade %d: %d %q", i, resp.StatusCode, body)
		}
		c.Close()
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("backend accepted %d connections for 3 upgrades", n)
	}
	eventually(t, "backend count back to 0", func() bool { return p.backendActive(be) == 0 })
}

// A handshake head larger than the sockets' buffers (a raised
// --max-header-bytes, a backend slow to read) is written in parts: the
// exchange waits for room on the engine's loop (the Pending wakes for
// output from the first full buffer on), not until its write deadline.
func TestUpgradeHeadLargerThanSocketBuffers(t *testing.T) {
	if testing.Short() {
		t.Skip("a 16 MiB head")
	}
	be := rawBackend(t, func(c net.Conn) {
		time.Sleep(300 * time.Millisecond) // the proxy's write finds the buffers full
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		time.Sleep(time.Second)
	})
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.MaxHeaderBytes = 32 << 20
		c.ResponseTimeout = 8 * time.Second
	})
	c := dial(t, p.addr)
	go io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+testKey+
		"\r\nSec-WebSocket-Version: 13\r\nX-Big: "+strings.Repeat("a", 16<<20)+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d after %v, want 101", resp.StatusCode, time.Since(start))
	}
}

// A handshake whose head went out with the connect, and whose socket the
// tunnel engine then refuses (it has stopped: Attach fails after the
// send, pending.go): the client is answered 503 and its connection
// closed, the backend reads the head and then the close, as from a client
// that went away, and the backend is not blamed (no passive-health
// failure, its count back to 0): the fault is the proxy's own.
func TestUpgradeEngineStoppedAfterSend(t *testing.T) {
	type seen struct {
		head string
		err  error // the read after the head: io.EOF when the proxy closed
	}
	got := make(chan seen, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		head, err := readHead(br)
		if err != nil {
			got <- seen{head, err}
			return
		}
		_, err = br.ReadByte()
		got <- seen{head, err}
	})
	p := startProxy(t, []string{be}, nil)
	p.engine.Close()

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, handshake("x", "/ws"))
	resp, err := io.ReadAll(c) // the 503, then the close
	if err != nil {
		t.Fatalf("client: %v after %q", err, resp)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.1 503 ") {
		t.Fatalf("client got %q, want a 503", resp)
	}
	s := <-got
	if !strings.HasPrefix(s.head, "GET /ws HTTP/1.1\r\n") || s.err != io.EOF {
		t.Fatalf("backend read %q, then %v; want the head, then EOF", s.head, s.err)
	}
	b := p.bal.Pools()[0].Backends()[0]
	if b.Failures() != 0 || !b.Healthy() {
		t.Errorf("backend blamed for the engine: %d failures, healthy %v", b.Failures(), b.Healthy())
	}
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
}

// A WebSocket handshake waits for its backend's 101 without its handler,
// and the tunnel engine's loop finishes it (await.go): every handshake
// here waits that way, and the loop takes the answer for most of them
// (one the loop finds its handler still running goes on in a handler).
// Each tunnel then relays, and the counts go back to 0.
func TestHandshakeFinishedOnLoop(t *testing.T) {
	var aw afterWaits
	var k atomic.Int64
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		aw.wait(k.Add(1)) // the k-th handshake answered once it waits
		switching(c, br)
		echoRest(c, br)
	})
	p := startProxy(t, []string{be}, nil)
	aw.p.Store(p)
	const n = 40
	for i := range n {
		c, br, resp := upgrade(t, p.addr)
		if resp.StatusCode != 101 {
			t.Fatalf("handshake %d: status %d", i, resp.StatusCode)
		}
		checkRelayed(t, c, br) // the backend sends it back as it came
		c.Close()
	}
	waited, onLoop := p.srv.AwaitCounts()
	t.Logf("%d handshakes: %d waited without their handler, %d finished on the engine's loop", n, waited, onLoop)
	if waited != n || onLoop < n/2 {
		t.Errorf("%d of %d handshakes waited without their handler, %d finished on the loop; want all, and most (one whose answer the loop finds its handler still ending goes on in a handler)", waited, n, onLoop)
	}
	eventually(t, "tunnels closed", func() bool { return p.engine.Len() == 0 })
	eventually(t, "the backend's count released", func() bool { return p.backendActive(be) == 0 })
	if f := p.srv.InFlight(); f != 0 {
		t.Errorf("%d exchanges in flight", f)
	}
}
