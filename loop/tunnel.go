package loop

import (
	"unsafe"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
)

type tunnelStats = tunnel.Stats

// detachable is netpoll's connection: Detach takes it off the poller and
// runs its close callbacks like Close, but leaves the socket open.
type detachable interface {
	netpoll.Conn
	Detach() error
}

// handOver ends netpoll's hold on a connection whose socket the tunnel
// engine takes: Detach where the connection has it (its socket is then
// never closed by netpoll, and a close callback may own its fd), else
// Close, and the callback must take a duplicate (ownFd).
func handOver(c netpoll.Connection) {
	if d, ok := c.(detachable); ok {
		d.Detach()
		return
	}
	c.Close()
}

// ownFd returns the socket of a connection handOver let go of, for the
// caller to own: the fd itself after Detach, else a duplicate
// (close-on-exec, sharing the open file, so still non-blocking), as netpoll
// closes its own descriptor after the close callbacks.
func ownFd(c netpoll.Connection) (int, error) {
	if d, ok := c.(detachable); ok {
		return d.Fd(), nil
	}
	nc, ok := c.(netpoll.Conn)
	if !ok {
		return -1, unix.EBADF
	}
	return rawDup(uintptr(nc.Fd()))
}

func closeFd(fd int) { rawClose(fd) }

// tunnelClosed runs on the tunnel engine when a tunnel ends.
func tunnelClosed(b *balancer.Backend, st tunnel.Stats) {
	b.TunnelEnded()
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
