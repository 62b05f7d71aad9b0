// wsgate patch (new file): see WSGATE.md.

package netpoll

import "errors"

// errNotDetached is TakeFd's answer for a connection that was not closed
// with Detach (its socket is netpoll's to close).
var errNotDetached = errors.New("netpoll: TakeFd on a connection not closed with Detach")

// TakeFd gives the socket of a connection closed with Detach to the
// caller, who must close it. Call it from one of the connection's close
// callbacks (never from the poller's goroutine): by then the socket is out
// of the poller's epoll set and netpoll will not close it. TakeFd first
// waits until the poller is done with any event it fetched for the socket
// before the detach, and makes it drop those it has not handled yet, so
// that no read of netpoll's reaches the socket (or, once the caller has
// closed it, the number) afterwards: input read before that is in the
// connection's Reader, so read the Reader after TakeFd, not before.
//
// Why: handing a socket over with a duplicate costs a dup(2) and a close(2)
// of netpoll's number; a WebSocket proxy does it for every tunnel.
func TakeFd(conn Connection) (int, error) {
	c, ok := conn.(*connection)
	if !ok || !c.detaching {
		return -1, errNotDetached
	}
	c.operator.unused()
	return c.fd, nil
}

// nonblocking is implemented by a Conn whose socket is non-blocking from
// its creation (accept4(2) with SOCK_NONBLOCK): connection.init then makes
// no fcntl calls for it.
type nonblocking interface{ Nonblocking() bool }
