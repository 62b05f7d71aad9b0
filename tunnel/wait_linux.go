package tunnel

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Waiting for events without a blocked system call.
//
// A loop that blocks in epoll_wait(2) leaves its P in a system call. With
// few Ps (GOMAXPROCS=1 or 2 on a small box) the runtime's sysmon then
// retakes that P every 20 µs and wakes again whenever the call returns:
// measured on 2 cores, sysmon's nanosleep/futex ping-pong and the thread
// switches it causes were about a quarter of wsgate's CPU under echo load.
// So the loop's epoll fd is itself registered with Go's netpoller (an epoll
// fd is readable while it has events; nested epoll is supported): the loop
// polls it without blocking (epoll_pwait with a zero timeout, a raw system
// call) and, when nothing is ready, parks its goroutine on the runtime
// poller like any network read, with a read deadline for the wheel's next
// tick. A parked loop holds no thread, and an idle process sleeps in the
// runtime's own epoll_wait as a plain Go server does.

// epollWaitNow returns the events ready now, never blocking.
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// poller parks a loop goroutine on Go's netpoller until its epoll fd has
// events (loop.cycle: a RawRead on f). Owned by the loop goroutine; f owns
// the epoll fd.
type poller struct {
	f        *os.File
	rc       syscall.RawConn // nil where the runtime cannot poll f: then wait blocks in epoll_wait
	deadline time.Time       // read deadline set on f; zero: none
	// interrupted: a park ended by its deadline, so f's deadline may be
	// what interrupt set, not deadline; the next park sets it again.
	interrupted bool
}

// newPoller takes over epfd (closed by close).
func newPoller(epfd int) *poller {
	unix.SetNonblock(epfd, true) // os.NewFile polls only non-blocking fds
	p := &poller{f: os.NewFile(uintptr(epfd), "tunnel-epoll")}
	// Deadlines work only on files the runtime polls: the test for it.
	if p.f.SetReadDeadline(time.Time{}) == nil {
		p.rc, _ = p.f.SyscallConn()
	}
	return p
}

// wait fills events where the runtime cannot poll the epoll fd (rc nil),
// blocked in epoll_wait up to wait (< 0: no limit). n is 0 when the time
// ran out.
func (p *poller) wait(epfd int, events []unix.EpollEvent, wait time.Duration) (n int, err error) {
	msec := -1
	if wait >= 0 {
		msec = int(wait / time.Millisecond)
	}
	return unix.EpollWait(epfd, events, msec)
}

// setDeadline sets the read deadline a park waits until (zero: none). The
// timer changes only when the deadline moved by more than a millisecond
// (about once a tick), or after an interrupt.
func (p *poller) setDeadline(dl time.Time) {
	if d := dl.Sub(p.deadline); p.interrupted || dl.IsZero() != p.deadline.IsZero() || d > time.Millisecond || d < -time.Millisecond {
		p.f.SetReadDeadline(dl)
		p.deadline = dl
		p.interrupted = false
	}
}

// interrupt ends a park at once (or the next one, if none is in progress):
// the deadline moves into the past. Safe from any goroutine.
func (p *poller) interrupt() { p.f.SetReadDeadline(longAgo) }

var longAgo = time.Unix(1, 0)

func (p *poller) close() { p.f.Close() }
