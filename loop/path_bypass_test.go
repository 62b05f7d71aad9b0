package loop_test

import (
	"github.com/wsgate/wsgate/loop/limit"

	"bufio"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// Security finding F2: a percent-encoded or dotted path cannot get past a
// decision made on the plain one (origin rule, rate limit, route), and the
// backend is sent the path the decision saw.

// uriRecorder is a backend that records the request-target of each request
// it gets and upgrades WebSocket handshakes.
type uriRecorder struct {
	mu   sync.Mutex
	uris []string
	addr string
}

func newURIRecorder(t *testing.T) *uriRecorder {
	u := &uriRecorder{}
	u.addr = httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.uris = append(u.uris, r.RequestURI)
		u.mu.Unlock()
		if r.Header.Get("Upgrade") != "" {
			if c, err := upgrader.Upgrade(w, r, nil); err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, r.URL.Path)
	}))
	return u
}

func (u *uriRecorder) got() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.uris...)
}

// status sends raw on a new connection and returns the response status.
func status(t *testing.T, addr, raw string) int {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return resp.StatusCode
}

func TestEncodedPathMeetsOriginRule(t *testing.T) {
	be := newURIRecorder(t)
	p := startProxy(t, []string{be.addr}, func(c *loop.Config, _ *tunnel.Config) {
		ao, err := limit.ParseAllowedOrigin("/ws=https://app.example")
		if err != nil {
			t.Fatal(err)
		}
		c.Edge.AllowedOrigins = []limit.AllowedOrigin{ao}
	})
	for _, path := range []string{"/ws", "/%77s", "/%77%73/chat", "/x/../ws", "/%2e/ws", "/public/%2E%2E/ws"} {
		hs := "GET " + path + " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n"
		if got := status(t, p.addr, hs); got != 403 {
			t.Errorf("cross-site handshake on %q: %d, want 403", path, got)
		}
	}
	if got := be.got(); len(got) != 0 {
		t.Fatalf("the backend got %q", got)
	}
}

func TestEncodedPathMeetsRateLimit(t *testing.T) {
	be := newURIRecorder(t)
	p := startProxy(t, []string{be.addr}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.RateLimits = []limit.RateLimit{{Prefix: "/login", Rate: 0.001, Burst: 1}}
	})
	if got := status(t, p.addr, "GET /login HTTP/1.1\r\nHost: a\r\n\r\n"); got != 200 {
		t.Fatalf("first /login: %d", got)
	}
	for _, path := range []string{"/login", "/%6cogin", "/%6C%6F%67%69%6E", "/a/../login", "/./login/x"} {
		if got := status(t, p.addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); got != 429 {
			t.Errorf("%q after the bucket emptied: %d, want 429", path, got)
		}
	}
	if got := be.got(); len(got) != 1 {
		t.Fatalf("the backend got %q, want only the first /login", got)
	}
}

func TestEncodedPathMeetsRoute(t *testing.T) {
	def, api := newURIRecorder(t), newURIRecorder(t)
	var bc balancer.Config
	for _, b := range []string{def.addr, "ws2=" + api.addr} {
		c, err := balancer.ParseBackend(b)
		if err != nil {
			t.Fatal(err)
		}
		bc.Backends = append(bc.Backends, c)
	}
	rc, err := balancer.ParseRoute("/api=ws2,strip")
	if err != nil {
		t.Fatal(err)
	}
	bc.Routes = []balancer.RouteConfig{rc}
	bal, err := balancer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, []string{def.addr}, func(c *loop.Config, _ *tunnel.Config) { c.Balancer = bal })
	cases := []struct{ target, wantAPI, wantDefault string }{
		{"/api/echo", "/echo", ""},
		{"/%61pi/echo", "/echo", ""},
		{"/%61%70%69/%65cho?x=%2f", "/echo?x=%2f", ""}, // the query goes as received
		{"/x/../api/echo", "/echo", ""},
		{"/api/./v1/../echo", "/echo", ""},
		{"/api/a%3bb", "/a%3Bb", ""},
		{"/apix", "", "/apix"},
		{"/%2E%2E/apix", "", "/apix"},
	}
	for _, tc := range cases {
		na, nd := len(api.got()), len(def.got())
		if got := status(t, p.addr, "GET "+tc.target+" HTTP/1.1\r\nHost: a\r\n\r\n"); got != 200 {
			t.Fatalf("%q: %d", tc.target, got)
		}
		ga, gd := api.got()[na:], def.got()[nd:]
		switch {
		case tc.wantAPI != "" && (len(ga) != 1 || ga[0] != tc.wantAPI || len(gd) != 0):
			t.Errorf("%q: ws2 got %q, default got %q; want ws2 to get %q", tc.target, ga, gd, tc.wantAPI)
		case tc.wantDefault != "" && (len(gd) != 1 || gd[0] != tc.wantDefault || len(ga) != 0):
			t.Errorf("%q: default got %q, ws2 got %q; want default to get %q", tc.target, gd, ga, tc.wantDefault)
		}
	}
	// Encodings that could mean a different split for a decoding backend
	// are refused, and reach no backend.
	for _, target := range []string{"/api%2Fecho", "/%61pi%2fecho", "/api%5Cecho", "/api%00", "/api/%zz"} {
		if got := status(t, p.addr, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n"); got != 400 {
			t.Errorf("%q: %d, want 400", target, got)
		}
	}
	if n := len(api.got()) + len(def.got()); n != len(cases) {
		t.Errorf("backends got %d requests, want %d", n, len(cases))
	}
}
