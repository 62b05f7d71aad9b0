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
// read at once. It holds the processing lock while it reads, as a
// handler's task does, so that a Close from elsewhere meanwhile (a
// graceful shutdown finds the new connection idle) leaves its close
// callbacks, which free the buffers and the operator and close the fd, to
// readFirst. With nothing read (EAGAIN, EOF, an error) the connection is
// registered and the poller takes it from there; with input, the handler
// runs, and registers it when it has to wait or its run ends.
func (c *connection) readFirst() {
	if !c.deferred.pending.Load() || !c.lock(processing) {
		return // closed, or a task runs (OnConnect's): it registers at its end
	}
	var vs [1][]byte
	var ivs [1]syscall.Iovec
	bs := c.inputs(vs[:])
	n, err := readv(c.fd, bs, ivs[:len(bs)])
	if err != nil || n < 0 {
		n = 0
	}
	c.inputAck(n) // its onRequest starts nothing while the lock is held
	c.unlock(processing)
	if c.status(closing) != 0 {
		if c.lock(processing) { // closed meanwhile: the close callbacks are ours
			c.closeCallback(false, false)
		}
		return
	}
	if n > 0 && !c.onRequest() {
		return // the handler runs (or ran), and registers the connection
	}
	if err := c.ensureRegistered(); err != nil {
		c.Close()
	}
}

// ensureRegistered registers a deferred connection with its poller, with
// the interest its state asks for (reading paused, writing wanted). It
// does nothing for a connection that is registered or closing. On an
// error (epoll out of memory or watches) the connection is not polled:
// the caller closes it or returns the error.
func (c *connection) ensureRegistered() error {
	if !c.deferred.pending.Load() {
		return nil
	}
	c.pause.mu.Lock()
	defer c.pause.mu.Unlock()
	return c.registerLocked()
}

// registerLocked is ensureRegistered with c.pause.mu held. The mutex also
// orders it against closeCallback's look at pending (notRegistered): a
// connection is either registered before its close detaches it, or never.
func (c *connection) registerLocked() error {
	if !c.deferred.pending.Load() || !c.IsActive() {
		return nil
	}
	c.deferred.pending.Store(false)
	if err := c.operator.Control(PollReadable); err != nil {
		logger.Printf("NETPOLL: connection register failed: %v", err)
		return err
	}
	if c.pause.off || c.pause.writing {
		return c.interest()
	}
	return nil
}

// notRegistered reports, once the connection is closing, whether it was
// never registered (and never will be): closeCallback then detaches
// nothing.
func (c *connection) notRegistered() bool {
	if !c.deferred.pending.Load() {
		return false
	}
	c.pause.mu.Lock()
	defer c.pause.mu.Unlock()
	return c.deferred.pending.Swap(false)
}
