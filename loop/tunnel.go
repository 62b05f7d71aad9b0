package loop

import (
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
