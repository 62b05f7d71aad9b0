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

// Security finding F1: a byte a backend sends beyond the response it owed
// must never reach another client. Each test uses one backend, so every
// request goes to it, and a pooled connection is reused whenever it may be.

func unsolicitedCount(p *proxy) uint64 {
	return p.counter(`wsgate_upstream_errors_total{kind="unsolicited"}`)
}

// get sends one request on a new client connection and returns the body.
func get(t *testing.T, addr, path string) string {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// serveEcho answers every request on c with its path as the body, calling
// extra (when set) after each response is written.
func serveEcho(c net.Conn, extra func(path string)) {
	serveEchoFrom(c, bufio.NewReader(c), extra)
}

func serveEchoFrom(c net.Conn, br *bufio.Reader, extra ...func(path string)) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		p := req.URL.Path
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+itoa(len(p))+"\r\n\r\n"+p)
		for _, f := range extra {
			if f != nil {
				f(p)
			}
		}
	}
}

const secretResp = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"

// A backend that writes a second response some time after the first: the
// pooled connection holds it unread when the next request comes, from
// another client on another connection. It is closed, not reused.
func TestLateSecondResponseNeverReachesAnotherClient(t *testing.T) {
	wrote := make(chan struct{})
	be := rawBackend(t, func(c net.Conn) {
		serveEcho(c, func(p string) {
			if p == "/first" {
				time.Sleep(50 * time.Millisecond) // the connection is idle in the pool by now
				io.WriteString(c, secretResp)
				close(wrote)
			}
		})
	})
	p := startProxy(t, []string{be}, nil)
	before := unsolicitedCount(p)
	if got := get(t, p.addr, "/first"); got != "/first" {
		t.Fatalf("first: %q", got)
	}
	<-wrote
	time.Sleep(20 * time.Millisecond) // the bytes cross loopback
	if got := get(t, p.addr, "/victim"); got != "/victim" {
		t.Fatalf("another client's GET /victim got %q: a stray backend response reached it", got)
	}
	if n := unsolicitedCount(p) - before; n != 1 {
		t.Errorf("unsolicited counted %d times, want 1", n)
	}
}

// A CL.0 backend: it ignores a POST's Content-Length and reads the body as
// a request of its own, answered slowly, after the next client's request
// is already on the way. A connection that carried a body goes back to
// the client that sent it, never to the shared pool, so the smuggled
// answer cannot reach anyone else, even when it comes after the check
// before reuse found nothing.
func TestSmuggledAnswerNeverReachesAnotherClient(t *testing.T) {
	release := make(chan struct{})
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			p := req.URL.Path
			if p != "/cl0" { // CL.0: the body of /cl0 stays in br, read as the next request
				io.Copy(io.Discard, req.Body)
			}
			if strings.HasPrefix(p, "/internal-slow/") {
				<-release
				io.WriteString(c, secretResp)
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+itoa(len(p))+"\r\n\r\n"+p)
		}
	})
	p := startProxy(t, []string{be}, nil)
	smuggled := "GET /internal-slow/secret HTTP/1.1\r\nHost: x\r\n\r\n"
	attacker := dial(t, p.addr)
	attacker.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(attacker, "POST /cl0 HTTP/1.1\r\nHost: x\r\nContent-Length: "+itoa(len(smuggled))+"\r\n\r\n"+smuggled)
	ab := bufio.NewReader(attacker)
	resp, err := http.ReadResponse(ab, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)

	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	if got := get(t, p.addr, "/victim"); got != "/victim" {
		t.Fatalf("another client's GET /victim got %q: the smuggled request's answer reached it", got)
	}
}

// Two responses in one segment: the bytes beyond the first response are
// never sent to the client, and the connection is not reused (F1's "bytes
// left in the buffer"), for each way a response body can end.
func TestBytesBeyondResponseDiscardConnection(t *testing.T) {
	for _, tc := range []struct{ name, method, first, want string }{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", "a"},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", "a"},
		{"no body", "GET", "HTTP/1.1 204 No Content\r\n\r\n", ""},
		{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first atomic.Bool
			double := rawBackend(t, func(c net.Conn) {
				if !first.CompareAndSwap(false, true) {
					serveEcho(c, nil) // later connections serve honestly
					return
				}
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, tc.first+secretResp) // one write: one segment
				serveEchoFrom(c, br)
			})
			p := startProxy(t, []string{double}, nil)
			before := unsolicitedCount(p)
			c := dial(t, p.addr)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			io.WriteString(c, tc.method+" /double HTTP/1.1\r\nHost: x\r\n\r\n")
			req, _ := http.NewRequest(tc.method, "/", nil)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != tc.want {
				t.Fatalf("first body %q, want %q", b, tc.want)
			}
			// The same client, then another: neither sees "secret".
			io.WriteString(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != "/again" {
				t.Fatalf("the same client's next GET got %q", b)
			}
			if got := get(t, p.addr, "/victim"); got != "/victim" {
				t.Fatalf("another client's GET got %q", got)
			}
			if n := unsolicitedCount(p) - before; n != 1 {
				t.Errorf("unsolicited counted %d times, want 1", n)
			}
		})
	}
}

// A connection that carried a body serves the same client's next request
// (keep-alive is kept), never another client's, and closes when its client
// goes: no upstream file is left behind.
func TestBodyConnectionOwnedByItsClient(t *testing.T) {
	var conns, closed atomic.Int64
	be := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		serveEcho(c, nil)
		closed.Add(1)
	})
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	post := func(path string) {
		t.Helper()
		io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != path {
			t.Fatalf("POST %s got %q", path, b)
		}
	}
	post("/one")
	if got := get(t, p.addr, "/other"); got != "/other" {
		t.Fatalf("another client: %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("backend connections after a POST and another client's GET: %d, want 2 (the POST's is its client's)", n)
	}
	post("/two")
	if n := conns.Load(); n != 2 {
		t.Fatalf("the same client's second POST opened a connection: %d, want 2", n)
	}
	c.Close()
	eventually(t, "the client's upstream connection closed with it", func() bool { return closed.Load() == 1 })
}

// Owned connections are bounded, all clients together, by MaxIdleUpstream:
// past it, a connection that carried a body closes after its response
// instead of waiting for its client.
func TestOwnedConnectionsBounded(t *testing.T) {
	var closed atomic.Int64
	be := rawBackend(t, func(c net.Conn) {
		serveEcho(c, nil)
		closed.Add(1)
	})
	p := startProxy(t, []string{be}, func(lc *loop.Config, _ *tunnel.Config) { lc.MaxIdleUpstream = 1 })
	post := func() {
		t.Helper()
		c := dial(t, p.addr) // stays open for the whole test
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
	}
	post() // owned: its client is still connected
	post() // over the bound: closed after the response
	eventually(t, "the second client's upstream connection closed", func() bool { return closed.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := closed.Load(); n != 1 {
		t.Fatalf("%d upstream connections closed, want 1 (the first is owned by its open client)", n)
	}
}
