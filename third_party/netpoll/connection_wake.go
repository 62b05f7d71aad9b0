// wsgate patch (not in upstream netpoll v0.7.2): run a connection's
// handler without new input.
//
// Upstream runs OnRequest only when input is unread. wsgate's handler
// returns while a request waits for a backend slot, keeping the request's
// state on the connection (no goroutine parked per waiting request), and
// continues it when the slot is granted: Wake runs the handler for that,
// on the runner, under the processing lock as always, so the continued
// exchange never runs beside the close callbacks (which free the
// connection's buffers) or beside another handler.

package netpoll

// Hold marks conn as held by its handler though none runs (on: a request
// waits in wsgate's queue, its state on the connection), or not any more.
// A held connection is not idle: a graceful shutdown (server Close) waits
// for it, and a peer's FIN (its half-close) ends its input as it would
// while a handler runs (connection_halfclose.go), instead of closing it: a
// client that sends its request and shuts down its sending side still gets
// the answer. A reset or hang-up (EPOLLHUP, EPOLLERR) still closes it.
// false: conn is not a netpoll connection.
func Hold(conn Connection, on bool) bool {
	c, ok := conn.(*connection)
	if !ok {
		return false
	}
	c.held.Store(on)
	return true
}

// Wake runs conn's OnRequest handler once more, as a new task, though no
// input may be unread; when a task runs now, it calls the handler once
// more before it ends. On a closed connection (its close callbacks run or
// have run) nothing happens. false: conn is not a connection with an
// OnRequest handler.
func Wake(conn Connection) bool {
	c, ok := conn.(*connection)
	if !ok {
		return false
	}
	onRequest, ok := c.onRequestCallback.Load().(OnRequest)
	if !ok {
		return false
	}
	c.wake.Store(true)
	c.onProcess(nil, onRequest)
	return true
}
