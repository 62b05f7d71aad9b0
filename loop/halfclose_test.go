package loop_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Security audit F5: a client that sends a complete request and then shuts
// down its sending side (shutdown(SHUT_WR), as `nc -N` and many scripts
// do) still gets the response, after which the connection closes. HAProxy
// and the backends themselves answer; a half-close is legal.
func TestHalfCloseAfterCompleteRequest(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		time.Sleep(50 * time.Millisecond) // the client's FIN arrives before the answer
		serveEcho(c, nil)
	})
	p := startProxy(t, []string{be}, nil)
	for _, tc := range []struct{ name, req, want string }{
		{"post", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", "/x"},
		{"get", "GET /y HTTP/1.1\r\nHost: x\r\n\r\n", "/y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr).(*net.TCPConn)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response after a half-close: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != tc.want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, tc.want)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the response: %q, %v; want the connection closed", rest, err)
			}
		})
	}
}
