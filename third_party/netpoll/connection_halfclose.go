// wsgate patch (not in upstream netpoll v0.7.2): a peer's half-close while
// a handler runs ends the input, not the connection.
//
// Upstream takes a peer's FIN (EPOLLRDHUP with nothing left to read) for a
// hang-up: the connection is closed as soon as its handler returns, and
// every write from then on fails. A client that sends a complete request
// and then shuts down its sending side (shutdown(SHUT_WR), as `nc -N` and
// many scripts do) therefore never gets its response, though the request
// was served. HTTP allows that half-close (RFC 9112 9.6), and HAProxy and
// the backends themselves answer it.
//
// With the read threshold set (connection_pause.go), a FIN that arrives
// while the handler runs, or while input is still unread, marks the
// connection's input as ended instead: reading stops for good (only
// errors are watched, so the level-triggered EPOLLRDHUP cannot spin the
// poller), a reader waiting for more input gets ErrEOF, writes go on, and
// the connection is closed when the handler has returned. A FIN on an idle
// connection, or a full hang-up (EPOLLHUP, EPOLLERR), closes it as before.

package netpoll

// onPeerShut runs on the poller when the peer has shut down its sending
// side and nothing is left to read. It reports whether the connection
// stays open for its handler; false: treat it as a hang-up.
func (c *connection) onPeerShut(p Poll) bool {
	if c.pause.threshold == 0 {
		return false
	}
	if c.pause.shut.Load() {
		return true // already ended: nothing more to do
	}
	if c.isUnlock(processing) && c.inputBuffer.Len() == 0 && !c.held.Load() {
		return false // no handler, nothing to serve: a hang-up (held: a request waits, connection_wake.go)
	}
	c.pause.mu.Lock()
	c.pause.shut.Store(true)
	c.pause.off = true
	c.pause.paused.Store(false) // never resumed: shut decides
	c.interest()
	c.pause.mu.Unlock()
	c.triggerRead(Exception(ErrEOF, "peer shut down writing"))
	// The handler may have returned between the check above and the store
	// (the EOF just triggered wakes a handler waiting for input, such as a
	// lingering close): its task then did not see shut, and nothing would
	// close the connection. Take the processing lock to know: held, a task
	// runs and will see shut when it ends (onProcess); free, it is a
	// hang-up after all, and the poller's own hang-up path closes it
	// (false). Never Close here: this runs inside the poller's handling of
	// the connection's event, and Close frees the connection's operator,
	// which waits until the poller is done with it (it span forever; found
	// by the declined-upgrade test's lingering close under -race, December
	// 2026).
	if c.lock(processing) {
		c.unlock(processing)
		// wsgate patch (connection_inline.go): a Wake or RunInline that
		// found the lock taken just now left its wake for a task's end,
		// and this was no task.
		if onRequest, ok := c.onRequestCallback.Load().(OnRequest); ok && c.wake.Load() {
			c.onProcess(nil, onRequest)
		}
		if c.inputBuffer.Len() == 0 && !c.held.Load() {
			return false
		}
		// With input left, inputAck's trigger has started or will start a
		// task, which closes the connection when it ends.
	}
	return true
}

// inputEnded reports whether the peer shut down its sending side while the
// handler ran (onPeerShut): no more input will come.
func (c *connection) inputEnded() bool { return c.pause.shut.Load() }
