package http1

import (
	"crypto/sha1"
	"encoding/base64"
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey appends base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
// (RFC 6455 4.2.2) to dst. No allocation for keys up to 92 bytes (a valid
// key has 24) when dst has 28 bytes of room.
func AcceptKey(dst, key []byte) []byte {
	var sum [sha1.Size]byte
	if len(key) <= 128-len(wsGUID) {
		var b [128]byte
		n := copy(b[:], key)
		n += copy(b[n:], wsGUID)
		sum = sha1.Sum(b[:n])
	} else {
		h := sha1.New()
		h.Write(key)
		h.Write([]byte(wsGUID))
		h.Sum(sum[:0])
	}
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// CheckWebSocket reports whether resp (parsed from buf) is a valid 101
// answer to a handshake whose Sec-WebSocket-Key was key: status 101
// (else ErrWebSocketStatus), an Upgrade token "websocket"
// (ErrWebSocketUpgrade), a Connection token "upgrade"
// (ErrWebSocketConnection), and exactly one Sec-WebSocket-Accept equal to
// AcceptKey(key) (ErrWebSocketAccept). No allocation.
func (resp *Response) CheckWebSocket(buf, key []byte) error {
	if resp.Status != 101 {
		return ErrWebSocketStatus
	}
	upgrade := false
	accepts := 0
	var accept []byte
	for i := 0; i < resp.N; i++ {
		v := resp.Headers[i].Value.Of(buf)
		switch resp.kinds[i] {
		case kUpgrade:
			upgrade = upgrade || hasToken(v, "websocket")
		case kSecWebSocketAccept:
			accepts++
			accept = v
		}
	}
	if !upgrade {
		return ErrWebSocketUpgrade
	}
	if !resp.f.connUpg {
		return ErrWebSocketConnection
	}
	var want [28]byte
	if accepts != 1 || string(AcceptKey(want[:0], key)) != string(accept) {
		return ErrWebSocketAccept
	}
	return nil
}
