//go:build !race

package http1

import "testing"

// The hot paths allocate nothing.
func TestZeroAllocs(t *testing.T) {
	reqBuf := []byte(browserGET)
	wsBuf := []byte(wsHandshake)
	respBuf := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nSet-Cookie: a=b\r\n\r\n")
	upBuf := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
	chunked := []byte("5\r\nhello\r\n6;ext=\"v\"\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
	var req, ws Request
	var resp, up Response
	var sc ChunkScanner
	fw := &Forward{ClientIP: []byte("2001:db8::1"), Proto: "https", Trusted: true}
	if err := req.Parse(reqBuf, nil); err != nil {
		t.Fatal(err)
	}
	if err := ws.Parse(wsBuf, nil); err != nil {
		t.Fatal(err)
	}
	if err := resp.Parse(respBuf, nil); err != nil {
		t.Fatal(err)
	}
	if err := up.Parse(upBuf, nil); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	lim := &Limits{}
	// A path that must be normalized: its buffer is reused once grown.
	normBuf := []byte("GET http://www.example.com/a/./%62/../%77s/%3b?q=%2e HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	var norm Request
	if err := norm.Parse(normBuf, nil); err != nil || string(norm.Path(normBuf)) != "/a/ws/%3B" {
		t.Fatal(err, string(norm.Path(normBuf)))
	}
	path := []byte("/socket.io/?EIO=4")[:11]
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Request.Parse", func() { req.Parse(reqBuf, lim) }},
		{"Request.Parse WebSocket", func() { ws.Parse(wsBuf, nil) }},
		{"Request.Parse error", func() { req.Parse([]byte("GET / HTTP/9.9\r\n"), nil) }},
		{"Response.Parse", func() { resp.Parse(respBuf, nil) }},
		{"Request.Get", func() { req.Get(reqBuf, "user-agent") }},
		{"Request.Parse normalizing", func() { norm.Parse(normBuf, nil) }},
		{"Request.Path", func() { req.Path(reqBuf); norm.Path(normBuf) }},
		{"Request.AppendTarget", func() { req.AppendTarget(dst[:0], reqBuf, 7); norm.AppendTarget(dst[:0], normBuf, 2) }},
		{"PathIsNormal", func() { PathIsNormal(path) }},
		{"AppendNormalPath", func() { AppendNormalPath(dst[:0], norm.rawPath.Of(normBuf)) }},
		{"AppendRequest normalized", func() { AppendRequest(dst[:0], normBuf, &norm, fw) }},
		{"ChunkScanner.Scan", func() { sc.Reset(); sc.Scan(chunked) }},
		{"AppendRequest", func() { AppendRequest(dst[:0], reqBuf, &req, fw) }},
		{"AppendRequest WebSocket", func() { AppendRequest(dst[:0], wsBuf, &ws, fw) }},
		{"AppendResponse", func() { AppendResponse(dst[:0], respBuf, &resp, true) }},
		{"AppendError", func() { AppendError(dst[:0], 431, true) }},
		{"AppendRejection", func() { AppendRejection(dst[:0], ErrBadWebSocketVersion, true) }},
		{"AcceptKey", func() { AcceptKey(dst[:0], ws.WSKey.Of(wsBuf)) }},
		{"CheckWebSocket", func() { up.CheckWebSocket(upBuf, ws.WSKey.Of(wsBuf)) }},
	} {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tc.name, n)
		}
	}
}

// The normalized path's buffer is reused across Parses: one allocation for
// the first path that is not normal, none after.
func TestRequestPathBufferReused(t *testing.T) {
	a := []byte("GET /%77s/./x HTTP/1.1\r\nHost: a\r\n\r\n")
	b := []byte("GET /b/../%6cogin HTTP/1.1\r\nHost: a\r\n\r\n")
	var r Request
	if err := r.Parse(a, nil); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		r.Parse(a, nil)
		r.Parse(b, nil)
	})
	if n != 0 {
		t.Errorf("%v allocs per two Parses", n)
	}
	if string(r.Path(b)) != "/login" {
		t.Errorf("path %q", r.Path(b))
	}
	if err := r.Parse([]byte("GET /plain HTTP/1.1\r\nHost: a\r\n\r\n"), nil); err != nil || r.PathChanged() {
		t.Errorf("state kept: %v %v", err, r.PathChanged())
	}
}
