package loop

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Zero-downtime restart: every listener is opened with SO_REUSEPORT, so a
// new wsgate started on the same addresses binds next to the running one
// and both accept until the old one, signalled, hands over (drain_linux.go)
// and closes its listeners. Chosen over passing listening sockets to a
// child process (nginx's binary upgrade, systemd socket activation)
// because it needs no parent/child protocol and no supervisor: any process
// manager that can start the new one before stopping the old one (systemd
// ExecReload, a Kubernetes rolling update on one node, a shell script)
// restarts without refusing a connection. The cost: any process of the
// same user can bind the same port and receive part of the traffic, so
// run wsgate under its own user (deploy/wsgate.service does).

// listenConfig is how every wsgate listener is opened: plain TCP with
// SO_REUSEADDR (Go's default) and SO_REUSEPORT. Multipath TCP, which Go
// uses for listeners by default where the kernel has it, is turned off:
// an MPTCP listener refuses SO_ATTACH_REUSEPORT_CBPF (EOPNOTSUPP, so no
// hand-over) and its accepted sockets are not the plain TCP sockets the
// tunnel engine splices.
var listenConfig = func() net.ListenConfig {
	lc := net.ListenConfig{Control: reusePort}
	lc.SetMultipathTCP(false)
	return lc
}()

func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// Listen opens a TCP listener on addr the way the proxy's own listeners
// are opened (SO_REUSEPORT); cmd/wsgate uses it for --admin too, so that
// a new instance can start while the old one still serves its admin.
func Listen(addr string) (net.Listener, error) {
	return listenConfig.Listen(context.Background(), "tcp", addr)
}

// deferAcceptSecs is TCP_DEFER_ACCEPT on the proxy's listeners (nginx's
// `listen ... deferred`, with nginx's value): the kernel completes accept(2)
// only once the client's first bytes (a request head, a ClientHello) are
// there, so an accepted connection is readable at once and the reactor is
// not woken twice (accept, then the first read) per connection. A client
// that connects and says nothing is accepted all the same after about
// this long plus the SYN-ACK retransmissions, and then meets
// --header-timeout as before.
const deferAcceptSecs = 1

// listenProxy opens a client-facing listener: Listen plus TCP_DEFER_ACCEPT.
// A kernel that refuses the option (not Linux TCP) serves without it.
func listenProxy(addr string) (net.Listener, error) {
	ln, err := Listen(addr)
	if err != nil {
		return nil, err
	}
	if tl, ok := ln.(*net.TCPListener); ok {
		if rc, err := tl.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSecs)
			})
		}
	}
	return ln, nil
}
