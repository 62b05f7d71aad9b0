//go:build linux

package loop_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// TestDeferAccept: the listeners are TCP_DEFER_ACCEPT (listen.go). A client
// that has connected but sent nothing is not yet a connection of the
// server's (the kernel holds it until its first bytes); once it sends a
// request it is served as usual; and one that never says anything is
// accepted after the defer period all the same and closed by the header
// timeout, not held forever.
func TestDeferAccept(t *testing.T) {
	be := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	p := startProxy(t, []string{be}, func(c *loop.Config, _ *tunnel.Config) {
		c.HeaderTimeout = time.Second
	})

	quiet := dial(t, p.addr)
	defer quiet.Close()
	talker := dial(t, p.addr)
	defer talker.Close()
	// Both connections are established from the client's side; neither
	// has sent a byte. The defer period is at least a second, so 200 ms
	// later the server has accepted neither.
	time.Sleep(200 * time.Millisecond)
	if n := p.srv.OpenConns(); n != 0 {
		t.Fatalf("%d connections accepted before any of them sent a byte (TCP_DEFER_ACCEPT not set?)", n)
	}

	io.WriteString(talker, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(talker), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10))
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}

	// The quiet one: accepted after the defer period, then closed by the
	// header timeout (408 or a plain close, as for any silent client).
	quiet.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(quiet)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a silent client was still open after 30 s (read %q)", got)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
		t.Fatalf("a silent client got %q", got)
	}
}
