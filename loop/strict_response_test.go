package loop_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedBackend answers each request with the raw response registered for
// its path, then waits for the next request on the same connection. It
// records, per path, whether the proxy reused the connection afterwards
// (a later request arrived on it) or closed it.
type scriptedBackend struct {
	addr    string
	answers map[string]string // path -> raw response (the connection is closed after it when it ends in "\x00close")
	mu      sync.Mutex
	after   map[string]string // path -> "closed", "reused", "silent"
}

func newScriptedBackend(t *testing.T, answers map[string]string) *scriptedBackend {
	sb := &scriptedBackend{answers: answers, after: map[string]string{}}
	sb.addr = rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		last := ""
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			head, err := readHead(br)
			if last != "" {
				what := "reused"
				switch {
				case errors.Is(err, io.EOF):
					what = "closed"
				case err != nil:
					what = "silent"
				}
				sb.mu.Lock()
				sb.after[last] = what
				sb.mu.Unlock()
			}
			if err != nil {
				return
			}
			path := strings.Fields(head)[1]
			ans, ok := sb.answers[path]
			if !ok {
				ans = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			}
			if a, found := strings.CutSuffix(ans, "\x00close"); found {
				io.WriteString(c, a)
				return
			}
			io.WriteString(c, ans)
			last = path
		}
	})
	return sb
}

func (sb *scriptedBackend) afterwards(path string) string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.after[path]
}

// badResponses are answers a backend must not get past the proxy: 502 to the
// client, and the upstream connection closed, never reused.
var badResponses = map[string]string{
	"/te-and-cl":          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"/cl-and-te":          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"/cl-letters":         "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
	"/cl-list":            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
	"/cl-two-values":      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"/cl-negative":        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
	"/te-gzip-chunked":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"/te-identity":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello",
	"/te-quoted":          "HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"/te-http10":          "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"/bare-lf":            "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
	"/obs-fold":           "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 5\r\n\r\nhello",
	"/space-before-colon": "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
	"/nul-in-value":       "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
	"/status-2000":        "HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",
	"/http2":              "HTTP/2 200\r\nContent-Length: 5\r\n\r\nhello",
	"/garbage":            "hello world\r\n\r\n",
	"/101-unasked":        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
}

// Responses a backend must not get past the proxy: 502 to the client, and the
// upstream connection closed, never reused.
func TestStrictBadResponsesAre502AndNotReused(t *testing.T) {
	answers := badResponses
	sb := newScriptedBackend(t, answers)
	p := startProxy(t, []string{sb.addr}, nil)
	for path := range answers {
		t.Run(path, func(t *testing.T) {
			c := dial(t, p.addr)
			// A second request on the same client connection: with a 502 the
			// proxy closes instead of sending it anywhere.
			io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, all, err := readOne(c)
			if err != nil {
				t.Fatalf("%v: %q", err, all)
			}
			if resp != 502 {
				t.Errorf("status %d, want 502: %q", resp, all)
			}
			// Another request through the proxy: it must not travel on the
			// connection that carried the bad response.
			if r, all, _ := rawExchange(t, p.addr, "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false); r == nil || r.StatusCode != 200 {
				t.Fatalf("follow-up request: %q", all)
			}
			eventually(t, "the backend to see what became of the connection", func() bool { return sb.afterwards(path) != "" })
			if got := sb.afterwards(path); got != "closed" {
				t.Errorf("upstream connection after the bad response: %s, want closed", got)
			}
		})
	}
}

// readOne reads one response head (and a Content-Length body) from c and
// returns its status.
func readOne(c net.Conn) (int, string, error) {
	br := bufio.NewReader(c)
	head, err := readHead(br)
	if err != nil {
		return 0, head, err
	}
	var status int
	if f := strings.Fields(head); len(f) > 1 {
		status = atoi(f[1])
	}
	return status, head, nil
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// A response body cut short by the backend never looks complete to the
// client: no final chunk is made up, the client connection is closed.
func TestStrictTruncatedResponseBodyClosesClient(t *testing.T) {
	answers := map[string]string{
		"/chunked-cut":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n\x00close",
		"/chunked-cut-mid":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhel\x00close",
		"/chunked-bad-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
		"/length-cut":        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello\x00close",
	}
	sb := newScriptedBackend(t, answers)
	p := startProxy(t, []string{sb.addr}, nil)
	for path := range answers {
		t.Run(path, func(t *testing.T) {
			c := dial(t, p.addr)
			io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("the client connection was not closed: %v (%q)", err, all)
			}
			s := string(all)
			if !strings.HasPrefix(s, "HTTP/1.1 200 OK\r\n") {
				t.Fatalf("got %q", s)
			}
			if strings.Contains(s, "\r\n0\r\n") || strings.Count(s, "HTTP/1.1") != 1 {
				t.Errorf("truncated body made to look complete, or the next request answered: %q", s)
			}
			if _, _, err := responses(s); err == nil {
				t.Errorf("net/http reads a complete response from %q", s)
			}
		})
	}
}

// The 101 checks: nothing is tunnelled unless the backend's 101 answers the
// handshake that was sent.
func TestStrictBad101(t *testing.T) {
	answers := map[string]string{
		"/h2c":       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(testKey) + "\r\n\r\n",
		"/no-accept": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"/no-conn":   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + acceptKey(testKey) + "\r\n\r\n",
		"/two-accept": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(testKey) +
			"\r\nSec-WebSocket-Accept: " + acceptKey(testKey) + "\r\n\r\n",
	}
	sb := newScriptedBackend(t, answers)
	p := startProxy(t, []string{sb.addr}, nil)
	for path := range answers {
		t.Run(path, func(t *testing.T) {
			resp, all, err := rawExchange(t, p.addr, handshake("x", path)+string(maskedFrame("nope")), false)
			if resp == nil || err != nil {
				t.Fatalf("%v", err)
			}
			if resp.StatusCode != 502 || !resp.Close {
				t.Errorf("want 502 and close: %q", all)
			}
			if p.engine.Len() != 0 {
				t.Errorf("%d tunnels", p.engine.Len())
			}
		})
	}
}
