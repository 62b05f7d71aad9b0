package http1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

func TestAppendRejection(t *testing.T) {
	for _, tc := range []struct {
		err        error
		close      bool
		status     int
		connection string
		version    string
	}{
		{ErrBadWebSocketVersion, true, 426, "Upgrade, close", "13"},
		{ErrBadWebSocketVersion, false, 426, "Upgrade", "13"},
		{ErrBadWebSocketKey, true, 400, "close", ""},
		{ErrTEWithCL, true, 400, "close", ""},
		{ErrNotImplemented, true, 501, "close", ""},
		{ErrBodyTooLarge, true, 413, "close", ""},
		{ErrVersion, false, 505, "", ""},
	} {
		out := AppendRejection(nil, tc.err, tc.close)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
		if err != nil {
			t.Fatalf("%v: net/http rejects %q: %v", tc.err, out, err)
		}
		conn := ""
		if _, after, ok := strings.Cut(string(out), "\r\nConnection: "); ok {
			conn, _, _ = strings.Cut(after, "\r\n")
		}
		if resp.StatusCode != tc.status || conn != tc.connection ||
			resp.Header.Get("Sec-WebSocket-Version") != tc.version || resp.Close != tc.close {
			t.Errorf("%v: %q", tc.err, out)
		}
		if tc.status == 426 && resp.Header.Get("Upgrade") != "websocket" {
			t.Errorf("426 without Upgrade (RFC 9110 15.5.22): %q", out)
		}
	}
}

// Upgrade-related headers that must never reach a backend unless the request
// is a valid WebSocket handshake.
func TestAppendRequestUpgradeLeftovers(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"h2c with HTTP2-Settings not named in Connection", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n"},
		{"HTTP2-Settings alone", "GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMA\r\n\r\n"},
		{"Upgrade websocket without Connection upgrade", strings.Replace(wsHandshake, "Connection: Upgrade", "Connection: keep-alive", 1)},
		{"Connection upgrade without Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"},
		{"WebSocket handshake in HTTP/1.0", strings.Replace(wsHandshake, "HTTP/1.1", "HTTP/1.0", 1)},
		{"websocket and h2c", strings.Replace(wsHandshake, "Upgrade: websocket", "Upgrade: h2c", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, hr := appendReq(t, tc.raw, &Forward{ClientIP: []byte("192.0.2.1"), Proto: "http"})
			for _, h := range []string{"Upgrade", "Http2-Settings"} {
				if v, ok := hr.Header[h]; ok {
					t.Errorf("%s forwarded: %q\n%s", h, v, out)
				}
			}
			if strings.Contains(strings.ToLower(hr.Header.Get("Connection")), "upgrade") {
				t.Errorf("Connection: upgrade forwarded:\n%s", out)
			}
		})
	}
	// A valid handshake naming two protocols is forwarded as websocket only.
	raw := strings.Replace(wsHandshake, "Upgrade: websocket", "Upgrade: h2c, websocket", 1)
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("192.0.2.1"), Proto: "http"})
	if hr.Header.Values("Upgrade")[0] != "websocket" || len(hr.Header.Values("Upgrade")) != 1 {
		t.Errorf("Upgrade forwarded as %q:\n%s", hr.Header.Values("Upgrade"), out)
	}
}
