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

// dupFd duplicates a netpoll connection's socket (close-on-exec; the
// duplicate shares the open file, so it stays non-blocking). netpoll closes
// its own descriptor after its close callbacks, and only then may the number
// be reused: handing the engine a duplicate keeps the two apart. (netpoll's
// Detach would hand over the number itself, saving the dup and a close, but
// a poller event fetched before the detach may still be handled after it,
// by a readv on that number, which by then the engine may have closed and
// the kernel given to another connection. The dup and the close cost no
// measurable CPU: 88.4 against 88.9 µs per handshake, A/B.)
func dupFd(c netpoll.Connection) (int, error) {
	nc, ok := c.(netpoll.Conn)
	if !ok {
		return -1, unix.EBADF
	}
	return rawsys.Dup(int(nc.Fd()))
}

func closeFd(fd int) { rawsys.Close(fd) }

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
