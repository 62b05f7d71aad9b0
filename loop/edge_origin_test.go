package loop_test

import (
	"github.com/wsgate/wsgate/loop/limit"

	"bufio"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// --allowed-origin: on its route a handshake from another Origin gets 403
// and the backend never hears of it; a listed Origin, or none, goes through.
func TestAllowedOrigin(t *testing.T) {
	var upgrades atomic.Int64
	be := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrades.Add(1)
		c, err := upgrader.Upgrade(w, r, nil)
		if err == nil {
			c.Close()
		}
	}))
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		for _, v := range []string{"/app=https://app.example.com", "/app=https://admin.example.com/", "other.test/=https://other.example"} {
			ao, err := limit.ParseAllowedOrigin(v)
			if err != nil {
				t.Fatal(err)
			}
			c.Edge.AllowedOrigins = append(c.Edge.AllowedOrigins, ao)
		}
	})
	cases := []struct {
		name, host, path, origin string
		want                     int
		reachesBackend           bool
	}{
		{"listed", "a.test", "/app/ws", "https://app.example.com", 101, true},
		{"listed, case and slash differ", "a.test", "/app", "HTTPS://Admin.Example.com/", 101, true},
		{"cross-site", "a.test", "/app/ws", "https://evil.example", 403, false},
		{"scheme differs", "a.test", "/app/ws", "http://app.example.com", 403, false},
		{"port differs", "a.test", "/app/ws", "https://app.example.com:8443", 403, false},
		{"null origin", "a.test", "/app/ws", "null", 403, false},
		{"no Origin (not a browser)", "a.test", "/app/ws", "", 101, true},
		{"route without a rule", "a.test", "/public", "https://evil.example", 101, true},
		{"host rule", "other.test", "/x", "https://app.example.com", 403, false},
		{"host rule, listed", "OTHER.test:80", "/x", "https://other.example", 101, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := upgrades.Load()
			conn := dial(t, p.addr)
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			req := "GET " + c.path + " HTTP/1.1\r\nHost: " + c.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\n"
			if c.origin != "" {
				req += "Origin: " + c.origin + "\r\n"
			}
			conn.Write([]byte(req + "\r\n"))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if got := upgrades.Load() > before; got != c.reachesBackend {
				t.Fatalf("backend reached: %v, want %v", got, c.reachesBackend)
			}
		})
	}
}

// --redirect-https: plain requests, WebSocket handshakes too, get 301 to
// the same host and target on https; a request marked https by the PROXY
// header's SSL TLV (an L4 TLS terminator in front) does not.
func TestRedirectHTTPS(t *testing.T) {
	p := startProxy(t, []string{headersBackend(t)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.RedirectHTTPS = true
	})
	for _, c := range []struct{ req, loc string }{
		{"GET /a/b?c=d HTTP/1.1\r\nHost: app.test:8080\r\n\r\n", "https://app.test/a/b?c=d"},
		{handshake("app.test", "/ws?x=1"), "https://app.test/ws?x=1"},
		{"GET http://app.test/abs?q HTTP/1.1\r\nHost: app.test\r\n\r\n", "https://app.test/abs?q"},
		{"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "https://[::1]/"},
	} {
		conn := dial(t, p.addr)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte(c.req))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 301 || resp.Header.Get("Location") != c.loc {
			t.Errorf("%q: %d Location %q, want 301 %q", c.req, resp.StatusCode, resp.Header.Get("Location"), c.loc)
		}
	}
	pp := startProxy(t, []string{headersBackend(t)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.RedirectHTTPS = true
		c.Edge.ProxyProtocol = true
	})
	conn := dial(t, pp.addr)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x14\xc0\x00\x02\x07\x0a\x00\x00\x01\x13\x88\x01\xbb\x20\x00\x05\x01\x00\x00\x00\x00")
	conn.Write(append(hdr, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"...))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Got-X-Forwarded-Proto") != "https" || resp.Header.Get("Got-X-Forwarded-For") != "192.0.2.7" {
		t.Fatalf("over TLS per the PROXY header: %d, X-Forwarded-Proto %q, X-Forwarded-For %q", resp.StatusCode, resp.Header.Get("Got-X-Forwarded-Proto"), resp.Header.Get("Got-X-Forwarded-For"))
	}
}
