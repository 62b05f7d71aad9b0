package loop_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// holdBackend is a backend on its own listener (127.0.0.1:0, bound here)
// that counts the connections it accepts and closes each after one
// response, so that every request it serves is one accepted connection.
// /hold answers when release is closed; any other path at once, with its
// name in X-Backend.
type holdBackend struct {
	addr     string
	accepted atomic.Int64
	hits     sync.Map // path → *atomic.Int64
	holding  chan struct{}
	release  chan struct{}
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startHoldBackend(t *testing.T, name string) *holdBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hb := &holdBackend{addr: ln.Addr().String(), holding: make(chan struct{}, 16), release: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := hb.hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		if r.URL.Path == "/hold" {
			hb.holding <- struct{}{}
			<-hb.release
		}
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})}
	srv.SetKeepAlivesEnabled(false)
	go srv.Serve(countingListener{ln, &hb.accepted})
	t.Cleanup(func() { srv.Close() })
	return hb
}

func (hb *holdBackend) hitCount(path string) int64 {
	if v, ok := hb.hits.Load(path); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// hold sends GET /hold through addr (headers in extra) and returns once the
// backend holds it; the response comes on the returned channel.
func (hb *holdBackend) hold(t *testing.T, addr, extra string) <-chan string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /hold HTTP/1.1\r\nHost: x\r\n%s\r\n", extra)
	select {
	case <-hb.holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend never got /hold")
	}
	done := make(chan string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}()
	return done
}

// queuedBehindHeld starts a backend with max-conns=1 behind a proxy, holds
// its one slot with a /hold request (its answer comes on held once
// be.release is closed), and queues GET path on a connection of its own (c,
// closed with the test).
func queuedBehindHeld(t *testing.T, path string) (be *holdBackend, p *proxy, pool *balancer.Pool, held <-chan string, c net.Conn) {
	t.Helper()
	be = startHoldBackend(t, "a")
	p = queueProxy(t, []string{be.addr + ",max-conns=1"}, nil)
	pool = p.bal.Pools()[0]
	held = be.hold(t, p.addr, "")
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	eventually(t, "the request queued", func() bool { return pool.QueueLen() == 1 })
	return be, p, pool, held, c
}

func queueProxy(t *testing.T, backends []string, mod func(*loop.Config)) *proxy {
	return startProxy(t, backends, func(c *loop.Config, _ *tunnel.Config) {
		c.QueueTimeout = time.Minute
		if mod != nil {
			mod(c)
		}
	})
}

// A queued request whose client resets its connection leaves the queue at
// once, takes no slot when one frees, and nothing is dialed for it.
func TestQueueClientGone(t *testing.T) {
	be, p, pool, held, c := queuedBehindHeld(t, "/gone")
	c.(*net.TCPConn).SetLinger(0) // a reset: the client is gone (a FIN alone is a half-close)
	c.Close()
	eventually(t, "the departed request to leave the queue", func() bool { return pool.QueueLen() == 0 })
	if got := pool.QueueStats().Withdrawn; got != 1 {
		t.Errorf("withdrawn %d, want 1", got)
	}
	if n := p.counter(`wsgate_queue_refused_total{pool="default",reason="client_gone"}`); n != 1 {
		t.Errorf(`wsgate_queue_refused_total{reason="client_gone"} = %d, want 1`, n)
	}
	if n := p.srv.InFlight(); n != 1 {
		t.Errorf("in flight %d, want 1 (the held request)", n)
	}

	close(be.release)
	if s := <-held; s != "200 OK" {
		t.Fatalf("held request: %s", s)
	}
	eventually(t, "the slot to free", func() bool { return p.backendActive(be.addr) == 0 })
	time.Sleep(200 * time.Millisecond) // a connection dialed for the departed request would arrive meanwhile
	if n, h := be.accepted.Load(), be.hitCount("/gone"); n != 1 || h != 0 {
		t.Fatalf("backend accepted %d connections and got /gone %d times; want 1 (the held request's) and 0", n, h)
	}
	// The slot serves the next request.
	resp, err := http.Get(p.url("/next"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || be.accepted.Load() != 2 || be.hitCount("/gone") != 0 {
		t.Errorf("next request: %d; backend accepted %d, /gone %d", resp.StatusCode, be.accepted.Load(), be.hitCount("/gone"))
	}
	eventually(t, "nothing in flight", func() bool { return p.srv.InFlight() == 0 }) // the handler ends after the response
}

// A request pipelined behind a queued one waits its turn: both are
// answered in order once the slot frees.
func TestQueuePipelinedBehindQueued(t *testing.T) {
	be, p, _, held, c := queuedBehindHeld(t, "/one")
	fmt.Fprintf(c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	close(be.release)
	if s := <-held; s != "200 OK" {
		t.Fatalf("held request: %s", s)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{"a /one", "a /two"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer to %q: %v", want, err)
		}
		body := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, body); err != nil || string(body) != want {
			t.Fatalf("answer %q, %v; want %q", body, err, want)
		}
	}
	eventually(t, "nothing in flight", func() bool { return p.srv.InFlight() == 0 && p.backendActive(be.addr) == 0 })
}

// A sticky request (cookie) whose node is full waits for that node alone,
// with another node free, and is served by it once its slot frees.
func TestQueueStickyWaitsForItsNode(t *testing.T) {
	a, b := startHoldBackend(t, "a"), startHoldBackend(t, "b")
	p := queueProxy(t, []string{a.addr + ",max-conns=1", b.addr}, func(c *loop.Config) {
		c.Sticky = balancer.StickyConfig{Mode: balancer.StickyCookie}
	})
	pool := p.bal.Pools()[0]
	// Find a's cookie.
	var cookie string
	for i := 0; cookie == "" && i < 20; i++ {
		resp, err := http.Get(p.url("/c"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Backend") == "a" {
			cookie = resp.Header.Get("Set-Cookie")
		}
	}
	if cookie == "" {
		t.Fatal("no response from a")
	}
	cookie = cookie[:strings.IndexByte(cookie, ';')]
	held := a.hold(t, p.addr, "Cookie: "+cookie+"\r\n")

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /pinned HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n", cookie)
	eventually(t, "the sticky request queued", func() bool { return pool.QueueLen() == 1 })
	if h := b.hitCount("/pinned"); h != 0 {
		t.Fatalf("b got the pinned request")
	}
	close(a.release)
	if s := <-held; s != "200 OK" {
		t.Fatalf("held request: %s", s)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "a" {
		t.Errorf("pinned request: %d from %q, want 200 from a", resp.StatusCode, resp.Header.Get("X-Backend"))
	}
}

// A request waiting in the queue when a drain begins is in progress, not
// idle: netpoll's shutdown leaves its connection open, and the request is
// served once a slot frees (with Connection: close), instead of the
// connection being closed as idle with no answer.
func TestQueuedRequestSurvivesDrain(t *testing.T) {
	be, p, _, held, c := queuedBehindHeld(t, "/queued")

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.srv.Shutdown(ctx)
	}()
	time.Sleep(300 * time.Millisecond) // netpoll's shutdown looks for idle connections meanwhile
	select {
	case <-drained:
		t.Fatal("the drain ended with a request still queued")
	default:
	}
	close(be.release)
	if s := <-held; s != "200 OK" {
		t.Fatalf("held request: %s", s)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the queued request got no answer through the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "a /queued" || !resp.Close {
		t.Fatalf("queued request: %d %q, close %v", resp.StatusCode, body, resp.Close)
	}
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not end after the last request")
	}
}

// A queued request whose client half-closes (shutdown SHUT_WR after the
// request, as nc -N does; RFC 9112 9.6) stays in the queue and is answered
// when a slot frees, as a request in progress is (TestHalfCloseAfterCompleteRequest).
func TestQueuedRequestHalfClose(t *testing.T) {
	be, _, pool, held, c := queuedBehindHeld(t, "/half")
	c.(*net.TCPConn).CloseWrite()
	time.Sleep(200 * time.Millisecond) // the FIN reaches wsgate
	if n, w := pool.QueueLen(), pool.QueueStats().Withdrawn; n != 1 || w != 0 {
		t.Fatalf("after the half-close: queue length %d, withdrawn %d; want 1, 0", n, w)
	}
	close(be.release)
	if s := <-held; s != "200 OK" {
		t.Fatalf("held request: %s", s)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer after a half-close while queued: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "a /half" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
		t.Fatalf("after the answer: %q, %v (want the connection closed)", rest, err)
	}
}

// A WebSocket handshake that waited in the queue (without its handler:
// resume goes on with it) sends its head with the backend's connect as
// any other, once: the head kept in the parked exchange is the one sent.
func TestQueuedUpgradeSendsHeadOnce(t *testing.T) {
	holding, release := make(chan struct{}, 1), make(chan struct{})
	got := make(chan string, 1)
	be := rawBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/hold" {
			holding <- struct{}{}
			<-release
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		rest, _ := io.ReadAll(br)
		got <- string(rest)
	})
	p := queueProxy(t, []string{be + ",max-conns=1"}, nil)
	pool := p.bal.Pools()[0]
	hc := dial(t, p.addr)
	io.WriteString(hc, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend never got /hold")
	}
	c := dial(t, p.addr)
	io.WriteString(c, handshake("x", "/ws"))
	eventually(t, "the handshake queued", func() bool { return pool.QueueLen() == 1 })
	close(release)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("queued handshake: status %d, want 101", resp.StatusCode)
	}
	c.Close()
	if rest := <-got; rest != "" {
		t.Fatalf("the backend received %q after the head", rest)
	}
}
