package http1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

func appendReq(t *testing.T, raw string, f *Forward) (string, *http.Request) {
	t.Helper()
	buf := []byte(raw)
	var r Request
	if err := r.Parse(buf, nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out := AppendRequest(nil, buf, &r, f)
	if len(out) > MaxAppendRequest(&r, f) {
		t.Fatalf("output %d bytes over bound %d", len(out), MaxAppendRequest(&r, f))
	}
	// Our own parser accepts what we send.
	var again Request
	if err := again.Parse(out, nil); err != nil {
		t.Fatalf("own parse of output: %v\n%s", err, out)
	}
	hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(out))))
	if err != nil {
		t.Fatalf("net/http rejects output: %v\n%s", err, out)
	}
	return string(out), hr
}

func TestAppendRequestHopByHop(t *testing.T) {
	raw := "POST /api?x=1 HTTP/1.1\r\n" +
		"Host: app.example\r\n" +
		"Connection: keep-alive, X-Secret, Content-Length, host\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"TE: trailers\r\n" +
		"Trailer: X-Sum\r\n" +
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
		"Upgrade: h2c\r\n" +
		"X-Secret: s3cr3t\r\n" +
		"Expect: 100-continue\r\n" +
		"Content-Length: 11\r\n" +
		"Content-Length: 11\r\n" +
		"Accept:*/*\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("192.0.2.7"), Proto: "https"})
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Proxy-Authorization", "Upgrade", "X-Secret", "Expect"} {
		if v, ok := hr.Header[h]; ok {
			t.Errorf("%s forwarded: %q", h, v)
		}
	}
	if !strings.HasPrefix(out, "POST /api?x=1 HTTP/1.1\r\nHost: app.example\r\n") {
		t.Errorf("request line / Host changed:\n%s", out)
	}
	if strings.Count(out, "Content-Length: 11\r\n") != 1 || hr.ContentLength != 11 {
		t.Errorf("Content-Length not sent exactly once:\n%s", out)
	}
	if hr.Header.Get("Accept") != "*/*" {
		t.Errorf("Accept lost:\n%s", out)
	}
	want := map[string]string{
		"X-Forwarded-For":   "192.0.2.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "app.example",
		"X-Real-Ip":         "192.0.2.7",
		"Forwarded":         "for=192.0.2.7;host=app.example;proto=https",
	}
	for k, v := range want {
		if got := hr.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestAppendRequestChunkedKept(t *testing.T) {
	raw := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("10.0.0.1"), Proto: "http"})
	if len(hr.TransferEncoding) != 1 || hr.TransferEncoding[0] != "chunked" {
		t.Fatalf("chunked lost:\n%s", out)
	}
}

func TestAppendRequestForwardedUntrusted(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a.example:8080\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n" +
		"X-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("2001:db8::7"), Proto: "http"})
	if strings.Contains(out, "6.6.6.6") || strings.Contains(out, "evil") {
		t.Fatalf("client copies kept for an untrusted peer:\n%s", out)
	}
	want := map[string]string{
		"X-Forwarded-For":   "2001:db8::7",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "a.example:8080",
		"X-Real-Ip":         "2001:db8::7",
		"Forwarded":         `for="[2001:db8::7]";host="a.example:8080";proto=http`,
	}
	for k, v := range want {
		if got := hr.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestAppendRequestForwardedTrusted(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\n" +
		"X-Forwarded-For: 203.0.113.1, 198.51.100.2\r\nX-Forwarded-For: 198.51.100.3\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n" +
		"X-Real-IP: 203.0.113.1\r\nForwarded: for=203.0.113.1;proto=https\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("10.1.1.1"), Proto: "http", Trusted: true})
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.1, 198.51.100.2, 198.51.100.3, 10.1.1.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "public.example",
		"X-Real-Ip":         "203.0.113.1",
		"Forwarded":         "for=203.0.113.1;proto=https, for=10.1.1.1;host=a;proto=http",
	}
	for k, v := range want {
		if got := hr.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q\n%s", k, got, v, out)
		}
	}
}

func TestAppendRequestTrustedWithoutClientHeaders(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\n\r\n"
	_, hr := appendReq(t, raw, &Forward{ClientIP: []byte("10.1.1.1"), Proto: "http", Trusted: true})
	if got := hr.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "10.1.1.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := hr.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
}

func TestAppendRequestWebSocketRestored(t *testing.T) {
	out, hr := appendReq(t, wsHandshake, &Forward{ClientIP: []byte("10.0.0.9"), Proto: "http"})
	if hr.Header.Get("Connection") != "Upgrade" || hr.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("Upgrade/Connection not restored:\n%s", out)
	}
	for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Origin"} {
		if hr.Header.Get(h) == "" {
			t.Errorf("%s lost", h)
		}
	}
	var r Request
	if err := r.Parse([]byte(out), nil); err != nil || !r.WebSocket {
		t.Fatalf("output is not a handshake: %v", err)
	}
}

func TestAppendRequestNonWebSocketUpgradeDropped(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("10.0.0.9"), Proto: "http"})
	if hr.Header.Get("Upgrade") != "" || hr.Header.Get("Http2-Settings") != "" || hr.Header.Get("Connection") != "" {
		t.Fatalf("upgrade forwarded:\n%s", out)
	}
}

func TestAppendRequestHTTP10KeepAlive(t *testing.T) {
	raw := "GET http://a/x HTTP/1.0\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("10.0.0.9"), Proto: "http"})
	// Sent in origin form (RFC 9112 3.2.1), with the authority as Host.
	if !strings.HasPrefix(out, "GET /x HTTP/1.0\r\nHost: a\r\n") || hr.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("got:\n%s", out)
	}
	if hr.Header.Get("X-Forwarded-Host") != "a" {
		t.Fatalf("X-Forwarded-Host from absolute-form: %q", hr.Header.Get("X-Forwarded-Host"))
	}
}

func TestAppendRequestBadClientIP(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	out, hr := appendReq(t, raw, &Forward{ClientIP: []byte("1.2.3.4\r\nX-Evil: 1"), Proto: "ht\r\ntp"})
	if hr.Header.Get("X-Evil") != "" {
		t.Fatalf("header injection:\n%s", out)
	}
	_, hr = appendReq(t, raw, &Forward{})
	if hr.Header.Get("Forwarded") != `for=unknown;host=a;proto=""` {
		t.Fatalf("Forwarded = %q", hr.Header.Get("Forwarded"))
	}
}

func TestAppendResponse(t *testing.T) {
	raw := "HTTP/1.0 200 OK\r\n" +
		"Connection: keep-alive, X-Backend-Secret\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"X-Backend-Secret: 1\r\n" +
		"Proxy-Authenticate: Basic\r\n" +
		"Upgrade: h2c\r\n" +
		"Content-Length: 2\r\n" +
		"Set-Cookie: a=1\r\n" +
		"Set-Cookie: b=2\r\n\r\n"
	buf := []byte(raw)
	var resp Response
	if err := resp.Parse(buf, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		out       []byte
		wantConn  string
		wantClose bool
	}{
		{"keep", AppendResponse(nil, buf, &resp, false), "", false},
		{"close", AppendResponse(nil, buf, &resp, true), "close", true},
		{"keep-alive for HTTP/1.0 client", AppendResponseKeepAlive(nil, buf, &resp), "keep-alive", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.out) > MaxAppendResponse(&resp) {
				t.Fatalf("over bound")
			}
			out := string(tc.out)
			if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
				t.Fatalf("status line: %q", out)
			}
			hr, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Keep-Alive", "X-Backend-Secret", "Proxy-Authenticate", "Upgrade"} {
				if hr.Header.Get(h) != "" {
					t.Errorf("%s forwarded", h)
				}
			}
			// net/http drops "Connection: close" after setting Close.
			if (!tc.wantClose && hr.Header.Get("Connection") != tc.wantConn) || hr.Close != tc.wantClose ||
				(tc.wantConn != "" && !strings.Contains(out, "\r\nConnection: "+tc.wantConn+"\r\n")) {
				t.Errorf("Connection = %q close=%v\n%s", hr.Header.Get("Connection"), hr.Close, out)
			}
			if len(hr.Header.Values("Set-Cookie")) != 2 || hr.ContentLength != 2 {
				t.Errorf("end-to-end headers lost:\n%s", out)
			}
		})
	}
}

func TestAppendResponse101KeepsUpgrade(t *testing.T) {
	raw := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nKeep-Alive: x\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	buf := []byte(raw)
	var resp Response
	if err := resp.Parse(buf, nil); err != nil {
		t.Fatal(err)
	}
	out := string(AppendResponse(nil, buf, &resp, true))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if out != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
}

func TestAppendResponseChunkedKept(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n"
	buf := []byte(raw)
	var resp Response
	if err := resp.Parse(buf, nil); err != nil {
		t.Fatal(err)
	}
	out := string(AppendResponse(nil, buf, &resp, false))
	if out != "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" {
		t.Fatalf("got %q", out)
	}
}

func TestAppendError(t *testing.T) {
	for _, tc := range []struct {
		status int
		close  bool
		want   string
	}{
		{400, true, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"},
		{502, false, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\r\n502 Bad Gateway\n"},
		{431, true, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n"},
	} {
		got := string(AppendError(nil, tc.status, tc.close))
		if got != tc.want {
			t.Errorf("got %q\nwant %q", got, tc.want)
		}
		hr, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
		if err != nil || hr.StatusCode != tc.status || hr.Close != tc.close {
			t.Errorf("net/http: %v", err)
		}
	}
	// Every status this package produces has a reason phrase.
	for _, e := range reqErr {
		if e != nil && StatusText(e.Status) == "" {
			t.Errorf("no reason for %d", e.Status)
		}
	}
	if StatusText(413) != "Content Too Large" { // RFC 9110 name; net/http keeps the old one
		t.Errorf("StatusText(413) = %q", StatusText(413))
	}
	for _, s := range []int{400, 417, 431, 501, 502, 503, 504, 505} { // 413, 414: RFC 9110 names differ from net/http
		if StatusText(s) == "" || StatusText(s) != http.StatusText(s) {
			t.Errorf("StatusText(%d) = %q, net/http %q", s, StatusText(s), http.StatusText(s))
		}
	}
	if got := string(AppendError(nil, 42, false)); !strings.HasPrefix(got, "HTTP/1.1 500 ") {
		t.Errorf("bad status: %q", got)
	}
}
