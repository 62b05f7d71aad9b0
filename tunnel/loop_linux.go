package tunnel

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"github.com/wsgate/wsgate/tunnel/wheel"
)

// Event data: epoll_event's 64-bit data field carries no Go pointer. Its
// low half (EpollEvent.Fd) is slot<<1 | side, its high half (Pad) the
// slot's generation, so an event queued for a tunnel that has since closed
// (and whose slot or fd number was reused) is recognised and dropped.
const (
	wakeData     = -1 // EpollEvent.Fd of the loop's eventfd
	chunkBits    = 8  // the slab grows by chunks of 256 tunnels; slots never move
	chunkSize    = 1 << chunkBits
	maxEvents    = 256
	maxWheelSize = 4096
	tunnelEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
)

type cmdKind uint8

const (
	cmdAdd cmdKind = iota + 1
	cmdRun         // call fn on the loop, then close ack
)

// command is what other goroutines hand to a loop through its queue.
type command struct {
	kind       cmdKind
	fd         [2]int32   // cmdAdd: [SideClient], [SideBackend]
	init       [2]*[]byte // cmdAdd: initial bytes read from side i, owned by the command until added
	initN      [2]int32
	start      int64 // cmdAdd: nanoseconds since Engine.epoch
	done       func(Stats)
	tag        uint64        // cmdAdd
	tls        *tlsConn      // cmdAdd: the client side's TLS state (AddTLS); nil for plain
	registered bool          // cmdAdd: the backend fd is a Pending's, registered on this loop already (AddPending)
	initPlain  int32         // cmdAdd with tls: plaintext bytes sealed into init[SideBackend]
	fr         [2]frames     // cmdAdd: the frame trackers after the initial bytes, by source side
	fn         func(*loop)   // cmdRun
	ack        chan struct{} // cmdRun
}

// loop is one epoll loop and the tunnels on it. Fields below mu are shared
// with other goroutines; everything else is owned by the loop goroutine.
type loop struct {
	e      *Engine // immutable
	epfd   int     // immutable; closed when the loop exits
	poll   *poller // owns epfd; parks the loop on Go's netpoller (wait_linux.go)
	evfd   int     // eventfd that wakes the loop for commands; immutable
	events []unix.EpollEvent

	chunks [][]tunnel // slab; slot i is chunks[i>>chunkBits][i&(chunkSize-1)]
	free   []int32    // free slots
	wheel  *wheel.Wheel
	expire func(int32) // l.expireSlot, bound once so Advance does not allocate

	nowTick       int64         // current tick, refreshed after every epoll_wait
	now           time.Duration // the time since Engine.epoch it was computed from
	scratch       *[]byte       // read buffer not lent to any tunnel; nil when lent
	pipes         []pipe        // empty pipes, at most maxPooledPipes
	pipeRetryTick int64         // no pipe2 before this tick (after EMFILE and the like)
	stopping      bool
	stepFn        func(uintptr) bool // l.step, bound once so that a park allocates nothing
	stopNow       bool               // step's batch says the loop stops

	// TLS tunnels whose AEADs are built (tls_linux.go: restIdleTLS lets
	// those of quiet tunnels go once a tick).
	tlsWarm  []slotRef
	tlsSwept int64 // tick of the last sweep

	// Callers of CloseSome and CloseTagged waiting for closes they
	// started, by slot (close_linux.go); nil when none.
	waiting map[int32][]*closeBatch

	// Batched metrics, flushed to the package counters after each batch.
	bytes       [2]int64 // by source side
	spliceBytes int64

	// maxHeld is the most bytes one direction has held (buffer or pipe)
	// on this loop; tests check it against MaxPending.
	maxHeld int64
	// eofReads counts reads that returned 0; tests check that a FIN
	// taken with the last bytes costs none (relay_linux.go: sideAtFIN).
	eofReads int64
	// wakes counts wake-ups (wake); tests check that a tunnel added
	// from the loop's own goroutine (a Notifier) needs none.
	wakes atomic.Int64

	load atomic.Int64 // tunnels assigned: queued or open (for Engine.pick)

	mu     sync.Mutex
	queue  []command // guarded by mu
	spare  []command // loop-owned; swapped with queue
	woken  bool      // guarded by mu: the loop was woken and has not taken the queue yet
	closed bool      // guarded by mu: no more commands accepted
	parked bool      // guarded by mu: the loop is (about to be) parked on Go's netpoller

	pending atomic.Bool // the queue may hold commands; checked after every batch

	pend pendTable // handshakes' backend sockets (pending_linux.go)
}

func newLoop(e *Engine) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("tunnel: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("tunnel: eventfd: %w", err)
	}
	// Level-triggered: the loop reads it empty before taking the queue.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeData}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("tunnel: epoll_ctl eventfd: %w", err)
	}
	l := &loop{e: e, epfd: epfd, evfd: evfd, events: make([]unix.EpollEvent, maxEvents), poll: newPoller(epfd)}
	l.updateNow()
	l.wheel = wheel.New(wheel.SlotsFor(max(e.timeoutTicks, e.finTicks), maxWheelSize), l.nowTick)
	l.expire = l.expireSlot
	l.stepFn = l.step
	return l, nil
}

func (l *loop) closeFds() {
	l.poll.close() // owns epfd
	unix.Close(l.evfd)
}

func (l *loop) slot(i int32) *tunnel {
	return &l.chunks[i>>chunkBits][i&(chunkSize-1)]
}

func (l *loop) alloc() int32 {
	if n := len(l.free); n > 0 {
		i := l.free[n-1]
		l.free = l.free[:n-1]
		return i
	}
	base := int32(len(l.chunks) * chunkSize)
	c := make([]tunnel, chunkSize)
	for i := range c {
		c[i].fd = [2]int32{-1, -1}
	}
	l.chunks = append(l.chunks, c)
	for i := int32(chunkSize - 1); i > 0; i-- {
		l.free = append(l.free, base+i)
	}
	return base
}

var wakeBytes = [8]byte{1} // eventfd counter increment 1 (little endian)

// enqueue hands c to the loop; false once the loop is closed.
func (l *loop) enqueue(c command) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, c)
	l.pending.Store(true)
	wake := l.needsWake()
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return true
}

// needsWake reports whether the loop must be woken for a command just
// queued, and notes that it will be. A loop that is not parked takes the
// queue after its current batch anyway. Called with mu held.
func (l *loop) needsWake() bool {
	if l.woken || (!l.parked && l.poll.rc != nil) {
		return false
	}
	l.woken = true
	return true
}

// wake interrupts the loop's wait. A loop parked on Go's netpoller is woken
// by moving its read deadline into the past: no system call, and no eventfd
// event to read back. A loop blocked in epoll_wait gets the eventfd.
func (l *loop) wake() {
	l.wakes.Add(1)
	if l.poll.rc != nil {
		l.poll.interrupt()
		return
	}
	unix.Write(l.evfd, wakeBytes[:])
}

// stop marks the loop closed and wakes it; it exits after closing every
// tunnel with Shutdown.
func (l *loop) stop() {
	l.mu.Lock()
	l.closed = true
	l.pending.Store(true)
	wake := l.needsWake()
	l.mu.Unlock()
	if wake {
		l.wake()
	}
}

func (l *loop) updateNow() {
	l.now = l.e.sinceEpoch()
	l.nowTick = int64(l.now / l.e.cfg.Tick)
}

// waitFor is how long to wait for events: until the next tick while the
// wheel holds anything, else forever (-1). It counts from the clock read
// at the last batch: at most that batch's time late.
func (l *loop) waitFor() time.Duration {
	if l.wheel.Len() == 0 && len(l.tlsWarm) == 0 {
		return -1
	}
	next := time.Duration(l.nowTick+1) * l.e.cfg.Tick
	wait := next - l.now
	if wait <= 0 {
		return 0
	}
	return (wait + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}

// deadline is the time wait after the clock read at the last batch (zero
// for wait < 0: none). With the real clock it costs no clock read.
func (l *loop) deadline(wait time.Duration) time.Time {
	switch {
	case wait < 0:
		return time.Time{}
	case l.e.realClock:
		return l.e.epoch.Add(l.now + wait)
	}
	return time.Now().Add(wait) // a test's clock: the park still waits in real time
}

// run is the loop goroutine. It waits for events parked on Go's netpoller
// (wait_linux.go; no LockOSThread: measured, no gain; cycle) and handles,
// per wakeup: tunnel events, then commands, then metrics, then the wheel
// (batch).
func (l *loop) run() {
	defer l.e.wg.Done()
	for {
		var stop bool
		if l.poll.rc == nil {
			n, err := l.poll.wait(l.epfd, l.events, l.waitFor())
			if err != nil {
				l.waitFailed(err)
				continue
			}
			stop = l.batch(n)
		} else {
			stop = l.cycle()
		}
		if stop {
			l.shutdown()
			return
		}
	}
}

// waitFailed handles epoll_wait's error: EINTR is retried; EBADF, EFAULT or
// EINVAL are a bug, not a condition to retry.
func (l *loop) waitFailed(err error) {
	if err != unix.EINTR {
		panic("tunnel: epoll_wait: " + err.Error())
	}
}

// cycle parks the loop on Go's netpoller until its epoll fd has events, the
// wheel's next tick, or a command (interrupt), and handles what comes; it
// reports whether the loop must stop.
//
// The park is one RawRead whose callback (step) handles the events itself
// and asks to park again after each batch. Only RawRead's start resets the
// runtime's readiness of the epoll fd, so polling before it parks (the
// callback's first call) is needed once a park, not once a batch: an event
// that comes while a batch runs is an edge the runtime keeps, and ends the
// next wait at once. A poll that returned fewer than maxEvents left nothing
// ready behind: every registration on the loop is edge-triggered (the
// eventfd, level-triggered, is used only where the runtime cannot poll).
// That is one epoll_wait per wakeup instead of two.
func (l *loop) cycle() (stop bool) {
	p := l.poll
	wait := l.waitFor()
	if wait == 0 {
		n, err := epollWaitNow(l.epfd, l.events)
		if err != nil {
			l.waitFailed(err)
			return false
		}
		return l.batch(n)
	}
	// The deadline is set before the queue is checked: a command queued
	// from here on finds the loop parked and moves the deadline after it.
	p.setDeadline(l.deadline(wait))
	l.mu.Lock()
	if len(l.queue) > 0 || l.closed {
		l.mu.Unlock()
		return l.batch(0)
	}
	l.parked = true
	l.mu.Unlock()
	l.stopNow = false
	err := p.rc.Read(l.stepFn)
	l.mu.Lock()
	l.parked = false
	l.mu.Unlock()
	if err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			panic("tunnel: park: " + err.Error())
		}
		// The wheel's tick, or interrupt: either way the deadline set is
		// no longer the one p.deadline says.
		p.interrupted = true
		return l.batch(0)
	}
	return l.stopNow
}

// step is cycle's RawRead callback: it polls the epoll fd and handles the
// events, batch after batch; false parks (l.parked set), true ends the park
// (the loop stops, commands are queued, or the deadline must change).
func (l *loop) step(uintptr) bool {
	for {
		n, err := epollWaitNow(l.epfd, l.events)
		if err != nil {
			l.waitFailed(err)
			continue
		}
		if n == 0 {
			return false
		}
		l.mu.Lock()
		l.parked = false
		l.mu.Unlock()
		if l.batch(n) {
			l.stopNow = true
			return true
		}
		// Leaving the park early: an interrupt may have moved the
		// deadline meanwhile, so the next park sets it again.
		if l.poll.deadline.IsZero() && l.waitFor() >= 0 {
			l.poll.interrupted = true
			return true // the wheel has a tick to wait for now
		}
		l.mu.Lock()
		if len(l.queue) > 0 || l.closed {
			l.mu.Unlock()
			l.poll.interrupted = true
			return true
		}
		l.parked = true
		l.mu.Unlock()
		if n < len(l.events) {
			return false
		}
	}
}

// batch handles n events in l.events, then commands, metrics and the
// wheel; it reports whether the loop must stop.
func (l *loop) batch(n int) (stop bool) {
	l.updateNow()
	commands := l.pending.Load()
	for i := 0; i < n; i++ {
		ev := &l.events[i]
		if ev.Fd <= wakeData {
			if ev.Fd == wakeData {
				commands = true
			} else {
				l.pendingEvent(ev) // pending_linux.go
			}
			continue
		}
		u := uint32(ev.Fd)
		idx := int32(u >> 1)
		t := l.slot(idx)
		if t.gen != uint32(ev.Pad) || !t.open {
			continue // stale: the tunnel closed earlier in this batch
		}
		l.handle(t, idx, int(u&1), ev.Events)
	}
	// A Notifier may have queued a command in this batch (AddPending from
	// PendingReady): it is taken now, not after a wake.
	if (commands || l.pending.Load()) && l.runCommands() {
		return true
	}
	l.flushMetrics()
	if l.nowTick > l.wheel.Cur() {
		l.wheel.Advance(l.nowTick, l.expire)
	}
	if l.nowTick > l.tlsSwept && len(l.tlsWarm) > 0 {
		l.restIdleTLS()
	}
	return false
}

func (l *loop) flushMetrics() {
	for s := range l.bytes {
		if l.bytes[s] != 0 {
			l.e.m.bytes[s].Add(int(l.bytes[s]))
			l.bytes[s] = 0
		}
	}
	if l.spliceBytes != 0 {
		l.e.m.spliceBytes.Add(int(l.spliceBytes))
		l.spliceBytes = 0
	}
}

// runCommands takes the queue and runs it; it reports whether the loop
// must stop.
func (l *loop) runCommands() (stop bool) {
	if l.poll.rc == nil {
		var buf [8]byte
		unix.Read(l.evfd, buf[:]) // reset the counter before taking the queue
	}
	l.mu.Lock()
	q := l.queue
	l.queue = l.spare[:0]
	l.woken = false
	l.pending.Store(false)
	stop = l.closed
	l.mu.Unlock()
	for i := range q {
		c := &q[i]
		switch c.kind {
		case cmdAdd:
			l.add(c)
		case cmdRun:
			c.fn(l)
			close(c.ack)
		}
		q[i] = command{} // drop references
	}
	if cap(q) > 1024 {
		q = nil // after a burst, let the big queue go
	}
	l.spare = q[:0]
	return stop
}

// add opens a tunnel for c on this loop.
func (l *loop) add(c *command) {
	idx := l.alloc()
	t := l.slot(idx)
	t.fd = c.fd
	t.open = true
	t.first = -1
	t.sflags = [2]uint8{sideWritable, sideWritable}
	t.start = c.start
	t.done = c.done
	t.tag = c.tag
	t.tls = c.tls
	if c.tls != nil {
		l.warmTLS(t, idx)
		t.dir[SideBackend].written = int64(c.initPlain) // counted as sealed (Stats count plaintext)
	}
	t.lastActive = l.nowTick
	for s := range t.dir {
		d := &t.dir[s]
		d.frames = c.fr[s]
		if c.init[s] != nil {
			d.buf, d.off, d.end = c.init[s], 0, c.initN[s]
		}
	}
	l.e.m.opened.Inc()
	if l.e.timeoutTicks >= 0 {
		l.wheel.Schedule(idx, l.nowTick+l.e.timeoutTicks+1)
	}
	for s := range t.fd {
		// Registered once, edge-triggered; the kernel reports the current
		// readiness at once, which starts the relay.
		// A Pending's socket is registered here already: its
		// registration becomes the tunnel's, and the kernel reports
		// its readiness again, as for an add.
		op := unix.EPOLL_CTL_ADD
		if s == int(SideBackend) && c.registered {
			op = unix.EPOLL_CTL_MOD
		}
		ev := unix.EpollEvent{Events: tunnelEvents, Fd: int32(idx<<1) | int32(s), Pad: int32(t.gen)}
		if err := rawsys.EpollCtl(l.epfd, op, int(t.fd[s]), &ev); err != nil {
			l.fail(t, idx, s, "register", err)
			return
		}
	}
	// Initial bytes: write them now (reading waits for the events).
	for s := range t.dir {
		if (t.dir[s].buf != nil || t.tls != nil && t.tls.flags&tlsOweKeyUpdate != 0) && !l.pump(t, idx, s) {
			return
		}
	}
	if t.tls != nil && t.tls.flags&tlsPeerClosed != 0 && t.dir[SideClient].flags&dirEOF == 0 {
		// close_notify came with the handover's pending records.
		l.eof(t, idx, int(SideClient))
		l.pump(t, idx, int(SideClient))
	}
}

// expireSlot is the wheel's fire callback: close the tunnel if it has been
// idle for the whole timeout (FinTimeout once one side has finished, when
// shorter), else wait again from its last activity.
func (l *loop) expireSlot(idx int32) {
	t := l.slot(idx)
	if !t.open {
		return
	}
	if t.closing != 0 {
		l.closingTimeout(t, idx)
		return
	}
	timeout, reason := l.e.timeoutTicks, IdleTimeout
	if fin := l.e.finTicks; t.first >= 0 && fin >= 0 && (timeout < 0 || fin < timeout) {
		// The side that finished first ended the tunnel; the other one
		// just never followed.
		timeout, reason = fin, closedBy(t.first)
	}
	if timeout < 0 {
		return
	}
	deadline := t.lastActive + timeout + 1
	if deadline <= l.nowTick {
		if reason == IdleTimeout {
			l.startClose(t, idx, reason) // close frames (1001), then FIN
		} else {
			l.close(t, idx, reason, nil)
		}
		return
	}
	l.wheel.Schedule(idx, deadline)
}

// closeAll closes every open tunnel on the loop at once with reason r
// (closeNow: close frames only where they can go out at once). It returns
// how many of them were not closing already.
func (l *loop) closeAll(r Reason) int {
	n := 0
	for ci := range l.chunks {
		for j := range l.chunks[ci] {
			t := &l.chunks[ci][j]
			if t.open {
				if t.closing == 0 {
					n++
				}
				l.closeNow(t, int32(ci<<chunkBits|j), r)
			}
		}
	}
	return n
}

// shutdown runs when the loop stops: every tunnel closes with Shutdown,
// and the loop's pipes, buffer and fds are released.
func (l *loop) shutdown() {
	l.stopping = true
	l.closeAll(Shutdown)
	for _, p := range l.pipes {
		closePipe(p)
	}
	l.pipes = nil
	if l.scratch != nil {
		l.e.bufs.put(l.scratch)
		l.scratch = nil
	}
	l.flushMetrics()
	l.closePending()
	l.closeFds()
}
