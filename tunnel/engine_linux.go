package tunnel

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/wsgate/wsgate/tunnel/rawsys"
	"golang.org/x/sys/unix"
)

// Engine relays upgraded connections on Config.Loops epoll loops. All its
// methods are safe for concurrent use, except that Close and CloseAll must
// not be called from a done callback (they wait for the loops).
type Engine struct {
	cfg          Config         // normalized; immutable
	epoch        time.Time      // cfg.Now() at New; ticks count from here
	realClock    bool           // cfg.Now is time.Now: sinceEpoch reads only the monotonic clock
	timeoutTicks int64          // ceil(IdleTimeout/Tick); -1 when disabled
	finTicks     int64          // ceil(FinTimeout/Tick); -1 when disabled
	boundTicks   int64          // ceil(CloseBoundaryWait/Tick); -1: no wait
	lingerTicks  int64          // ceil(CloseFinWait/Tick); -1: no wait
	bufs         *bufPool       // ReadSize buffers, shared by the loops
	tlsBufs      *bufPool       // TLS tunnels' buffers (tlsBufSize: a whole record, or the records sealed from one read)
	m            *engineMetrics // metrics.go; immutable
	loops        []*loop        // immutable after New

	n         atomic.Int64  // open tunnels, counting those queued to a loop
	closing   atomic.Int64  // open tunnels whose close the engine has started (startClose)
	rr        atomic.Uint32 // tie-break for the least-loaded pick
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// sinceEpoch is the engine's clock: the time since epoch. With the real
// clock it is time.Since, which reads only the monotonic clock (time.Now
// reads the wall clock too: 111 against 65 ns here, several times a
// handshake).
func (e *Engine) sinceEpoch() time.Duration {
	if e.realClock {
		return time.Since(e.epoch)
	}
	return e.cfg.Now().Sub(e.epoch)
}

// New starts an engine with cfg (zero value: defaults).
func New(cfg Config) (*Engine, error) {
	realClock := cfg.Now == nil
	cfg = cfg.normalized()
	e := &Engine{cfg: cfg, epoch: cfg.Now(), realClock: realClock, bufs: newBufPool(cfg.ReadSize), tlsBufs: newBufPool(tlsBufSize(cfg.ReadSize)), m: newEngineMetrics(), timeoutTicks: -1, finTicks: -1}
	if cfg.IdleTimeout > 0 {
		e.timeoutTicks = int64((cfg.IdleTimeout + cfg.Tick - 1) / cfg.Tick)
	}
	if cfg.FinTimeout > 0 {
		e.finTicks = int64((cfg.FinTimeout + cfg.Tick - 1) / cfg.Tick)
	}
	e.boundTicks, e.lingerTicks = -1, -1
	if cfg.CloseBoundaryWait > 0 {
		e.boundTicks = int64((cfg.CloseBoundaryWait + cfg.Tick - 1) / cfg.Tick)
	}
	if cfg.CloseFinWait > 0 {
		e.lingerTicks = int64((cfg.CloseFinWait + cfg.Tick - 1) / cfg.Tick)
	}
	for i := 0; i < cfg.Loops; i++ {
		l, err := newLoop(e)
		if err != nil {
			for _, l := range e.loops {
				l.closeFds()
			}
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	e.wg.Add(len(e.loops))
	for _, l := range e.loops {
		go l.run()
	}
	return e, nil
}

// Add takes ownership of two connected, non-blocking TCP socket fds: the
// caller never touches them again, even on error (Add then closes them and
// done is never called). toBackend and toClient are bytes already read
// from the other side; they are copied and written before anything else.
// done is called exactly once, from an engine goroutine, after both fds
// are closed; it must not block for long, nor call Close or CloseAll.
func (e *Engine) Add(clientFd, backendFd int, toBackend, toClient []byte, done func(Stats)) error {
	return e.AddTagged(0, clientFd, backendFd, toBackend, toClient, done)
}

// AddTagged is Add with a tag that CloseTagged can later close the tunnel by
// (the caller's name for a group, such as the tunnels of one backend).
func (e *Engine) AddTagged(tag uint64, clientFd, backendFd int, toBackend, toClient []byte, done func(Stats)) error {
	if err := checkFds(clientFd, backendFd); err != nil {
		return err
	}
	c := command{kind: cmdAdd, fd: [2]int32{int32(clientFd), int32(backendFd)}, done: done, tag: tag}
	c.trackInit(toBackend, toClient)
	if len(toBackend) > 0 {
		c.init[SideClient], c.initN[SideClient] = e.bufs.copyIn(toBackend), int32(len(toBackend))
	}
	if len(toClient) > 0 {
		c.init[SideBackend], c.initN[SideBackend] = e.bufs.copyIn(toClient), int32(len(toClient))
	}
	return e.enqueueAdd(c)
}

// trackInit feeds the initial bytes to the frame trackers: toBackend are
// the client's first frames; toClient may start with the 101's head, which
// is not part of the frame stream.
func (c *command) trackInit(toBackend, toClient []byte) {
	c.fr[SideClient].feed(toBackend, false)
	if rest, ok := skipHTTPHead(toClient); ok {
		c.fr[SideBackend].feed(rest, false)
	} else {
		c.fr[SideBackend].st |= wsBad
	}
}

// checkFds checks the fds given to Add and sets O_NONBLOCK; on error both
// are closed (but never a number that is not open).
func checkFds(clientFd, backendFd int) error {
	if clientFd < 0 || backendFd < 0 || clientFd == backendFd {
		closeFd(clientFd)
		if backendFd != clientFd {
			closeFd(backendFd)
		}
		return ErrBadFd
	}
	// A blocking fd would stall a whole loop; this also checks both fds
	// are open before the caller is told yes.
	fds := [2]int{clientFd, backendFd}
	for i, fd := range fds {
		if err := ensureNonblock(fd); err != nil {
			// Not open (EBADF): closing that number could close an fd
			// someone else just opened; close only the other one.
			if err != unix.EBADF {
				unix.Close(fd)
			}
			unix.Close(fds[1-i])
			return fmt.Errorf("%w: %d: %w", ErrBadFd, fd, err)
		}
	}
	return nil
}

// enqueueAdd hands c to the least-loaded loop.
func (e *Engine) enqueueAdd(c command) error {
	return e.enqueueAddOn(e.pick(), c)
}

// enqueueAddOn hands c to loop l.
func (e *Engine) enqueueAddOn(l *loop, c command) error {
	c.start = int64(e.sinceEpoch())
	l.load.Add(1)
	e.n.Add(1)
	if !l.enqueue(c) {
		l.load.Add(-1)
		e.n.Add(-1)
		pool := e.bufs
		if c.tls != nil {
			pool = e.tlsBufs
			c.tls.release(pool)
		}
		pool.put(c.init[0])
		pool.put(c.init[1])
		closeFd(int(c.fd[0]))
		closeFd(int(c.fd[1]))
		return ErrClosed
	}
	return nil
}

// ensureNonblock sets O_NONBLOCK on fd unless it is set already, as it is
// on every socket the proxy hands over: one fcntl instead of two.
func ensureNonblock(fd int) error {
	fl, err := rawsys.Fcntl(fd, unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK != 0 {
		return err
	}
	_, err = rawsys.Fcntl(fd, unix.F_SETFL, fl|unix.O_NONBLOCK)
	return err
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// pick returns the least-loaded loop, ties broken round-robin.
func (e *Engine) pick() *loop {
	start := int(e.rr.Add(1))
	best := e.loops[start%len(e.loops)]
	bestLoad := best.load.Load()
	for i := 1; i < len(e.loops); i++ {
		l := e.loops[(start+i)%len(e.loops)]
		if n := l.load.Load(); n < bestLoad {
			best, bestLoad = l, n
		}
	}
	return best
}

// Len returns the number of open tunnels (added and not yet closed).
func (e *Engine) Len() int { return int(e.n.Load()) }

// CloseAll closes every open tunnel with reason Shutdown (tunnels already
// closing keep their reason) and returns after their done callbacks have
// run. It does not wait for anything: close frames (1012 to the client)
// go out only where both directions are at a frame boundary with nothing
// held and each frame fits in one non-blocking write. The engine stays
// usable.
func (e *Engine) CloseAll() {
	e.run(func(l *loop) { l.closeAll(Shutdown) })
}

// Close closes every tunnel (Shutdown), stops the loops and releases their
// fds and pipes. Add afterwards returns ErrClosed. Close is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		for _, l := range e.loops {
			l.stop()
		}
		e.wg.Wait()
	})
	return nil
}

// run calls fn on every loop's goroutine and waits for all of them. Loops
// already stopped are skipped.
func (e *Engine) run(fn func(l *loop)) {
	acks := make([]chan struct{}, 0, len(e.loops))
	for _, l := range e.loops {
		ack := make(chan struct{})
		if l.enqueue(command{kind: cmdRun, fn: fn, ack: ack}) {
			acks = append(acks, ack)
		}
	}
	for _, ack := range acks {
		<-ack
	}
}

// Metrics returns the engine's counters, for an admin listener to write
// (metrics.Set.WritePrometheus).
func (e *Engine) Metrics() *metrics.Set { return e.m.set }
