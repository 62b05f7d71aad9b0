package loop_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A backend that answers one request per connection with a keep-alive
// response and then closes it, as one whose keep-alive timeout just ran
// out would. The pooled connection is stale by the next request: the
// check before reuse sees its FIN, so the GET and the POST each go to a
// fresh connection and reach the backend exactly once. (A FIN that comes
// after the check, as the request goes out, makes a GET fail as stale and
// be sent again on a fresh connection; a POST is never replayed.)
func TestStalePooledConnection(t *testing.T) {
	var closed atomic.Int64
	var mu sync.Mutex
	var got []string // request lines the backend received, in order
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		got = append(got, req.Method+" "+req.URL.Path+" "+string(body))
		mu.Unlock()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// close without Connection: close: the proxy pools the connection
		c.Close()
		closed.Add(1)
	})
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	send := func(req string) {
		t.Helper()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("%q: %d %q", req, resp.StatusCode, b)
		}
	}
	send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	eventually(t, "the backend closed its first connection", func() bool { return closed.Load() == 1 })
	send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	// The POST cannot be replayed: it must find the pool's connection
	// already closed (a close racing the request is a 502, as anywhere).
	eventually(t, "the backend closed its second connection", func() bool { return closed.Load() == 2 })
	send("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")

	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET /a ", "GET /b ", "POST /c abc"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("backend received %q, want %q", got, want)
	}
}
