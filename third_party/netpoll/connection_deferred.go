// wsgate patch (new file): see WSGATE.md.

package netpoll

import (
	"sync/atomic"
	"syscall"
)

// Deferred registration: an accepted connection joins its poller's epoll
// set only once it has to wait.
//
// Upstream registers every accepted socket with its poller at once, and a
// connection that is handed over (wsgate's tunnels: Detach and TakeFd) or
// closed while its first request is served leaves the set again: an
// EPOLL_CTL_ADD and an EPOLL_CTL_DEL for nothing. A listener with
// TCP_DEFER_ACCEPT (wsgate's) accepts a connection once its request is
// there, so with WithDeferredRegister the accepting poller reads the
// socket right away instead (what HAProxy does) and runs the handler on
// what it read. The socket is registered when the handler has to wait for
// more input (waitRead) or for room to write (setWriting), when reading
// pauses (interest), when its first handler run ends with the connection
// still open, or at once when the first read finds nothing. Until then the
// poller sees none of its events: a peer that hangs up while the first
// request is served is seen at the next read or write, or once the
// connection is registered (the hang-up is still pending then).

// WithDeferredRegister defers each accepted connection's registration
// with its poller until it has to wait (see above); off: upstream's
// behaviour.
func WithDeferredRegister(on bool) Option {
	return Option{func(op *options) {
		op.deferRegister = on
	}}
}

type deferredReg struct {
	pending atomic.Bool // accepted and not registered with the poller yet
}

// readFirst is the accepting poller's read of a deferred connection: what
// the poller would read once the socket was registered and readable,
// read at once. With nothing read (EAGAIN, EOF, an error) the connection
// is registered and the poller takes it from there.
func (c *connection) readFirst() {
	if !c.deferred.pending.Load() {
		return
	}
	var vs [1][]byte
	var ivs [1]syscall.Iovec
	bs := c.inputs(vs[:])
	n, err := readv(c.fd, bs, ivs[:len(bs)])
	if err != nil || n <= 0 {
		c.inputAck(0)
		c.ensureRegistered()
		return
	}
	c.inputAck(n) // starts the handler (onProcess), which registers when it has to wait or ends
	if c.isUnlock(processing) {
		// No handler run was started (or it has ended and registered
		// already: then this does nothing).
		c.ensureRegistered()
	}
}

// ensureRegistered registers a deferred connection with its poller, with
// the interest its state asks for (reading paused, writing wanted). It
// does nothing for a connection that is registered or closing.
func (c *connection) ensureRegistered() error {
	if !c.deferred.pending.Load() {
		return nil
	}
	c.pause.mu.Lock()
	defer c.pause.mu.Unlock()
	return c.registerLocked()
}

// registerLocked is ensureRegistered with c.pause.mu held.
func (c *connection) registerLocked() error {
	if !c.deferred.pending.Swap(false) || !c.IsActive() {
		return nil
	}
	if err := c.operator.Control(PollReadable); err != nil {
		return err
	}
	if c.pause.off || c.pause.writing {
		return c.interest()
	}
	return nil
}
