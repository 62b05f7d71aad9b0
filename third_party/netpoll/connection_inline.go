// wsgate patch (not in upstream netpoll v0.7.2): run a piece of a
// connection's handling on the caller's goroutine.
//
// wsgate's handler returns while a WebSocket handshake waits for the
// backend's 101 (its state kept on the connection, the connection held:
// connection_wake.go), and the tunnel engine's loop, which polls the
// backend's socket, learns first that the answer came. With Wake the loop
// would hand the answer to a runner goroutine, which would hand the
// verified pair back to the loop: two goroutine switches a handshake.
// RunInline lets the loop finish the handshake itself, under the
// processing lock, as a handler would.

package netpoll

import "context"

// HoldUnpolled is Hold for a connection that the poller is not to read
// meanwhile: one accepted with WithDeferredRegister and not registered
// yet stays out of the epoll set when its handler's task ends (its first
// run), which would otherwise register it, until the hold ends (false).
// wsgate holds a WebSocket handshake that way while it waits for the
// backend's 101 (a few hundred µs): registering the client's socket for
// that wait, only to detach it for the tunnel, cost an EPOLL_CTL_ADD and
// an EPOLL_CTL_DEL a handshake. As while a handler runs on a connection
// not registered yet, the poller sees none of its events: input, a FIN or
// a hang-up are found by whoever reads or writes it next (its tunnel),
// or once it is registered. A registered connection is not taken out.
// false: conn is not a netpoll connection.
func HoldUnpolled(conn Connection, on bool) bool {
	c, ok := conn.(*connection)
	if !ok {
		return false
	}
	c.unpolled.Store(on)
	c.held.Store(on)
	return true
}

// RunInline runs fn on the calling goroutine, under conn's processing
// lock, as a handler task would run (never beside another handler task or
// the close callbacks), and ends the way a task ends: a Close or Detach
// made by fn runs the close callbacks here, on this goroutine. It never
// calls the OnRequest handler itself: when fn returns true (the handler
// must go on), or input came meanwhile, the handler runs as a new task on
// the runner. fn gets the connection's context (what OnPrepare returned).
//
// When a task runs now (the lock is taken), fn does not run: the handler
// is called once more before that task ends, as Wake does, and RunInline
// returns false. On a closed connection nothing happens (false). false
// too when conn is not a netpoll connection.
func RunInline(conn Connection, fn func(ctx context.Context, conn Connection) (wake bool)) bool {
	c, ok := conn.(*connection)
	if !ok {
		return false
	}
	onRequest, _ := c.onRequestCallback.Load().(OnRequest)
	if !c.lock(processing) {
		if onRequest != nil {
			c.wake.Store(true)
			c.onProcess(nil, onRequest) // a task that is just ending looks again; or a new one runs
		}
		return false
	}
	if closedBy := c.status(closing); closedBy != none {
		// Closed before the lock was had: the close callbacks are due
		// (detached first when the user closed it, as a task's end does).
		c.closeCallback(false, closedBy == user)
		return false
	}
	panicked := true
	defer func() {
		if !panicked {
			return
		}
		// as a task's: the panic goes on, the connection is closed
		c.unlock(processing)
		if c.IsActive() {
			c.Close()
		} else {
			c.closeCallback(false, false)
		}
	}()
	if fn(c.ctx, c) {
		c.wake.Store(true)
	}
	panicked = false
	c.resumeIfDrained()
	if closedBy := c.status(closing); closedBy != none {
		c.closeCallback(false, closedBy == user)
		return true
	}
	if !c.unpolled.Load() && c.ensureRegistered() != nil { // as a task's end (connection_deferred.go)
		c.Close() // not polled: the double check below runs its close callbacks
	}
	c.unlock(processing)
	if c.inputEnded() && c.Reader().Len() == 0 && !c.held.Load() {
		c.Close()
		return true
	}
	// as a task's double checks, except that the handler goes to the runner
	if c.status(closing) != 0 && c.lock(processing) {
		c.closeCallback(false, false)
		return true
	}
	if onRequest != nil && (c.Reader().Len() > 0 || c.wake.Load()) {
		c.onProcess(nil, onRequest)
	}
	return true
}
