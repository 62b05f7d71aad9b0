package tunnel

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// Pending backend sockets: a handshake's backend socket on the engine's
// loop from its dial on.
//
// Without them, the caller's backend socket lives in Go's runtime poller
// while it waits for the 101 (an *os.File: F_GETFL, EPOLL_CTL_ADD), and
// the hand-over to a tunnel costs a dup, the runtime's EPOLL_CTL_DEL, a
// close through entersyscall (which wakes the runtime's sysmon thread when
// the process was idle) and the engine's own EPOLL_CTL_ADD. A Pending is
// registered once, on the loop its tunnel will live on: its events wake
// whoever waits in Wait, and AddPending turns the registration into the
// tunnel's own with one EPOLL_CTL_MOD. The socket never has a second fd.
//
// The registration's event data carries no slot: EpollEvent.Fd is
// pendBase minus the Pending's key in its loop's table, and Pad its id, so
// an event still queued for a Pending that has gone (and whose key was
// reused) is dropped.

const pendBase = wakeData - 1 // EpollEvent.Fd of key k: pendBase - k

// Pending is a backend socket registered on one of the engine's loops
// while the handshake on it goes on (Engine.Attach). Its owner reads and
// writes the fd itself, non-blocking, and calls Wait when a call returns
// EAGAIN. It ends as a tunnel's backend side (Engine.AddPending) or with
// Close. One goroutine at a time may use it.
type Pending struct {
	l     *loop
	fd    int
	key   int32
	id    uint32
	ready chan struct{} // capacity 1: an event since the last Wait
	timer *time.Timer   // Wait's, made on the first wait with a deadline
	dead  atomic.Bool   // the loop stopped: Wait returns ErrClosed
	gone  bool          // closed or adopted
	n     Notifier      // called on the loop for every event (Notify); guarded by the table's mutex
}

// A Notifier is told of a Pending's events on the loop's own goroutine
// (Pending.Notify), instead of a goroutine waiting in Wait: the owner
// can then go on without a goroutine of its own, and finish a handshake
// on the loop that will relay its tunnel (AddPending from PendingReady
// queues the tunnel on the same loop, which adds it before it parks
// again, without a wake-up where the loop parks on Go's netpoller; the
// epoll_wait fallback still writes its eventfd). PendingReady runs beside
// every tunnel of the loop: it must not block. It is also called once
// when the engine stops (Dead then reports it).
type Notifier interface {
	PendingReady()
}

// pendTable is a loop's Pending sockets. Its mutex also orders every
// epoll_ctl other goroutines make on the loop's epoll fd against the loop
// closing that fd (closed), so that none reaches a number reused since.
type pendTable struct {
	mu     sync.Mutex
	items  []*Pending // by key; nil when free
	free   []int32
	closed bool
}

var pendIDs atomic.Uint32

// pendPool keeps Pendings with their channel and timer: three allocations
// a handshake fewer. A Pending goes back only once it is out of its loop's
// table (Close, AddPending), and the loop looks an event's Pending up and
// signals it under the table's mutex, comparing ids: a recycled Pending
// gets no signal meant for its previous life.
var pendPool = sync.Pool{New: func() any { return &Pending{ready: make(chan struct{}, 1)} }}

// Fd returns the socket's fd. It stays the Pending's: never close it.
func (p *Pending) Fd() int { return p.fd }

// Attach registers fd, a non-blocking TCP socket connected or connecting
// to a backend, on the least-loaded loop, edge-triggered for input (and
// for output while connecting: connecting says so). On success the
// Pending owns fd; on error the caller still does.
func (e *Engine) Attach(fd int, connecting bool) (*Pending, error) {
	if fd < 0 {
		return nil, ErrBadFd
	}
	l := e.pick()
	p := pendPool.Get().(*Pending)
	p.l, p.fd, p.gone = l, fd, false
	p.dead.Store(false)
	select {
	case <-p.ready: // a signal its previous owner never took
	default:
	}
	t := &l.pend
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		p.l = nil
		pendPool.Put(p)
		return nil, ErrClosed
	}
	p.id = pendIDs.Add(1)
	if n := len(t.free); n > 0 {
		p.key = t.free[n-1]
		t.free = t.free[:n-1]
		t.items[p.key] = p
	} else {
		p.key = int32(len(t.items))
		t.items = append(t.items, p)
	}
	events := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET)
	if connecting {
		events |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: events, Fd: pendBase - p.key, Pad: int32(p.id)}
	err := rawsys.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	if err != nil {
		t.removeLocked(p)
	}
	t.mu.Unlock()
	if err != nil {
		p.l = nil
		pendPool.Put(p)
		return nil, err
	}
	return p, nil
}

func (t *pendTable) removeLocked(p *Pending) {
	p.n = nil
	t.items[p.key] = nil
	t.free = append(t.free, p.key)
	p.id = 0
}

// release returns p to the pool; it is out of its loop's table.
func (p *Pending) release() {
	if p.timer != nil {
		p.timer.Stop()
	}
	p.l = nil
	pendPool.Put(p)
}

// Wait blocks until the socket had an event (input, output while
// connecting, hang-up, error) since the last Wait, deadline passes
// (os.ErrDeadlineExceeded; a zero deadline: no limit) or the engine stops
// (ErrClosed). An event may be one the caller has already consumed: Wait
// means "try again", never "ready".
func (p *Pending) Wait(deadline time.Time) error {
	if p.dead.Load() {
		return ErrClosed
	}
	select {
	case <-p.ready:
		return p.err()
	default:
	}
	if deadline.IsZero() {
		<-p.ready
		return p.err()
	}
	d := time.Until(deadline)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.ready:
		p.timer.Stop()
		return p.err()
	case <-p.timer.C:
		return os.ErrDeadlineExceeded
	}
}

func (p *Pending) err() error {
	if p.dead.Load() {
		return ErrClosed
	}
	return nil
}

// WantOutput adds output to the events that end a Wait (EPOLL_CTL_MOD),
// for a write that found the socket's buffer full: Attach registers a
// connected socket for input only, so that the common case, a request that
// fits, gets no event for output it does not wait for.
func (p *Pending) WantOutput() error {
	t := &p.l.pend
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: pendBase - p.key, Pad: int32(p.id)}
	return rawsys.EpollCtl(p.l.epfd, unix.EPOLL_CTL_MOD, p.fd, &ev)
}

// Notify has n told of p's events from now on (nil: no more), as well as
// the waiter in Wait. It reports whether an event came since the last
// Wait, which n will not be told of: the caller then goes on itself (the
// socket may have input), and the event stays for its next Wait (a Wait
// that came first and found nothing would otherwise wait for an edge
// that has passed: seen as handshakes stuck until their timeout). A late
// PendingReady may come after Notify(nil) (the loop calls it outside
// its lock): it must find nothing to do then.
func (p *Pending) Notify(n Notifier) (eventSeen bool) {
	t := &p.l.pend
	t.mu.Lock()
	p.n = n
	eventSeen = len(p.ready) > 0
	t.mu.Unlock()
	return eventSeen
}

// signal wakes p's waiter (loop goroutine, or shutdown).
func (p *Pending) signal() {
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// Close takes the socket off its loop and closes it (closing the only fd
// of the socket ends its registration). p must not be used again.
func (p *Pending) Close() {
	if p.gone {
		return
	}
	p.gone = true
	t := &p.l.pend
	t.mu.Lock()
	t.removeLocked(p)
	t.mu.Unlock()
	rawsys.Close(p.fd)
	p.release()
}

// AddPending is AddTagged with p's socket as the backend side: the tunnel
// goes on p's loop, and p's registration becomes the tunnel's own (one
// EPOLL_CTL_MOD). clientFd must be a connected, non-blocking socket (it
// is not checked: the caller made it so). The engine owns both from here
// on, even on error; p must not be used again.
func (e *Engine) AddPending(tag uint64, clientFd int, p *Pending, toBackend, toClient []byte, done func(Stats)) error {
	if p.gone {
		closeFd(clientFd)
		return ErrBadFd
	}
	p.gone = true
	l, fd := p.l, p.fd
	l.pend.mu.Lock()
	l.pend.removeLocked(p)
	l.pend.mu.Unlock()
	p.release()
	if clientFd < 0 || clientFd == fd {
		closeFd(clientFd)
		closeFd(fd)
		return ErrBadFd
	}
	c := command{kind: cmdAdd, fd: [2]int32{int32(clientFd), int32(fd)}, done: done, tag: tag, registered: true}
	c.trackInit(toBackend, toClient)
	if len(toBackend) > 0 {
		c.init[SideClient], c.initN[SideClient] = e.bufs.copyIn(toBackend), int32(len(toBackend))
	}
	if len(toClient) > 0 {
		c.init[SideBackend], c.initN[SideBackend] = e.bufs.copyIn(toClient), int32(len(toClient))
	}
	return e.enqueueAddOn(l, c)
}

// pendingEvent hands an event with Pending data to its Pending's waiter;
// one for a Pending that has gone is dropped. Loop goroutine.
func (l *loop) pendingEvent(ev *unix.EpollEvent) {
	key := int(pendBase - ev.Fd)
	t := &l.pend
	var n Notifier
	t.mu.Lock()
	if key < len(t.items) {
		if p := t.items[key]; p != nil && p.id == uint32(ev.Pad) {
			p.signal()
			n = p.n
		}
	}
	t.mu.Unlock()
	if n != nil {
		n.PendingReady() // outside the mutex: it may AddPending or Close
	}
}

// closePending runs when the loop stops, before its epoll fd closes: no
// epoll_ctl from other goroutines after this, and every waiter, and every
// Notifier, learns that the engine is gone (its owner still closes the
// socket).
func (l *loop) closePending() {
	t := &l.pend
	var ns []Notifier
	t.mu.Lock()
	t.closed = true
	for _, p := range t.items {
		if p != nil {
			p.dead.Store(true)
			p.signal()
			if p.n != nil {
				ns = append(ns, p.n)
			}
		}
	}
	t.mu.Unlock()
	for _, n := range ns {
		n.PendingReady() // Dead now says so: the owner stops waiting
	}
}

// Dead reports whether the engine stopped (Wait returns ErrClosed): a
// Notifier told so goes on without the loop.
func (p *Pending) Dead() bool { return p.dead.Load() }
