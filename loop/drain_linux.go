package loop

import (
	"context"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Handing over listeners on a restart. With SO_REUSEPORT (listen.go) the
// kernel spreads new connections over every socket bound to the address,
// and closing one resets the connections in its accept queue that no
// process accepted yet (unless net.ipv4.tcp_migrate_req=1, Linux 5.14+,
// moves them to a sibling). So a draining server does not close its
// listeners at once:
//
//  1. It attaches a classic BPF program to the address's SO_REUSEPORT
//     group (SO_ATTACH_REUSEPORT_CBPF) that sends every new connection to
//     the group's socket at index 1: on a restart that is the new
//     process, which bound after the old one (index 0). When the group
//     has a single socket (a plain stop), index 1 does not exist and the
//     kernel falls back to its hash, i.e. this socket: nothing changes.
//     The program stays with the group after this process leaves; with
//     one socket it is inert, and on the next restart it steers to the
//     newest socket again, which is what that restart wants.
//  2. It keeps accepting (and answering with Connection: close) until its
//     accept queue is empty (TCP_INFO on a listening socket reports the
//     queue length in tcpi_unacked) and at least handoverMin has passed,
//     so that handshakes in flight to it (SYN received, ACK not yet)
//     complete and are accepted; at most handoverMax.
//  3. Then it closes the listeners.
//
// Restart = start the new process, then signal the old one. Signalling
// the new one instead steers connections to the process being drained;
// they are still accepted and answered during the hand-over.
const (
	handoverMin = 300 * time.Millisecond
	handoverMax = 2 * time.Second
)

// steerToIndex1 is "ret #1": pick the reuseport group's socket at index 1.
var steerToIndex1 = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}

// handOver runs before the listeners close: see above. It returns early
// when ctx is done.
func (s *Server) handOver(ctx context.Context) {
	if len(s.lns) == 0 {
		return
	}
	for _, ln := range s.lns {
		if err := steerAway(ln); err != nil {
			s.cfg.Logf("drain: listener %s: steering new connections away: %v", ln.Addr(), err)
		}
	}
	start := time.Now()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		elapsed := time.Since(start)
		if elapsed >= handoverMax || (elapsed >= handoverMin && s.acceptQueued() == 0) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// steerAway attaches steerToIndex1 to ln's SO_REUSEPORT group.
func steerAway(ln net.Listener) error {
	return controlListener(ln, func(fd int) error {
		prog := unix.SockFprog{Len: uint16(len(steerToIndex1)), Filter: &steerToIndex1[0]}
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &prog)
	})
}

// acceptQueued is the number of connections waiting in the listeners'
// accept queues.
func (s *Server) acceptQueued() int {
	n := 0
	for _, ln := range s.lns {
		controlListener(ln, func(fd int) error {
			info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			if err == nil {
				n += int(info.Unacked) // for a listener: the accept queue length
			}
			return err
		})
	}
	return n
}

func controlListener(ln net.Listener, fn func(fd int) error) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return unix.ENOTSOCK
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
