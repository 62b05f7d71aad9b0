// wsgate patch (not in upstream netpoll v0.7.2): read backpressure.
//
// Upstream's poller reads whatever a connection sends as soon as it
// arrives, however much of it the handler has yet to consume: a client
// uploading to a slow backend fills the proxy's memory without bound. With
// WithReadThreshold, a connection whose unread input reaches the threshold
// is taken out of the poller's read interest until the handler has
// consumed and released it below the threshold (Release), or waits for
// more input than is buffered (waitRead). Reads are also at most the
// threshold at a time, so input held per connection stays under twice it.
//
// The poll interest (reading or not, writing or not) is changed under one
// mutex, so the write path's PollR2RW/PollRW2R and pause/resume do not
// overwrite each other. While paused only errors are watched: a peer's
// FIN (EPOLLRDHUP) must not be taken for a hang-up while its last bytes
// are still unread in the socket.

package netpoll

import (
	"sync"
	"sync/atomic"
)

// WithReadThreshold pauses reading a connection while its unread input is
// at least n bytes (0: never, upstream's behaviour).
func WithReadThreshold(n int) Option {
	return Option{func(op *options) {
		op.readThreshold = n
	}}
}

type readPause struct {
	threshold int // immutable after prepare; 0: disabled
	paused    atomic.Bool
	shut      atomic.Bool // wsgate patch (connection_halfclose.go): input ended by the peer's FIN

	mu      sync.Mutex // guards reading, writing and the Control calls that apply them
	off     bool       // reads paused
	writing bool       // EPOLLOUT wanted (output waits for the socket)
}

// interest applies the poll interest for the current state; mu held.
func (c *connection) interest() error {
	if c.deferred.pending.Load() { // wsgate patch (connection_deferred.go): register first
		return c.registerLocked()
	}
	var ev PollEvent
	switch {
	case c.pause.off && c.pause.writing:
		ev = PollPausedW
	case c.pause.off:
		ev = PollPaused
	case c.pause.writing:
		ev = PollR2RW
	default:
		ev = PollRW2R
	}
	return c.operator.Control(ev)
}

// setWriting replaces Control(PollR2RW) (true) and Control(PollRW2R) (false).
func (c *connection) setWriting(on bool) error {
	if on {
		if err := c.ensureRegistered(); err != nil { // wsgate patch (connection_deferred.go)
			return err
		}
	}
	if c.pause.threshold == 0 {
		if on {
			return c.operator.Control(PollR2RW)
		}
		return c.operator.Control(PollRW2R)
	}
	c.pause.mu.Lock()
	defer c.pause.mu.Unlock()
	c.pause.writing = on
	return c.interest()
}

// pauseIfFull runs on the poller after a read that left length bytes unread.
// A reader waiting for more than that (waitRead, say Next beyond the
// threshold) keeps reading on: pausing would leave it waiting forever.
func (c *connection) pauseIfFull(length int) {
	if c.pause.threshold == 0 || length < c.pause.threshold || c.pause.paused.Load() || c.pause.shut.Load() ||
		int64(length) < atomic.LoadInt64(&c.waitReadSize) {
		return
	}
	c.pause.mu.Lock()
	if !c.pause.off {
		c.pause.off = true
		c.pause.paused.Store(true)
		c.interest()
	}
	c.pause.mu.Unlock()
	// The handler may have released input, or begun to wait for more,
	// between the read and the pause without seeing it paused: look again
	// (paused is stored before Len and waitReadSize are loaded here; Len
	// decreased, or waitReadSize stored, before paused is loaded there).
	if c.wantsInput() {
		c.resumeRead()
	}
}

// wantsInput reports whether reading should go on: the unread input is
// under the threshold, or a reader waits for more than is buffered.
func (c *connection) wantsInput() bool {
	l := c.inputBuffer.Len()
	return l < c.pause.threshold || int64(l) < atomic.LoadInt64(&c.waitReadSize)
}

// resumeIfDrained runs after the handler released input.
func (c *connection) resumeIfDrained() {
	if c.pause.paused.Load() && c.inputBuffer.Len() < c.pause.threshold {
		c.resumeRead()
	}
}

// resumeRead resumes reading if it is still wanted: the caller's look at
// the input may be stale (the poller may have resumed, read and paused
// again since), and a stale resume would read past twice the threshold.
func (c *connection) resumeRead() {
	c.pause.mu.Lock()
	if c.pause.off && !c.pause.shut.Load() && c.wantsInput() { // after a FIN, reading stays off (connection_halfclose.go)
		c.pause.off = false
		c.pause.paused.Store(false)
		c.interest()
	}
	c.pause.mu.Unlock()
}
