package tunnel

import (
	"errors"
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
// events. Owned by the loop goroutine; f owns the epoll fd.
type poller struct {
	f        *os.File
	rc       syscall.RawConn // nil where the runtime cannot poll f: then wait blocks in epoll_wait
	deadline time.Time       // read deadline set on f; zero: none
	// interrupted: a park ended by its deadline, so f's deadline may be
	// what interrupt set, not deadline; the next park sets it again.
	interrupted bool

	// The rc.Read callback, bound once so that parking allocates nothing,
	// and its arguments and results.
	try    func(uintptr) bool
	epfd   int
	events []unix.EpollEvent
	n      int
	err    error
}

// newPoller takes over epfd (closed by close).
func newPoller(epfd int) *poller {
	unix.SetNonblock(epfd, true) // os.NewFile polls only non-blocking fds
	p := &poller{f: os.NewFile(uintptr(epfd), "tunnel-epoll"), epfd: epfd}
	p.try = p.tryWait
	// Deadlines work only on files the runtime polls: the test for it.
	if p.f.SetReadDeadline(time.Time{}) == nil {
		p.rc, _ = p.f.SyscallConn()
	}
	return p
}

// wait fills events; it blocks (parked, not in a system call) up to wait,
// or without limit when wait < 0. n is 0 when the time ran out.
func (p *poller) wait(epfd int, events []unix.EpollEvent, wait time.Duration) (n int, err error) {
	if p.rc == nil {
		msec := -1
		if wait >= 0 {
			msec = int(wait / time.Millisecond)
		}
		return unix.EpollWait(epfd, events, msec)
	}
	n, err = epollWaitNow(epfd, events)
	if n != 0 || wait == 0 || (err != nil && err != unix.EINTR) {
		return n, err
	}
	p.setDeadline(wait)
	return p.park(events)
}

// setDeadline sets the read deadline a park waits until: wait from now, or
// none when wait < 0. The timer changes only when the deadline moved by
// more than a millisecond (about once a tick), or after an interrupt.
func (p *poller) setDeadline(wait time.Duration) {
	var dl time.Time
	if wait > 0 {
		dl = time.Now().Add(wait)
	}
	if d := dl.Sub(p.deadline); p.interrupted || dl.IsZero() != p.deadline.IsZero() || d > time.Millisecond || d < -time.Millisecond {
		p.f.SetReadDeadline(dl)
		p.deadline = dl
		p.interrupted = false
	}
}

// park waits on Go's netpoller, until the epoll fd is readable (its events
// are then in events) or the read deadline passes (n is 0).
func (p *poller) park(events []unix.EpollEvent) (n int, err error) {
	p.events = events
	rerr := p.rc.Read(p.try)
	n, err = p.n, p.err
	p.events, p.err = nil, nil
	if rerr != nil {
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			// The wheel's tick, or interrupt: either way the deadline
			// set is no longer the one p.deadline says.
			p.interrupted = true
			return 0, nil
		}
		return 0, rerr
	}
	return n, err
}

// interrupt ends a park at once (or the next one, if none is in progress):
// the deadline moves into the past. Safe from any goroutine.
func (p *poller) interrupt() { p.f.SetReadDeadline(longAgo) }

var longAgo = time.Unix(1, 0)

// tryWait is the rc.Read callback: true (done) once events or an error
// came, false to park until the epoll fd is readable.
func (p *poller) tryWait(uintptr) bool {
	p.n, p.err = epollWaitNow(p.epfd, p.events)
	return p.n != 0 || (p.err != nil && p.err != unix.EINTR)
}

func (p *poller) close() { p.f.Close() }
