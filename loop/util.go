package loop

import (
	"github.com/valyala/bytebufferpool"

	"github.com/wsgate/wsgate/http1"
)

// buffers holds the scratch buffers of the responses the proxy writes
// itself (errors, redirects; their size varies with the status and the
// redirect's target). bytebufferpool sizes new buffers by the lengths
// returned to it and drops ones much larger than most, so a redirect to a
// long URL does not pin a large buffer for good. Put a buffer back with
// its length: the pool calibrates on it.
var buffers answerBufs

// minAnswer is the length every answer is counted as when its buffer goes
// back. The error answers are 117 to 190 bytes, on both sides of
// bytebufferpool's 128-byte step, and the pool drops a buffer above the
// size that 95% of answers fit in: without a floor, a status answered
// rarely (under 5%) among common ones would allocate each time. Every
// buffer has at least minAnswer bytes (Get), so Put can count it so.
const minAnswer = 256

type answerBufs struct{ p bytebufferpool.Pool }

// Get returns an empty buffer of at least minAnswer bytes.
func (a *answerBufs) Get() *bytebufferpool.ByteBuffer {
	b := a.p.Get()
	if cap(b.B) < minAnswer { // new, before the pool calibrated
		b.B = make([]byte, 0, minAnswer)
	}
	return b
}

// Put returns b to the pool, counted as at least minAnswer long.
func (a *answerBufs) Put(b *bytebufferpool.ByteBuffer) {
	if len(b.B) < minAnswer {
		b.B = b.B[:minAnswer]
	}
	a.p.Put(b)
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
