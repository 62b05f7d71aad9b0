package loop

import (
	"unsafe"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
)

type tunnelStats = tunnel.Stats

// dupFd duplicates a netpoll connection's socket (close-on-exec; the
// duplicate shares the open file, so it stays non-blocking). netpoll closes
// its own descriptor after its close callbacks, and only then may the number
// be reused: handing the engine a duplicate keeps the two apart.
func dupFd(c netpoll.Connection) (int, error) {
	nc, ok := c.(netpoll.Conn)
	if !ok {
		return -1, unix.EBADF
	}
	return unix.FcntlInt(uintptr(nc.Fd()), unix.F_DUPFD_CLOEXEC, 0)
}

func closeFd(fd int) { unix.Close(fd) }

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
