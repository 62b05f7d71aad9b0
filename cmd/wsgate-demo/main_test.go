package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func get(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Backend"); got != "node-a" {
		t.Errorf("%s %s: X-Backend %q, want node-a", req.Method, req.URL.Path, got)
	}
	return resp, string(body)
}

func TestHTTPEndpoints(t *testing.T) {
	srv := httptest.NewServer(newHandler("node-a"))
	defer srv.Close()

	cases := []struct {
		method, path string
		status       int
		body         string // substring
	}{
		{"GET", "/health", 200, "ok"},
		{"GET", "/name", 200, "node-a"},
		{"GET", "/", 200, "location.host"},
		{"DELETE", "/some/where?x=1", 200, "node node-a: DELETE /some/where\n"},
		{"GET", "/ws", 400, ""}, // not an upgrade
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, body := get(t, req)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

func TestHTTPEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("node-a"))
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/echo?q=1", strings.NewReader("hello body"))
	req.Host = "app.example.com"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Real-IP", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "app.example.com")
	resp, body := get(t, req)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"POST /echo?q=1 HTTP/1.1\n",
		"Host: app.example.com\n",
		"X-Forwarded-For: 203.0.113.7\n",
		"X-Real-Ip: 203.0.113.7\n",
		"X-Forwarded-Proto: https\n",
		"X-Forwarded-Host: app.example.com\n",
		"\n\nhello body",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("echo body lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasSuffix(body, "\n\nhello body") {
		t.Errorf("body does not end with the request body:\n%s", body)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("node-a"))
	defer srv.Close()

	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", http.Header{"Origin": {"http://elsewhere.example"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := resp.Header.Get("X-Backend"); got != "node-a" {
		t.Errorf("101 X-Backend %q, want node-a", got)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))

	expect := func(wantType int, want []byte) {
		t.Helper()
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != wantType || string(msg) != string(want) {
			t.Fatalf("got type %d %q, want type %d %q", typ, msg, wantType, want)
		}
	}
	expect(websocket.TextMessage, []byte("hello from node-a"))

	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, m := range []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("ping 1")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 0xff}},
		{websocket.TextMessage, []byte{}},
		{websocket.BinaryMessage, big},
	} {
		if err := conn.WriteMessage(m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		expect(m.typ, m.data)
	}

	// A clean close is answered with a close frame.
	if err := conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after close: %v, want close 1000", err)
	}
}
