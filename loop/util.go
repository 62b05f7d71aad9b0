package loop

import (
	"bytes"
	"sync"
)

// buffers holds small scratch buffers for error responses.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// hostOnly strips the port from a Host value ("example.com:8080",
// "[::1]:8080").
func hostOnly(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// pathOf returns the path of a request target: origin-form up to the query,
// the path of an absolute-form target, "*" as is.
func pathOf(t []byte) []byte {
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			j := bytes.IndexByte(t, '/')
			if j < 0 {
				return []byte("/")
			}
			t = t[j:]
		}
	}
	if i := bytes.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	return t
}
