package loop_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// A request head that stalls gets 408 and then the close, whether it is
// the connection's first request or a later one on a keep-alive
// connection (audit, minor finding: the second got a bare close).
func TestStalledHeadGets408(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) { serveEcho(c, nil) })
	p := startProxy(t, []string{be}, func(lc *loop.Config, _ *tunnel.Config) {
		lc.HeaderTimeout = 300 * time.Millisecond
	})
	for _, tc := range []struct {
		name             string
		first, pipelined bool
	}{{"first request", true, false}, {"second request", false, false}, {"second request pipelined", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			if tc.pipelined { // the stalled head arrives with the first request
				io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.ReadAll(resp.Body)
			} else if !tc.first {
				io.WriteString(c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.ReadAll(resp.Body)
			}
			if !tc.pipelined {
				io.WriteString(c, "GET /two HTTP/1.1\r\nHost: x\r\n") // no end of head
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("stalled head: %v, want a 408", err)
			}
			if resp.StatusCode != 408 {
				t.Fatalf("stalled head: %d, want 408", resp.StatusCode)
			}
		})
	}
}
