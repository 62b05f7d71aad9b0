package http1

import (
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"
)

func TestAcceptKeyRFC6455Example(t *testing.T) {
	got := string(AcceptKey(nil, []byte("dGhlIHNhbXBsZSBub25jZQ==")))
	if got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("got %q", got)
	}
	// Long keys take the other path and agree with a plain computation.
	long := []byte(strings.Repeat("k", 200))
	h := sha1.Sum(append(append([]byte{}, long...), wsGUID...))
	if string(AcceptKey([]byte("x"), long)) != "x"+base64.StdEncoding.EncodeToString(h[:]) {
		t.Fatal("long key")
	}
}

func TestCheckWebSocket(t *testing.T) {
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	const ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"valid", ok, nil},
		{"valid case-insensitive tokens", strings.NewReplacer("websocket", "WebSocket", "Connection: Upgrade", "Connection: keep-alive, upgrade").Replace(ok), nil},
		{"wrong status", strings.Replace(ok, "101 Switching Protocols", "200 OK", 1), ErrWebSocketStatus},
		{"403 status", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", ErrWebSocketStatus},
		{"missing upgrade", strings.Replace(ok, "Upgrade: websocket\r\n", "", 1), ErrWebSocketUpgrade},
		{"other upgrade", strings.Replace(ok, "Upgrade: websocket", "Upgrade: h2c", 1), ErrWebSocketUpgrade},
		{"missing connection", strings.Replace(ok, "Connection: Upgrade\r\n", "", 1), ErrWebSocketConnection},
		{"wrong accept", strings.Replace(ok, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=", 1), ErrWebSocketAccept},
		{"missing accept", strings.Replace(ok, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "", 1), ErrWebSocketAccept},
		{"two accepts", strings.Replace(ok, "\r\n\r\n", "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", 1), ErrWebSocketAccept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := []byte(tc.raw)
			var resp Response
			if err := resp.Parse(buf, nil); err != nil {
				t.Fatal(err)
			}
			if err := resp.CheckWebSocket(buf, key); err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
