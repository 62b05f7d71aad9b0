package loop

import (
	"sync"

	"github.com/wsgate/wsgate/http1"
)

// buffers holds small scratch buffers for error responses.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// reqPath is the path every decision on a request is made on: its
// normalized path (http1.Request.Path), or "*" for a target without one.
func reqPath(req *http1.Request, head []byte) []byte {
	if p := req.Path(head); p != nil {
		return p
	}
	return starPath
}

var starPath = []byte("*")
