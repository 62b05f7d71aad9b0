// wsgate patch (not in upstream netpoll v0.7.2): fewer allocations per
// connection.
//
// Upstream registers two close callbacks of its own on every accepted
// connection, each a closure and a list node: the finalizer (connection
// init), which as the oldest always ran last, and the removal from the
// server's map (server onAccept, after init), which ran after the
// callbacks added later and before those added in OnPrepare. Here both
// are called directly after the list: the map entry, then the finalizer.
// The one difference: while OnPrepare's callbacks run, the connection is
// still in the map, so a graceful shutdown that looks then counts it as
// busy for one more round. A connection's Close also made two errors for
// its waiters, the same each time; here it is one value. Four allocations
// fewer per connection, and two more per Close.

package netpoll

// errSelfClose is what a read or write waiting on a connection closed by
// its user gets (an *exception; its fields are never written after this).
var errSelfClose = Exception(ErrConnClosed, "self close")

// afterCloseCallbacks ends closeCallback: what upstream ran as the oldest
// two close callbacks.
func (c *connection) afterCloseCallbacks() {
	if c.srv != nil {
		// The fd's number may be another connection's by now (TakeFd): the
		// entry goes only if it is still this one (patch 8).
		c.srv.connections.CompareAndDelete(c.fd, c)
	}
	c.finalize()
}
