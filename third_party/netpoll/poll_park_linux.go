// wsgate patch (not in upstream netpoll v0.7.2): the poller parks on Go's
// runtime netpoller instead of blocking in epoll_wait(2).
//
// Upstream's Wait blocks in a system call when it runs out of events. With
// few Ps (GOMAXPROCS=1 or 2) that leaves the P in a system call, the
// runtime's sysmon retakes it after 20 µs and hands it to another thread to
// run the goroutines the handlers were waiting for (a backend's answer on
// Go's own netpoller, a timer), and the poller's thread then parks on a
// futex when its epoll_wait returns: a thread ping-pong on every idle
// moment. Here the epoll fd is registered with Go's netpoller (an epoll fd
// is readable while it has events; nested epoll is supported), polled
// without blocking, and the poller goroutine parks like any network read
// when nothing is ready. It holds no thread while it waits. wsgate's own
// tunnel engine waits the same way (tunnel/wait_linux.go).

package netpoll

import (
	"os"
	"syscall"
	"time"
)

type parker struct {
	f   *os.File // a duplicate of the epoll fd, registered with the runtime
	rc  syscall.RawConn
	p   *defaultPoll
	try func(uintptr) bool // p.tryWait, bound once: parking allocates nothing
	n   int
	err error
}

// newParker returns nil where the runtime cannot poll the epoll fd; Wait
// then blocks in epoll_wait as upstream does.
func newParker(p *defaultPoll) *parker {
	r, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(p.fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return nil
	}
	fd := int(r)
	if syscall.SetNonblock(fd, true) != nil { // os.NewFile polls only non-blocking fds
		syscall.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "netpoll-epoll")
	if f.SetReadDeadline(time.Time{}) != nil { // deadlines work only on polled files
		f.Close()
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	k := &parker{f: f, rc: rc, p: p}
	k.try = k.tryWait
	return k
}

// wait returns the events ready now, or parks until there are some.
func (k *parker) wait() (int, error) {
	if err := k.rc.Read(k.try); err != nil {
		return 0, err
	}
	n, err := k.n, k.err
	k.err = nil
	return n, err
}

func (k *parker) tryWait(uintptr) bool {
	k.n, k.err = EpollWait(k.p.fd, k.p.events, 0)
	return k.n > 0 || (k.err != nil && k.err != syscall.EINTR)
}

func (k *parker) close() { k.f.Close() }
