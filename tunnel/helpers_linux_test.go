package tunnel

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rig holds the two loopback listeners tunnels are made from: "front"
// (clients dial it, the proxy side accepts) and "back" (the proxy side
// dials it, the test's backend accepts).
type rig struct {
	front, back net.Listener
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	back, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { front.Close(); back.Close() })
	return &rig{front: front, back: back}
}

// pair is one tunnel as the test sees it: the client's and the backend's
// ends, and what the engine reported.
type pair struct {
	client, backend *net.TCPConn
	stats           chan Stats // done sends here (buffered)
	calls           atomic.Int32
}

// conns makes the four sockets of a tunnel and returns the proxy-side fds
// (dup'ed; the Go conns are closed, the sockets stay open, non-blocking).
func (r *rig) conns(tb testing.TB) (p *pair, cfd, bfd int) {
	tb.Helper()
	client, err := net.Dial("tcp", r.front.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	proxyClient, err := r.front.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	proxyBackend, err := net.Dial("tcp", r.back.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	backend, err := r.back.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	p = &pair{client: client.(*net.TCPConn), backend: backend.(*net.TCPConn), stats: make(chan Stats, 2)}
	return p, dupFd(tb, proxyClient), dupFd(tb, proxyBackend)
}

// newPair makes a tunnel through e.
func (r *rig) newPair(tb testing.TB, e *Engine, toBackend, toClient []byte) *pair {
	tb.Helper()
	p, cfd, bfd := r.conns(tb)
	if err := e.Add(cfd, bfd, toBackend, toClient, p.done); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.close)
	return p
}

func (p *pair) done(st Stats) {
	p.calls.Add(1)
	p.stats <- st
}

func (p *pair) close() {
	p.client.Close()
	p.backend.Close()
}

// wait returns the tunnel's Stats, failing after d.
func (p *pair) wait(tb testing.TB, d time.Duration) Stats {
	tb.Helper()
	select {
	case st := <-p.stats:
		return st
	case <-time.After(d):
		tb.Fatalf("tunnel not closed after %v", d)
		return Stats{}
	}
}

// notClosed fails if done has been called.
func (p *pair) notClosed(tb testing.TB) {
	tb.Helper()
	select {
	case st := <-p.stats:
		tb.Fatalf("tunnel closed early: %+v", st)
	default:
	}
}

func dupFd(tb testing.TB, c net.Conn) int {
	tb.Helper()
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	fd := -1
	var derr error
	if err := sc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		tb.Fatal(err)
	}
	if derr != nil {
		tb.Fatal(derr)
	}
	c.Close()
	return fd
}

// countFds returns the open fds of this process, and how many are pipes.
func countFds(tb testing.TB) (all, pipes int) {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	for _, ent := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + ent.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

// eventually polls cond until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pattern fills b with the byte stream that starts at offset off.
func pattern(b []byte, off int64) {
	for i := range b {
		x := off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
}

// readPattern reads n bytes from r and checks them against pattern.
func readPattern(r io.Reader, n int64) error {
	buf := make([]byte, 64<<10)
	want := make([]byte, len(buf))
	var off int64
	for off < n {
		chunk := buf
		if rem := n - off; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		m, err := r.Read(chunk)
		if m > 0 {
			pattern(want[:m], off)
			if string(chunk[:m]) != string(want[:m]) {
				return fmt.Errorf("stream differs near offset %d", off)
			}
			off += int64(m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writePattern writes n pattern bytes to w in chunks.
func writePattern(w io.Writer, n int64, written *atomic.Int64) error {
	buf := make([]byte, 64<<10)
	var off int64
	for off < n {
		chunk := buf
		if rem := n - off; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		pattern(chunk, off)
		m, err := w.Write(chunk)
		off += int64(m)
		if written != nil {
			written.Store(off)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fakeClock is a concurrency-safe settable clock for Config.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// tick runs the timer wheel on every loop at the clock's current time,
// synchronously (the test hook for fake clocks).
func (e *Engine) tick() {
	e.run(func(l *loop) {
		l.updateNow()
		l.wheel.Advance(l.nowTick, l.expire)
	})
}

// held reports the bytes held by tunnels (buffers and pipes), the most any
// direction has held, and how many directions hold a pipe.
func (e *Engine) held() (now, max int64, pipes int) {
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	e.run(func(l *loop) {
		<-mu
		defer func() { mu <- struct{}{} }()
		if l.maxHeld > max {
			max = l.maxHeld
		}
		for ci := range l.chunks {
			for j := range l.chunks[ci] {
				t := &l.chunks[ci][j]
				if !t.open {
					continue
				}
				for s := range t.dir {
					now += t.dir[s].held()
					if t.dir[s].flags&dirSplicing != 0 {
						pipes++
					}
				}
			}
		}
	})
	return now, max, pipes
}

func newEngine(tb testing.TB, cfg Config) *Engine {
	tb.Helper()
	e, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

// echo writes back what c reads until EOF, then sends FIN. (Not io.Copy:
// TCPConn.ReadFrom would splice through Go's own pooled pipes, which
// confuses the pipe and fd counts.)
func echo(c *net.TCPConn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return c.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}
