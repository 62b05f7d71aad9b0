package tunnel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReasonString(t *testing.T) {
	for r, want := range map[Reason]string{
		ClientClosed: "client_closed", BackendClosed: "backend_closed", IdleTimeout: "idle_timeout",
		Error: "error", Shutdown: "shutdown", Rebalance: "rebalance", 0: "unknown", 99: "unknown",
	} {
		if got := r.String(); got != want {
			t.Errorf("Reason(%d).String() = %q, want %q", r, got, want)
		}
	}
}

// Echo: the backend echoes, the client writes and reads concurrently; the
// bytes come back intact, then a client FIN closes the tunnel cleanly.
func TestEchoBothDirections(t *testing.T) {
	sizes := []struct {
		name string
		n    int
	}{{"small", 11}, {"1MiB", 1 << 20}, {"16MiB", 16 << 20}}
	for _, splice := range []int{0, -1} {
		for _, sz := range sizes {
			name := sz.name + map[bool]string{true: "/splice", false: "/buffers"}[splice == 0]
			t.Run(name, func(t *testing.T) {
				e := newEngine(t, Config{SpliceMin: splice})
				p := newRig(t).newPair(t, e, nil, nil)
				go echo(p.backend)
				payload := make([]byte, sz.n)
				rand.New(rand.NewSource(int64(sz.n))).Read(payload)
				werr := make(chan error, 1)
				go func() {
					_, err := p.client.Write(payload)
					p.client.CloseWrite()
					werr <- err
				}()
				got, err := io.ReadAll(p.client)
				if err != nil {
					t.Fatal(err)
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				if sha256.Sum256(got) != sha256.Sum256(payload) {
					t.Fatalf("echo differs: got %d bytes, want %d", len(got), sz.n)
				}
				st := p.wait(t, 5*time.Second)
				if st.Reason != ClientClosed || st.ClientToBackend != int64(sz.n) || st.BackendToClient != int64(sz.n) {
					t.Fatalf("stats %+v, want client_closed with %d bytes each way", st, sz.n)
				}
				eventually(t, time.Second, "Len 0", func() bool { return e.Len() == 0 })
			})
		}
	}
}

// Bytes the proxy already read (the client's pipelined frames, the
// backend's first frame) arrive first and in order.
func TestInitialBytesFirst(t *testing.T) {
	e := newEngine(t, Config{})
	p := newRig(t).newPair(t, e, []byte("pipelined-"), []byte("first-frame-"))
	if _, err := p.client.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("pipelined-more"))
	if _, err := io.ReadFull(p.backend, got); err != nil || string(got) != "pipelined-more" {
		t.Fatalf("backend got %q, %v", got, err)
	}
	if _, err := p.backend.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len("first-frame-second"))
	if _, err := io.ReadFull(p.client, got); err != nil || string(got) != "first-frame-second" {
		t.Fatalf("client got %q, %v", got, err)
	}
	p.client.Close()
	p.backend.Close()
	st := p.wait(t, 5*time.Second)
	if st.ClientToBackend != 14 || st.BackendToClient != 18 {
		t.Fatalf("stats %+v: initial bytes not counted", st)
	}
}

// Initial bytes larger than a read buffer are carried whole.
func TestInitialBytesLarge(t *testing.T) {
	e := newEngine(t, Config{ReadSize: 4096})
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	p := newRig(t).newPair(t, e, big, nil)
	got := make([]byte, len(big))
	if _, err := io.ReadFull(p.backend, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("backend got %d bytes, %v", len(got), err)
	}
}

// Half-close: the side that sends FIN first can still receive; the other
// side sees EOF but keeps sending; the first FIN names the reason.
func TestHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string
		want  Reason
	}{{"client FIN first", "client", ClientClosed}, {"backend FIN first", "backend", BackendClosed}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			p := newRig(t).newPair(t, e, nil, nil)
			closer, other := p.client, p.backend
			if tc.first == "backend" {
				closer, other = p.backend, p.client
			}
			closer.Write([]byte("bye"))
			closer.CloseWrite()
			got, err := io.ReadAll(other) // "bye", then EOF
			if err != nil || string(got) != "bye" {
				t.Fatalf("other side got %q, %v; want bye then EOF", got, err)
			}
			p.notClosed(t)
			if _, err := other.Write([]byte("still talking")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 13)
			if _, err := io.ReadFull(closer, buf); err != nil || string(buf) != "still talking" {
				t.Fatalf("half-closed side got %q, %v", buf, err)
			}
			other.CloseWrite()
			if n, err := closer.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("after both FINs: %d, %v; want EOF", n, err)
			}
			st := p.wait(t, 5*time.Second)
			if st.Reason != tc.want || st.Err != nil {
				t.Fatalf("reason %v (%v), want %v", st.Reason, st.Err, tc.want)
			}
			if e.Len() != 0 {
				t.Fatalf("Len = %d", e.Len())
			}
		})
	}
}

// A backend that resets (SO_LINGER 0) mid-stream closes the tunnel with
// reason error, Err an *OpError on the backend side wrapping ECONNRESET; the
// client sees its connection end. done runs once.
func TestBackendResetMidStream(t *testing.T) {
	e := newEngine(t, Config{})
	p := newRig(t).newPair(t, e, nil, nil)
	go io.Copy(io.Discard, p.backend)
	go p.client.Write(make([]byte, 1<<20)) // client still sending
	if _, err := p.backend.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(p.client, buf); err != nil {
		t.Fatal(err)
	}
	p.backend.SetLinger(0)
	p.backend.Close()
	st := p.wait(t, 5*time.Second)
	var oe *OpError
	if st.Reason != Error || !errors.As(st.Err, &oe) || oe.Side != SideBackend || !errors.Is(st.Err, syscall.ECONNRESET) {
		t.Fatalf("stats %+v, want error with backend ECONNRESET", st)
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(p.client); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after reset: %v, want EOF or ECONNRESET", err)
	}
	time.Sleep(20 * time.Millisecond)
	if c := p.calls.Load(); c != 1 {
		t.Fatalf("done called %d times", c)
	}
	if e.Len() != 0 {
		t.Fatalf("Len = %d", e.Len())
	}
}

// Backpressure: a client that never reads stops the engine reading from
// the backend (whose writes then block in TCP flow control) with at most
// MaxPending held; then everything arrives intact.
func TestBackpressureSlowClient(t *testing.T) {
	total := int64(256 << 20)
	if raceEnabled {
		total = 64 << 20
	}
	for _, splice := range []int{0, -1} {
		t.Run(map[bool]string{true: "splice", false: "buffers"}[splice == 0], func(t *testing.T) {
			const maxPending = 64 << 10
			e := newEngine(t, Config{MaxPending: maxPending, SpliceMin: splice})
			p := newRig(t).newPair(t, e, nil, nil)
			var accepted atomic.Int64
			werr := make(chan error, 1)
			go func() { werr <- writePattern(p.backend, total, &accepted) }()

			// Settle: the backend's accepted bytes stop growing.
			last, stable := int64(-1), 0
			for stable < 5 {
				time.Sleep(100 * time.Millisecond)
				if n := accepted.Load(); n == last {
					stable++
				} else {
					last, stable = n, 0
				}
			}
			if last >= total {
				t.Fatalf("backend wrote all %d bytes: no backpressure", total)
			}
			held, maxHeld, _ := e.held()
			t.Logf("backend blocked after %d KiB accepted; engine holds %d B (max %d)", last>>10, held, maxHeld)
			if held > maxPending || maxHeld > maxPending {
				t.Fatalf("engine holds %d (max %d), over MaxPending %d", held, maxHeld, maxPending)
			}
			time.Sleep(300 * time.Millisecond)
			if n := accepted.Load(); n != last {
				t.Fatalf("backend accepted grew from %d to %d while blocked", last, n)
			}
			if err := readPattern(p.client, total); err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if _, maxHeld, _ := e.held(); maxHeld > maxPending {
				t.Fatalf("max held %d over MaxPending", maxHeld)
			}
		})
	}
}

// Idle timeout on a fake clock: no sleeping, exact ticks.
func TestIdleTimeoutFakeClock(t *testing.T) {
	clk := newFakeClock()
	e := newEngine(t, Config{IdleTimeout: 10 * time.Second, Tick: time.Second, Now: clk.Now})
	r := newRig(t)
	idle := r.newPair(t, e, nil, nil)
	busy := r.newPair(t, e, nil, nil)
	e.tick() // both added

	clk.Advance(5 * time.Second)
	e.tick()
	// Activity at 5s on busy postpones its deadline to 15s (+1 tick).
	busy.client.Write([]byte("x"))
	io.ReadFull(busy.backend, make([]byte, 1))

	clk.Advance(5 * time.Second) // 10s: idle for exactly the timeout, not over
	e.tick()
	idle.notClosed(t)
	clk.Advance(time.Second) // 11s: idle closes (close frames, then the peers' FIN); busy is re-inserted
	e.tick()
	expectClose(t, "idle client", []rawFrame{mustFrame(t, idle.client)}, CodeGoingAway, false)
	expectClose(t, "idle backend", []rawFrame{mustFrame(t, idle.backend)}, CodeGoingAway, true)
	idle.client.CloseWrite()
	idle.backend.CloseWrite()
	st := idle.wait(t, time.Second)
	if st.Reason != IdleTimeout || st.Duration != 11*time.Second {
		t.Fatalf("idle: %+v, want idle_timeout after 11s", st)
	}
	busy.notClosed(t)
	clk.Advance(4 * time.Second) // 15s
	e.tick()
	busy.notClosed(t)
	clk.Advance(time.Second) // 16s: "x" is not WebSocket framing: a plain close at once
	e.tick()
	if st := busy.wait(t, time.Second); st.Reason != IdleTimeout {
		t.Fatalf("busy: %+v, want idle_timeout", st)
	}
	if e.Len() != 0 {
		t.Fatalf("Len = %d", e.Len())
	}
}

// Idle timeout on the real clock (300ms, 100ms tick); traffic postpones it.
func TestIdleTimeoutRealClock(t *testing.T) {
	e := newEngine(t, Config{IdleTimeout: 300 * time.Millisecond, Tick: 100 * time.Millisecond, CloseFinWait: 100 * time.Millisecond})
	r := newRig(t)
	start := time.Now()
	idle := r.newPair(t, e, nil, nil)
	busy := r.newPair(t, e, nil, nil)
	go io.Copy(io.Discard, busy.backend)
	for i := 0; i < 8; i++ { // 800ms of traffic every 100ms
		busy.client.Write(wsFrame(true, 1, []byte("ping"), true))
		time.Sleep(100 * time.Millisecond)
	}
	st := idle.wait(t, 10*time.Second)
	// Due 300-400ms after Add; never early. No upper bound on a shared
	// machine: the fake-clock test checks the exact tick, and idle.wait
	// fails if the close does not come at all.
	t.Logf("idle tunnel closed after %v", st.Duration)
	if st.Reason != IdleTimeout || st.Duration < 300*time.Millisecond {
		t.Fatalf("idle: %+v, want idle_timeout, not before 300ms", st)
	}
	busy.notClosed(t)
	st = busy.wait(t, 10*time.Second)
	if el := time.Since(start); st.Reason != IdleTimeout || el < 1000*time.Millisecond {
		t.Fatalf("busy: %+v after %v", st, el)
	}
	// The client sees the close: a close frame 1001, then EOF.
	if st.CloseCode != CodeGoingAway {
		t.Fatalf("busy: close code %d", st.CloseCode)
	}
	expectClose(t, "client", readFramesToEOF(t, busy.client), CodeGoingAway, false)
}

func mustFrame(tb testing.TB, c net.Conn) rawFrame {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(c)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// Many tunnels at once, each echoing; all close; no fd leaks.
func TestManyTunnels(t *testing.T) {
	n := 1000
	if raceEnabled {
		n = 200
	}
	r := newRig(t)
	fdsBefore, _ := countFds(t)
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	pairs := make([]*pair, n)
	for i := range pairs {
		pairs[i] = r.newPair(t, e, nil, nil)
	}
	if e.Len() != n {
		t.Fatalf("Len = %d, want %d", e.Len(), n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, p := range pairs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			echo(p.backend)
			p.backend.Close()
		}()
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(i)}, 100+i)
			for k := 0; k < 3; k++ {
				if _, err := p.client.Write(msg); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(p.client, got); err != nil || !bytes.Equal(got, msg) {
					errs <- errors.New("echo mismatch")
					return
				}
			}
			p.client.CloseWrite()
			io.ReadAll(p.client)
			p.client.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if st := p.wait(t, 5*time.Second); st.Reason != ClientClosed {
			t.Fatalf("reason %v (%v)", st.Reason, st.Err)
		}
	}
	if e.Len() != 0 {
		t.Fatalf("Len = %d", e.Len())
	}
	e.Close()
	if fdsAfter, _ := countFds(t); fdsAfter != fdsBefore {
		kinds := map[string]int{}
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, ent := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + ent.Name())
			if len(l) > 6 {
				l = l[:6]
			}
			kinds[l]++
		}
		t.Fatalf("fds: %d before, %d after: %v", fdsBefore, fdsAfter, kinds)
	}
}

func TestCloseAllThenClose(t *testing.T) {
	e := newEngine(t, Config{Loops: 2})
	r := newRig(t)
	pairs := make([]*pair, 10)
	for i := range pairs {
		pairs[i] = r.newPair(t, e, nil, nil)
	}
	e.CloseAll()
	for _, p := range pairs {
		select {
		case st := <-p.stats:
			if st.Reason != Shutdown {
				t.Fatalf("reason %v, want shutdown", st.Reason)
			}
		default:
			t.Fatal("CloseAll returned before done ran")
		}
	}
	if e.Len() != 0 {
		t.Fatalf("Len = %d", e.Len())
	}
	// Still usable.
	p := r.newPair(t, e, nil, nil)
	p.client.Write([]byte("hi"))
	if _, err := io.ReadFull(p.backend, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if st := p.wait(t, time.Second); st.Reason != Shutdown {
		t.Fatalf("reason %v, want shutdown", st.Reason)
	}
	// Add after Close errors and closes the fds.
	q, cfd, bfd := r.conns(t)
	defer q.close()
	if err := e.Add(cfd, bfd, nil, nil, q.done); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	for _, fd := range []int{cfd, bfd} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Fatalf("fd %d still open after failed Add", fd)
		}
	}
	if q.calls.Load() != 0 {
		t.Fatal("done called after failed Add")
	}
	e.Close() // idempotent
	e.CloseAll()
}

func TestAddBadFd(t *testing.T) {
	e := newEngine(t, Config{})
	if err := e.Add(-1, 5000, nil, nil, nil); !errors.Is(err, ErrBadFd) {
		t.Fatalf("got %v", err)
	}
	if err := e.Add(19999, 19998, nil, nil, nil); !errors.Is(err, ErrBadFd) || !errors.Is(err, unix.EBADF) {
		t.Fatalf("closed fds: got %v", err)
	}
	// An fd epoll refuses (a regular file) closes with reason error.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd2, _ := unix.Dup(fd)
	got := make(chan Stats, 1)
	if err := e.Add(fd, fd2, nil, nil, func(st Stats) { got <- st }); err != nil {
		t.Fatal(err)
	}
	st := <-got
	if st.Reason != Error || st.Err == nil {
		t.Fatalf("stats %+v, want error", st)
	}
}

// Bulk flows switch to splice; once quiet, no tunnel holds a pipe and the
// pipes left are the loops' bounded pools, closed by Close.
func TestSpliceBulkThenIdleHoldsNoPipe(t *testing.T) {
	r := newRig(t)
	_, pipesBefore := countFds(t)
	e, err := New(Config{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	switches, spliced := e.m.spliceSwitches.Get(), e.m.spliceBytes.Get()
	const n = 4
	const size = 8 << 20
	pairs := make([]*pair, n)
	var wg sync.WaitGroup
	for i := range pairs {
		p := r.newPair(t, e, nil, nil)
		pairs[i] = p
		wg.Add(2)
		go func() { defer wg.Done(); writePattern(p.client, size, nil) }()
		go func() {
			defer wg.Done()
			if err := readPattern(p.backend, size); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if e.m.spliceSwitches.Get() == switches || e.m.spliceBytes.Get() == spliced {
		t.Fatal("bulk transfer did not use splice")
	}
	t.Logf("splice: %d switches, %d MiB", e.m.spliceSwitches.Get()-switches, (e.m.spliceBytes.Get()-spliced)>>20)
	eventually(t, time.Second, "no tunnel holding a pipe", func() bool {
		held, _, pipes := e.held()
		return held == 0 && pipes == 0
	})
	if _, pipes := countFds(t); pipes-pipesBefore > 2*2*maxPooledPipes {
		t.Fatalf("%d pipes open beyond the pools' bound", pipes-pipesBefore)
	}
	// Small traffic stays on buffers.
	switches = e.m.spliceSwitches.Get()
	pairs[0].client.Write([]byte("small"))
	io.ReadFull(pairs[0].backend, make([]byte, 5))
	if e.m.spliceSwitches.Get() != switches {
		t.Fatal("small message switched to splice")
	}
	e.Close()
	if _, pipes := countFds(t); pipes != pipesBefore {
		t.Fatalf("pipes: %d before, %d after Close", pipesBefore, pipes)
	}
}

// Concurrent Add and Close: every accepted tunnel gets done exactly once,
// every refused one has its fds closed.
func TestAddRacingClose(t *testing.T) {
	r := newRig(t)
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	type item struct {
		p        *pair
		cfd, bfd int
	}
	items := make([]item, n)
	for i := range items {
		p, cfd, bfd := r.conns(t)
		t.Cleanup(p.close)
		items[i] = item{p, cfd, bfd}
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e.Add(items[i].cfd, items[i].bfd, nil, nil, items[i].p.done) == nil {
				accepted.Add(1)
			}
		}()
	}
	e.Close()
	wg.Wait()
	var doneCount int32
	for _, it := range items {
		doneCount += it.p.calls.Load()
	}
	if doneCount != accepted.Load() || e.Len() != 0 {
		t.Fatalf("accepted %d, done %d, Len %d", accepted.Load(), doneCount, e.Len())
	}
}

// Out of fds for a pipe (EMFILE): bulk flows stay on buffers, the loop
// does not retry pipe2 on every read, and the bytes arrive intact.
func TestPipeExhaustionFallsBackToBuffers(t *testing.T) {
	e := newEngine(t, Config{Loops: 1})
	p := newRig(t).newPair(t, e, nil, nil)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lowest, err := unix.Dup(0) // the lowest free fd number
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(lowest)
	tight := lim
	tight.Cur = uint64(lowest) // no new fd at all: pipe2 gets EMFILE
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tight); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	errs0, switches0 := e.m.pipeErrors.Get(), e.m.spliceSwitches.Get()
	const size = 8 << 20
	go writePattern(p.client, size, nil)
	if err := readPattern(p.backend, size); err != nil {
		t.Fatal(err)
	}
	errs := e.m.pipeErrors.Get() - errs0
	if errs == 0 || errs > 5 || e.m.spliceSwitches.Get() != switches0 {
		t.Fatalf("pipe errors %d (want 1..5), splice switches %d (want 0)", errs, e.m.spliceSwitches.Get()-switches0)
	}
}

// A FIN that arrives while bytes are held for a slow reader is passed on
// only after them.
func TestFinAfterHeldBytes(t *testing.T) {
	for _, splice := range []int{0, -1} {
		e := newEngine(t, Config{SpliceMin: splice})
		p := newRig(t).newPair(t, e, nil, nil)
		const size = 16 << 20
		go func() {
			writePattern(p.backend, size, nil)
			p.backend.CloseWrite()
		}()
		time.Sleep(100 * time.Millisecond) // the backend blocks: the client is not reading
		if err := readPattern(p.client, size); err != nil {
			t.Fatal(err)
		}
		if n, err := p.client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("after the stream: %d, %v; want EOF", n, err)
		}
		p.client.CloseWrite()
		if st := p.wait(t, 5*time.Second); st.Reason != BackendClosed || st.BackendToClient != size {
			t.Fatalf("stats %+v", st)
		}
	}
}
