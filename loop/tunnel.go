package loop

import (
	"unsafe"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

type tunnelStats = tunnel.Stats

// detachTunnel ends a plain connection's life in netpoll without closing
// its socket (netpoll's Detach): startTunnel's close callback then takes
// the socket itself (netpoll.TakeFd, patch 8), which saves the dup(2) and
// the close(2) of netpoll's number that dupFd costs, two of the system
// calls of every WebSocket handshake. TakeFd first waits until netpoll's
// poller is done with any event it fetched for the socket before the
// detach, and makes it drop the others, so no read of netpoll's reaches
// the socket once the engine has it (nor the number, once the engine has
// closed it and the kernel given it to another connection). A TLS front's
// connection is not netpoll's and keeps the close (false).
func detachTunnel(cc *clientConn) bool {
	if cc.frontID != 0 {
		return false
	}
	d, ok := cc.conn.(interface{ Detach() error })
	if !ok {
		return false
	}
	d.Detach()
	return true
}

// dupFd duplicates a netpoll connection's socket (close-on-exec; the
// duplicate shares the open file, so it stays non-blocking), for a
// connection netpoll closes itself (not detachTunnel's): netpoll closes its
// own descriptor after its close callbacks, and only then may the number be
// reused.
func dupFd(c netpoll.Connection) (int, error) {
	nc, ok := c.(netpoll.Conn)
	if !ok {
		return -1, unix.EBADF
	}
	return rawsys.Dup(int(nc.Fd()))
}

func closeFd(fd int) { rawsys.Close(fd) }

// A tunnel holds its backend: it counts as one of the backend's live
// tunnels (and as a connection for least-connections) from the moment the
// engine takes the pair until the engine reports it closed. addTunnel takes
// the count; the done callback that tunnelDone builds releases it.

// addTunnel hands a verified pair to the engine, counting it as a live
// tunnel of b (balancer's TunnelStarted, converting the request's Pick)
// for as long as the engine holds it. done comes from tunnelDone. On an
// error the engine holds nothing and never calls done: the count is
// released here.
func (s *Server) addTunnel(b *balancer.Backend, clientFd, backendFd int, toBackend, toClient []byte, done func(tunnel.Stats)) error {
	b.TunnelStarted()
	if err := s.cfg.Tunnels.AddTagged(backendTag(b), clientFd, backendFd, toBackend, toClient, done); err != nil {
		b.TunnelEnded()
		return err
	}
	return nil
}

// addTLSTunnel is addTunnel for a TLS 1.3 client whose records the engine
// opens and seals (tls.go, takeOverTLS).
func (s *Server) addTLSTunnel(b *balancer.Backend, clientFd, backendFd int, toBackend, toClient []byte, t *tunnel.TLS, done func(tunnel.Stats)) error {
	b.TunnelStarted()
	if err := s.cfg.Tunnels.AddTLS(backendTag(b), clientFd, backendFd, toBackend, toClient, t, done); err != nil {
		b.TunnelEnded()
		return err
	}
	return nil
}

// tunnelDone builds the engine's done callback for a tunnel to b, while ex
// still holds the handshake: when the tunnel ends it releases the count
// addTunnel took (TunnelEnded), then hands the stats to the record
// (record.go: duration metric, access-log line).
//
// head is the length of the 101 response head, which the engine sends as the
// first bytes it owes the client; it is not counted as tunnel traffic.
func (s *Server) tunnelDone(cc *clientConn, ex *exchange, b *balancer.Backend, head int) func(tunnel.Stats) {
	rec := s.tunnelRecord(cc, ex) // record.go; copied: ex is reused once the handler returns
	return func(st tunnel.Stats) {
		if st.Reason == tunnel.Rebalance {
			s.leaving.of(b).Add(-1) // rebalance.go
		}
		b.TunnelEnded()
		st.BackendToClient = max(st.BackendToClient-int64(head), 0)
		s.tunnelClosed(b, rec, st)
	}
}

// backendTag names a backend's tunnels in the engine. A Backend never moves
// in memory, and every tunnel with this tag holds the Backend (its done
// callback releases it), so the address cannot be reused by another Backend
// while such a tunnel exists.
func backendTag(b *balancer.Backend) uint64 { return uint64(uintptr(unsafe.Pointer(b))) }

// CloseBackendTunnels closes the tunnels of b (a removed backend whose
// drain timeout passed) and returns how many it closed.
func (s *Server) CloseBackendTunnels(b *balancer.Backend) int {
	return s.cfg.Tunnels.CloseTagged(backendTag(b))
}
