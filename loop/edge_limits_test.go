package loop_test

import (
	"github.com/wsgate/wsgate/loop/limit"

	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// Past --max-conns a new connection is closed at once, with no answer;
// once one closes, new ones are served again.
func TestMaxConns(t *testing.T) {
	p := startProxy(t, []string{headersBackend(t)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.MaxConns = 2
	})
	a, b := dial(t, p.addr), dial(t, p.addr)
	eventually(t, "two connections open", func() bool { return p.srv.Connections() == 2 })
	for range 3 {
		c := dial(t, p.addr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
		got, err := io.ReadAll(c)
		if len(got) > 0 || (err != nil && !isReset(err)) {
			t.Fatalf("third connection: %q %v, want closed at once", got, err)
		}
	}
	a.Close()
	eventually(t, "a slot free", func() bool { return p.srv.Connections() == 1 })
	resp, err := rawGet(t, p.addr, nil, "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after one closed: %v %v", resp, err)
	}
	_ = b
}

// A tunnel counts against --max-conns as long as it lives.
func TestMaxConnsCountsTunnels(t *testing.T) {
	p := startProxy(t, []string{wsEchoBackend(t, "a", false)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.MaxConns = 1
	})
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the tunnel", func() bool { return p.engine.Len() == 1 && p.srv.OpenConns() == 0 })
	if _, err := rawGet(t, p.addr, nil, ""); err == nil {
		t.Fatal("a request got through beside the tunnel with --max-conns 1")
	}
	ws.Close()
	eventually(t, "the tunnel to end", func() bool { return p.engine.Len() == 0 })
	if _, err := rawGet(t, p.addr, nil, ""); err != nil {
		t.Fatalf("after the tunnel ended: %v", err) // the backend answers a plain GET with 400
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	var hits atomic.Int64
	be := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.MaxConnsPerIP = 2
	})
	dial(t, p.addr)
	dial(t, p.addr)
	eventually(t, "two connections open", func() bool { return p.srv.OpenConns() == 2 })
	if _, err := rawGet(t, p.addr, nil, ""); err == nil {
		t.Fatal("third connection from 127.0.0.1 was served")
	}
	// Another address of this host is another client.
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, net.TCPAddrFromAddrPort(mustAddrPort(t, p.addr)))
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("127.0.0.2: %v %v", resp, err)
	}
	// The refused connection's request (there at the accept) reached no
	// backend: only 127.0.0.2's did.
	if n := hits.Load(); n != 1 {
		t.Fatalf("the backend served %d requests, want 1 (the refused connection's was forwarded)", n)
	}
}

func TestRateLimit(t *testing.T) {
	var hits atomic.Int64
	be := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.ProxyProtocol = true
		rl, err := limit.ParseRateLimit("/login=1/m,burst=2")
		if err != nil {
			t.Fatal(err)
		}
		c.Edge.RateLimits = []limit.RateLimit{rl}
	})
	get := func(ip, path string) *http.Response {
		t.Helper()
		c := dial(t, p.addr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("PROXY TCP4 " + ip + " 10.0.0.1 1 2\r\nGET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 2 {
		if r := get("192.0.2.1", "/login"); r.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, r.StatusCode)
		}
	}
	r := get("192.0.2.1", "/login?again")
	if r.StatusCode != 429 {
		t.Fatalf("third request: %d, want 429", r.StatusCode)
	}
	if ra := r.Header.Get("Retry-After"); ra != "60" {
		t.Errorf("Retry-After %q, want 60 (one a minute)", ra)
	}
	if hits.Load() != 2 {
		t.Errorf("backend saw %d requests, want 2", hits.Load())
	}
	if r := get("192.0.2.2", "/login"); r.StatusCode != 200 {
		t.Errorf("another client: %d", r.StatusCode)
	}
	if r := get("192.0.2.1", "/other"); r.StatusCode != 200 {
		t.Errorf("another route: %d", r.StatusCode)
	}
	if r := get("192.0.2.1", "/loginx"); r.StatusCode != 200 {
		t.Errorf("/loginx is not under /login: %d", r.StatusCode)
	}
}

// A 429 keeps a keep-alive connection usable: the next request on it is
// answered too.
func TestRateLimitKeepAlive(t *testing.T) {
	p := startProxy(t, []string{headersBackend(t)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.RateLimits = []limit.RateLimit{{Prefix: "/", Rate: 0.001, Burst: 1}}
	})
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i, want := range []int{200, 429, 429} {
		c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

func mustAddrPort(t *testing.T, s string) (ap netip.AddrPort) {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a.AddrPort()
}
