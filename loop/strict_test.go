package loop_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// strictRejects are requests wsgate refuses itself: the status, then the
// connection closes, and nothing reaches the backend. The same table drives
// TestCompareProxies (strict_compare_test.go), which measured nginx and
// HAProxy for http1/RULES.md.
var strictRejects = []struct {
	name   string
	raw    string
	status int
}{
	// Framing (RFC 9112 6.1, 6.3)
	{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
	{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE chunked, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	{"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 501},
	{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 501},
	{"TE two headers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
	{"TE vertical tab before value", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400},
	{"TE NUL after value", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n", 400},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE obs-fold value", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
	{"Transfer_Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"CL list of equal values", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
	{"CL two different", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
	{"CL empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400},
	{"CL minus sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc", 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", 400},
	{"CL underscore", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\nabcdefghij", 400},
	{"CL inner space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nabcdefghij", 400},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551617\r\n\r\nabc", 400},
	{"Content_Length", "POST / HTTP/1.1\r\nHost: x\r\nContent_Length: 3\r\n\r\nabc", 400},

	// Chunked bodies (RFC 9112 7.1), all in the same packets as the head
	{"chunk size empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size signed", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size 17 hex digits", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size junk after", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n", 400},
	{"chunk size space before CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400},
	{"chunk line bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
	{"chunk line bare CR", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\rabc\r\n0\r\n\r\n", 400},
	{"chunk data without CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400},
	{"chunk data bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n", 400},
	{"chunk extension unbounded", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=" + strings.Repeat("b", 5000) + "\r\nabc\r\n0\r\n\r\n", 400},
	{"last chunk bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\n\r\n", 400},
	{"trailer obs-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n 2\r\n\r\n", 400},
	{"trailer without colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T\r\n\r\n", 400},

	// Header lines (RFC 9112 5, RFC 9110 5.5)
	{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
	{"CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
	{"LF in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n", 400},
	{"non-token name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n", 400},
	{"line without colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400},
	{"bare CR line end", "GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400},
	{"bare LF line end", "GET / HTTP/1.1\nHost: x\n\n", 400},

	// Request line (RFC 9112 3)
	{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	{"HTTP/0.9", "GET /\r\n\r\n", 400},
	{"target without slash", "GET admin HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 501},
	{"GET asterisk", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"target with space", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	{"target with bad escape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},

	// Host (RFC 9112 3.2, 3.2.2)
	{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"two Host", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
	{"invalid Host", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: a@x\r\n\r\n", 400},
	{"absolute-form authority differs", "GET http://y/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},

	// Limits
	{"request line over 8 KiB", "GET /" + strings.Repeat("a", 8200) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
	{"head over 16 KiB", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", 17000) + "\r\n\r\n", 431},
	{"101 header lines", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: 1\r\n", 100) + "\r\n", 431},
	{"body over --max-body-bytes", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + strings.Repeat("a", 1025), 413},
	{"chunked body over --max-body-bytes", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + strings.Repeat("a", 1025) + "\r\n0\r\n\r\n", 413},
	{"head not finished in --header-timeout", "GET / HTTP/1.1\r\nHost: x\r\n", 408},
	{"Expect other than 100-continue", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\na", 417},

	// WebSocket handshakes (RFC 6455 4.1, 4.2.1)
	{"WebSocket POST", strings.Replace(handshake("x", "/ws"), "GET", "POST", 1), 400},
	{"WebSocket with body", strings.Replace(handshake("x", "/ws"), "\r\n\r\n", "\r\nContent-Length: 2\r\n\r\nab", 1), 400},
	{"WebSocket without key", strings.Replace(handshake("x", "/ws"), "Sec-WebSocket-Key: "+testKey+"\r\n", "", 1), 400},
	{"WebSocket key not 16 bytes", strings.Replace(handshake("x", "/ws"), testKey, "dGhlIHNhbXBsZQ==", 1), 400},
	{"WebSocket key not base64", strings.Replace(handshake("x", "/ws"), testKey, "dGhlIHNhbXBsZSBub25j*Q==", 1), 400},
	{"WebSocket version 8", strings.Replace(handshake("x", "/ws"), "Version: 13", "Version: 8", 1), 426},
	{"WebSocket without version", strings.Replace(handshake("x", "/ws"), "Sec-WebSocket-Version: 13\r\n", "", 1), 426},
}

// strictProxy is the proxy the raw tables run against: a capturing backend,
// --max-body-bytes 1024, --header-timeout 1s.
func strictProxy(t *testing.T, mod func(*loop.Config)) (*proxy, *captureBackend) {
	cb := newCaptureBackend(t)
	p := startProxy(t, []string{cb.addr}, func(c *loop.Config, _ *tunnel.Config) {
		c.MaxBodyBytes = 1024
		c.HeaderTimeout = time.Second
		if mod != nil {
			mod(c)
		}
	})
	return p, cb
}

func TestStrictRejectsNeverForwarded(t *testing.T) {
	p, cb := strictProxy(t, nil)
	for _, tc := range strictRejects {
		t.Run(tc.name, func(t *testing.T) {
			k := cb.n()
			resp, all, err := rawExchange(t, p.addr, tc.raw, false)
			if resp == nil {
				t.Fatal(err)
			}
			if err != nil {
				t.Errorf("connection not closed cleanly after the answer: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d:\n%s", resp.StatusCode, tc.status, all)
			}
			if !resp.Close {
				t.Errorf("no Connection: close:\n%s", all)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13:\n%s", all)
			}
			if rs, _, err := responses(all); err != nil || len(rs) != 1 {
				t.Errorf("want exactly one response, got %d (%v):\n%s", len(rs), err, all)
			}
			if got := cb.sync(t, p.addr, k); len(got) != 0 {
				t.Errorf("forwarded to the backend: %+v", got)
			}
		})
	}
}

// strictForwards are requests wsgate forwards, after removing what must not
// pass; check sees what the backend got.
var strictForwards = []struct {
	name  string
	raw   string
	check func(t *testing.T, got []captured, all string)
}{
	{"pipelined requests after Connection: close are dropped",
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\nPOST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
		func(t *testing.T, got []captured, all string) {
			if rs, _, err := responses(all); err != nil || len(rs) != 2 || !rs[1].Close {
				t.Errorf("want 2 responses, the second with Connection: close: %v\n%s", err, all)
			}
			if len(got) != 2 || got[0].Target != "/a" || got[1].Target != "/b" {
				t.Errorf("backend got %+v, want /a and /b only", got)
			}
		}},
	{"h2c upgrade removed with HTTP2-Settings",
		"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
		noUpgradeForwarded},
	{"HTTP2-Settings not named in Connection removed",
		"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
		noUpgradeForwarded},
	{"other Upgrade token removed",
		"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: TLS/1.2\r\n\r\n",
		noUpgradeForwarded},
	{"Upgrade websocket without Connection upgrade is plain HTTP",
		strings.Replace(handshake("x", "/ws"), "Connection: Upgrade\r\n", "", 1),
		noUpgradeForwarded},
	{"Connection upgrade without Upgrade is plain HTTP",
		strings.Replace(handshake("x", "/ws"), "Upgrade: websocket\r\n", "", 1),
		noUpgradeForwarded},
	{"WebSocket handshake in HTTP/1.0 is plain HTTP",
		strings.Replace(handshake("x", "/ws"), "HTTP/1.1", "HTTP/1.0", 1),
		noUpgradeForwarded},
	{"Connection naming X-Forwarded-For and X-Real-IP keeps ours",
		"GET /xff HTTP/1.1\r\nHost: x\r\nConnection: close, X-Forwarded-For, X-Real-IP, Forwarded, X-Forwarded-Host\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n",
		func(t *testing.T, got []captured, all string) {
			if len(got) != 1 {
				t.Fatalf("backend got %+v", got)
			}
			h := got[0].Header
			if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Real-IP") != "127.0.0.1" ||
				h.Get("Forwarded") != "for=127.0.0.1;host=x;proto=http" || h.Get("X-Forwarded-Host") != "x" {
				t.Errorf("forwarding headers: %q", h)
			}
		}},
	{"Connection naming Content-Length, Transfer-Encoding and Host drops none",
		"POST /cl HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 3\r\n\r\nabc",
		func(t *testing.T, got []captured, all string) {
			if len(got) != 1 || !got[0].Complete || got[0].Body != "abc" || got[0].Header.Get("Content-Length") != "3" {
				t.Fatalf("backend got %+v", got)
			}
		}},
	{"Connection naming Transfer-Encoding keeps chunked",
		"POST /te HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		func(t *testing.T, got []captured, all string) {
			if len(got) != 1 || !got[0].Complete || got[0].Body != "abc" {
				t.Fatalf("backend got %+v", got)
			}
		}},
	{"OPTIONS asterisk",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		func(t *testing.T, got []captured, all string) {
			if len(got) != 1 || got[0].Method != "OPTIONS" || got[0].Target != "*" {
				t.Fatalf("backend got %+v", got)
			}
		}},
	{"identical repeated Content-Length forwarded once",
		"POST /cl2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		func(t *testing.T, got []captured, all string) {
			if len(got) != 1 || got[0].Body != "abc" || len(got[0].Header.Values("Content-Length")) != 1 {
				t.Fatalf("backend got %+v", got)
			}
		}},
}

func noUpgradeForwarded(t *testing.T, got []captured, all string) {
	t.Helper()
	if rs, _, err := responses(all); err != nil || len(rs) < 1 || rs[0].StatusCode != 200 {
		t.Errorf("want a 200: %v\n%s", err, all)
	}
	if len(got) != 1 {
		t.Fatalf("backend got %d requests: %+v", len(got), got)
	}
	h := got[0].Header
	if h.Get("Upgrade") != "" || h.Get("HTTP2-Settings") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
		t.Errorf("upgrade leftovers forwarded: %q", h)
	}
}

func TestStrictForwardsSanitized(t *testing.T) {
	p, cb := strictProxy(t, nil)
	for _, tc := range strictForwards {
		t.Run(tc.name, func(t *testing.T) {
			k := cb.n()
			c := dial(t, p.addr)
			c.Write([]byte(tc.raw))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			// Read what comes until the proxy closes or goes quiet.
			var all []byte
			buf := make([]byte, 4096)
			for {
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.Read(buf)
				all = append(all, buf[:n]...)
				if err != nil {
					break
				}
			}
			tc.check(t, cb.sync(t, p.addr, k), string(all))
		})
	}
}
