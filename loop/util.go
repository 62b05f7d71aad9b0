package loop

import (
	"bytes"
	"sync"

	"github.com/wsgate/wsgate/http1"
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

// reqPath is the path every decision on a request is made on: its
// normalized path (http1.Request.Path), or "*" for a target without one.
func reqPath(req *http1.Request, head []byte) []byte {
	if p := req.Path(head); p != nil {
		return p
	}
	return starPath
}

var starPath = []byte("*")
