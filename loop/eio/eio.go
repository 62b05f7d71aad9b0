// Package eio reads and rewrites Engine.IO (Socket.IO's transport) on the
// wire, as far as wsgate's sid affinity needs it: which request targets are
// Engine.IO and which sid they name, and the handshake's open packet, into
// which the node token is written. Pure functions over bytes; no I/O, no
// allocation except into dst.
package eio

import (
	"bytes"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

// Requests (both protocol versions): GET/POST PATH?EIO=3|4&transport=polling
// [&sid=SID][&t=...][&b64=1][&j=N], and the upgrade GET
// PATH?EIO=..&transport=websocket[&sid=SID]. The handshake is the first
// polling GET, without sid; its response body is the open packet:
//
//	Engine.IO 4 (Socket.IO 3, 4):  0{"sid":"SID","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}
//	Engine.IO 3 (Socket.IO 2), text payload, each packet "LENGTH:PACKET":
//	                               97:0{"sid":"SID",...,"pingTimeout":5000}2:40
//	Engine.IO 3, binary payload (XHR2): 0x00, LENGTH as one byte per decimal digit, 0xFF, PACKET, ...
//
// LENGTH counts the packet's characters (JavaScript string length); the
// tag added is ASCII, so the new length is the old one plus the tag's.
// Engine.IO 3's JSONP polling (j=N, a script wrapping an escaped string)
// is not tagged: its sessions go by least-connections on every request and
// only work through a single-node pool (or with --sticky ip).

// Query is what a request target says about Engine.IO.
type Query struct {
	Path      bool // the path has a "socket.io" segment
	EIO       bool // EIO= parameter
	JSONP     bool // j= parameter (Engine.IO 3 JSONP polling)
	WebSocket bool // transport=websocket
	HasSID    bool // sid= parameter; its value is target[SIDStart:SIDEnd]
	SIDStart  int
	SIDEnd    int
}

// ParseTarget reads an origin-form (or absolute-form) request target.
// Parameter names are matched exactly, without percent-decoding; of a
// repeated sid the first counts (engine.io itself refuses a repeated sid:
// its query parser makes it an array).
func ParseTarget(target []byte) Query {
	var q Query
	path, query := target, []byte(nil)
	qs := bytes.IndexByte(target, '?')
	if qs >= 0 {
		path, query = target[:qs], target[qs+1:]
	}
	if i := bytes.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	q.Path = hasSocketIOSegment(path)
	off := qs + 1
	for len(query) > 0 {
		p := query
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			p, query = query[:i], query[i+1:]
		} else {
			query = nil
		}
		key, val := p, []byte(nil)
		if i := bytes.IndexByte(p, '='); i >= 0 {
			key, val = p[:i], p[i+1:]
		}
		switch string(key) {
		case "EIO":
			q.EIO = true
		case "j":
			q.JSONP = true
		case "transport":
			q.WebSocket = q.WebSocket || string(val) == "websocket"
		case "sid":
			if !q.HasSID {
				q.HasSID = true
				q.SIDStart = off + len(key) + 1
				q.SIDEnd = q.SIDStart + len(val)
			}
		}
		off += len(p) + 1
	}
	return q
}

// hasSocketIOSegment reports whether path has a segment "socket.io".
func hasSocketIOSegment(path []byte) bool {
	const seg = "/socket.io"
	for {
		i := bytes.Index(path, []byte(seg))
		if i < 0 {
			return false
		}
		rest := path[i+len(seg):]
		if len(rest) == 0 || rest[0] == '/' {
			return true
		}
		path = rest
	}
}

// MaxSIDLen bounds the sid we tag; Engine.IO's are 20 characters.
const MaxSIDLen = 128

// TagHandshake appends to dst the handshake body with "." + tok inserted
// after the sid of its open packet, in any of the three payload forms, and
// returns the new body, the (untagged) sid, and the session's time to live
// (pingInterval + pingTimeout when the packet gives them, else 0). ok is false
// when body is not an open packet it understands; dst is then unchanged.
func TagHandshake(dst, body, tok []byte) (out, sid []byte, ttl time.Duration, ok bool) {
	tag := 1 + len(tok)
	switch {
	case len(body) >= 2 && body[0] == '0' && body[1] == '{':
		// Engine.IO 4: the body is the open packet (packets would be
		// separated by 0x1e; nothing before the sid changes length).
		at, s, t, ok := openPacket(body)
		if !ok {
			return dst, nil, 0, false
		}
		out = append(dst, body[:at]...)
		out = appendTag(out, tok)
		return append(out, body[at:]...), s, t, true

	case len(body) > 0 && '0' <= body[0] && body[0] <= '9':
		// Engine.IO 3 text payload: LENGTH ":" PACKET ...
		n, i := 0, 0
		for i < len(body) && i < 10 && '0' <= body[i] && body[i] <= '9' {
			n = n*10 + int(body[i]-'0')
			i++
		}
		if i == len(body) || body[i] != ':' || n < 2 || i+1+n > len(body) {
			return dst, nil, 0, false
		}
		pkt := body[i+1 : i+1+n]
		if pkt[0] != '0' {
			return dst, nil, 0, false
		}
		at, s, t, ok := openPacket(pkt)
		if !ok {
			return dst, nil, 0, false
		}
		out = appendInt(dst, n+tag)
		out = append(out, ':')
		out = append(out, pkt[:at]...)
		out = appendTag(out, tok)
		out = append(out, pkt[at:]...)
		return append(out, body[i+1+n:]...), s, t, true

	case len(body) > 0 && body[0] == 0x00:
		// Engine.IO 3 binary payload: 0x00 (string packet), digits as bytes
		// 0..9, 0xFF, PACKET ...
		n, i := 0, 1
		for i < len(body) && i < 11 && body[i] <= 9 {
			n = n*10 + int(body[i])
			i++
		}
		if i == 1 || i == len(body) || body[i] != 0xFF || n < 2 || i+1+n > len(body) {
			return dst, nil, 0, false
		}
		pkt := body[i+1 : i+1+n]
		if pkt[0] != '0' {
			return dst, nil, 0, false
		}
		at, s, t, ok := openPacket(pkt)
		if !ok {
			return dst, nil, 0, false
		}
		out = append(dst, 0x00)
		var digits [20]byte
		for _, d := range appendInt(digits[:0], n+tag) {
			out = append(out, d-'0')
		}
		out = append(out, 0xFF)
		out = append(out, pkt[:at]...)
		out = appendTag(out, tok)
		out = append(out, pkt[at:]...)
		return append(out, body[i+1+n:]...), s, t, true
	}
	return dst, nil, 0, false
}

// openPacket finds the sid in an open packet ("0{...}") and returns the
// offset just after the sid's value, the sid, and the ttl.
func openPacket(pkt []byte) (at int, sid []byte, ttl time.Duration, ok bool) {
	if len(pkt) < 2 || pkt[0] != '0' || pkt[1] != '{' {
		return 0, nil, 0, false
	}
	const key = `"sid":"`
	i := bytes.Index(pkt, []byte(key))
	if i < 0 {
		return 0, nil, 0, false
	}
	start := i + len(key)
	end := start
	for end < len(pkt) && pkt[end] != '"' {
		c := pkt[end]
		if c == '\\' || c < 0x21 || c >= 0x7f || end-start >= MaxSIDLen {
			return 0, nil, 0, false
		}
		end++
	}
	if end == len(pkt) || end == start {
		return 0, nil, 0, false
	}
	iv, ok1 := jsonInt(pkt, `"pingInterval":`)
	to, ok2 := jsonInt(pkt, `"pingTimeout":`)
	if ok1 && ok2 {
		ttl = time.Duration(iv+to) * time.Millisecond
	}
	return end, pkt[start:end], ttl, true
}

// jsonInt reads the non-negative integer after key in b.
func jsonInt(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	i += len(key)
	var n int64
	j := i
	for j < len(b) && j-i < 12 && '0' <= b[j] && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		j++
	}
	return n, j > i
}

func appendTag(dst, tok []byte) []byte {
	dst = append(dst, balancer.TokenSep)
	return append(dst, tok...)
}

func appendInt(dst []byte, n int) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
