package balancer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitQueued yields until p's queue holds n calls, and until the one that
// made it so has finished queueing (its timer armed).
func waitQueued(t *testing.T, p *Pool, n int) {
	t.Helper()
	for i := 0; p.QueueLen() != n; i++ {
		if i > 50_000_000 {
			t.Fatalf("queue length %d, want %d", p.QueueLen(), n)
		}
		runtime.Gosched()
	}
	p.q.mu.Lock()
	//lint:ignore SA2001 an empty critical section: the queueing call finished
	p.q.mu.Unlock()
}

// result is one PickWait's answer.
type result struct {
	id     int
	b      *Backend
	waited time.Duration
	err    error
}

// goWait runs PickWait in a goroutine and sends its answer on ch.
func goWait(p *Pool, id int, skip func(*Backend) bool, upgrade bool, timeout time.Duration, ch chan<- result) {
	go func() {
		b, w, err := p.PickWait(skip, upgrade, timeout)
		ch <- result{id, b, w, err}
	}()
}

func TestMaxConnsPick(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1,max-conns=2", "b:1,max-conns=1")
	p := bl.Pool("")
	var held []*Backend
	for range 3 {
		b := p.Pick(nil)
		if b == nil {
			t.Fatal("Pick = nil with free slots")
		}
		held = append(held, b)
	}
	bs := byAddr(p)
	if bs["a:1"].Active() != 2 || bs["b:1"].Active() != 1 || bs["a:1"].MaxConns() != 2 {
		t.Fatalf("active a=%d b=%d, want 2 and 1", bs["a:1"].Active(), bs["b:1"].Active())
	}
	if b := p.Pick(nil); b != nil {
		t.Fatalf("Pick = %v with every backend full", b)
	}
	if b, _, err := p.PickWait(nil, false, 0); b != nil || !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("PickWait with timeout 0 on a full pool = %v, %v; want ErrQueueTimeout", b, err)
	}
	held[0].Release()
	if b := p.Pick(nil); b != held[0] {
		t.Fatalf("Pick after a release = %v, want %v", b, held[0])
	}
	// Round robin and sticky picks keep the cap too.
	rr, _, _ := testBalancer(t, Config{Policy: RoundRobin}, "a:1,max-conns=1", "b:1,max-conns=2")
	rp := rr.Pool("")
	for range 3 {
		if rp.Pick(nil) == nil {
			t.Fatal("round robin: nil with free slots")
		}
	}
	if b := rp.Pick(nil); b != nil {
		t.Fatalf("round robin: Pick = %v when full", b)
	}
	s, err := NewSticky(StickyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Pin(byAddr(rp)["a:1"], nil) {
		t.Error("Pin of a full backend succeeded")
	}
	if b := s.PickHash(rp, []byte("10.0.0.1"), nil); b != nil {
		t.Errorf("PickHash = %v when full", b)
	}
}

func TestMaxConnsConfig(t *testing.T) {
	_, err := New(Config{Backends: []BackendConfig{{Addr: "a:1", MaxConns: MaxMaxConns + 1}}})
	if err == nil || !contains(err.Error(), "max-conns") {
		t.Errorf("New with max-conns too large: %v", err)
	}
	bl, _, logs := testBalancer(t, Config{}, "a:1,max-conns=3")
	if err := bl.Update([]BackendConfig{{Addr: "a:1", MaxConns: -1}}); err == nil {
		t.Error("Update with a negative max-conns: no error")
	}
	if err := bl.Update([]BackendConfig{{Addr: "a:1"}}); err != nil {
		t.Fatal(err)
	}
	b := bl.Backend("", "a:1")
	if b.MaxConns() != 0 || logs.count("max-conns 3 → unlimited") != 1 {
		t.Errorf("MaxConns %d after reload to unlimited; logs %v", b.MaxConns(), logs.lines)
	}
	if st := bl.Status()[0].Backends[0]; st.MaxConns != 0 {
		t.Errorf("status max_conns %d", st.MaxConns)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

// Waiters are served in arrival order, and a newcomer never overtakes one.
func TestQueueFIFO(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1,max-conns=1")
	p := bl.Pool("")
	first := p.Pick(nil)
	ch := make(chan result, 10)
	for i := range 5 {
		goWait(p, i, nil, false, time.Minute, ch)
		waitQueued(t, p, i+1)
	}
	clk.Advance(3 * time.Second)
	holder := first
	for i := range 5 {
		holder.Release()
		r := <-ch
		if r.id != i || r.err != nil || r.b != first {
			t.Fatalf("served %+v, want waiter %d with a:1", r, i)
		}
		if r.waited != 3*time.Second {
			t.Errorf("waiter %d waited %v, want 3s", i, r.waited)
		}
		if i == 1 {
			// A newcomer arriving now queues behind waiters 2..4.
			goWait(p, 99, nil, false, time.Minute, ch)
			waitQueued(t, p, 4)
		}
		holder = r.b
		if first.Active() != 1 {
			t.Fatalf("active %d, want 1", first.Active())
		}
	}
	holder.Release()
	if r := <-ch; r.id != 99 {
		t.Fatalf("served %d, want the newcomer last", r.id)
	}
	st := p.QueueStats()
	if st.Queued != 6 || st.Served != 6 || st.Timeouts != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueTimeout(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1,max-conns=1", "b:1,max-conns=1")
	p := bl.Pool("")
	p.Pick(nil)
	p.Pick(nil)
	ch := make(chan result, 2)
	goWait(p, 0, nil, false, 5*time.Second, ch)
	waitQueued(t, p, 1)
	clk.Advance(2 * time.Second)
	goWait(p, 1, nil, false, 5*time.Second, ch)
	waitQueued(t, p, 2)
	clk.Advance(3*time.Second - time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("answer before the timeout: %+v", r)
	default:
	}
	clk.Advance(time.Millisecond)
	r := <-ch
	if r.id != 0 || !errors.Is(r.err, ErrQueueTimeout) || r.b != nil || r.waited != 5*time.Second {
		t.Fatalf("got %+v, want waiter 0 timed out after 5s", r)
	}
	if p.QueueLen() != 1 {
		t.Fatalf("queue %d, want 1", p.QueueLen())
	}
	clk.Advance(2 * time.Second)
	if r := <-ch; r.id != 1 || !errors.Is(r.err, ErrQueueTimeout) {
		t.Fatalf("got %+v", r)
	}
	if st := p.QueueStats(); st.Timeouts != 2 || st.Queued != 2 || st.Served != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueFull(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{MaxQueue: 2}, "a:1,max-conns=1")
	p := bl.Pool("")
	a := p.Pick(nil)
	ch := make(chan result, 3)
	for i := range 2 {
		goWait(p, i, nil, false, time.Minute, ch)
		waitQueued(t, p, i+1)
	}
	if b, _, err := p.PickWait(nil, false, time.Minute); b != nil || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, %v; want ErrQueueFull", b, err)
	}
	if st := p.QueueStats(); st.Full != 1 {
		t.Errorf("stats %+v", st)
	}
	a.Release()
	(<-ch).b.Release()
	(<-ch).b.Release()

	// No queue at all: a free slot is served, a full pool answers at once.
	nq, _, _ := testBalancer(t, Config{MaxQueue: -1}, "a:1,max-conns=1")
	np := nq.Pool("")
	b, _, err := np.PickWait(nil, false, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := np.PickWait(nil, false, time.Minute); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("no queue, full: %v", err)
	}
	b.Release()
}

func TestQueueNoBackend(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1,max-conns=1", "b:1", "other=c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	for range 3 {
		bs["b:1"].ReportFailure()
	}
	skipA := func(b *Backend) bool { return b == bs["a:1"] }
	if _, _, err := p.PickWait(skipA, false, time.Minute); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("skip excludes every healthy backend: %v", err)
	}
	a := p.Pick(nil)
	ch := make(chan result, 1)
	goWait(p, 0, nil, false, time.Minute, ch)
	waitQueued(t, p, 1)
	// A reload leaves the pool without backends: the waiter hears at once.
	if err := bl.Update(mustBackends(t, "other=c:1")); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; !errors.Is(r.err, ErrNoBackend) {
		t.Fatalf("waiter after its pool emptied: %+v", r)
	}
	a.Release()
	if _, _, err := p.PickWait(nil, false, time.Minute); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("empty pool: %v", err)
	}
	if st := p.QueueStats(); st.NoBackend != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Raising max-conns by reload serves waiters; lowering it lets Active fall.
func TestReloadMaxConns(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1,max-conns=1")
	p := bl.Pool("")
	a := p.Pick(nil)
	ch := make(chan result, 3)
	for i := range 3 {
		goWait(p, i, nil, false, time.Minute, ch)
		waitQueued(t, p, i+1)
	}
	if err := bl.Update(mustBackends(t, "a:1,max-conns=3")); err != nil {
		t.Fatal(err)
	}
	r0, r1 := <-ch, <-ch // the first two, in either order of their goroutines
	if r0.id+r1.id != 1 || r0.b != a || r1.b != a || a.Active() != 3 || p.QueueLen() != 1 {
		t.Fatalf("after raising to 3: %+v %+v, active %d, queue %d", r0, r1, a.Active(), p.QueueLen())
	}
	if err := bl.Update(mustBackends(t, "a:1,max-conns=1")); err != nil {
		t.Fatal(err)
	}
	a.Release()
	a.Release()
	select {
	case r := <-ch:
		t.Fatalf("served %+v while active %d ≥ max-conns 1", r, a.Active())
	default:
	}
	a.Release()
	if r := <-ch; r.id != 2 || a.Active() != 1 {
		t.Fatalf("got %+v, active %d", r, a.Active())
	}
	a.Release()
}

// A draining backend's release kicks its pool's queue but never hands the
// draining backend out; the live ones serve the waiters.
func TestQueueDrainingRelease(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1,max-conns=1", "b:1,max-conns=1")
	p := bl.Pool("")
	bs := byAddr(p)
	a, b := bs["a:1"], bs["b:1"]
	a.acquire()
	b.acquire()
	ch := make(chan result, 3)
	goWait(p, 0, nil, false, time.Minute, ch)
	waitQueued(t, p, 1)
	goWait(p, 1, nil, false, time.Minute, ch)
	waitQueued(t, p, 2)
	if err := bl.Update(mustBackends(t, "b:1,max-conns=1")); err != nil {
		t.Fatal(err)
	}
	a.Release() // a drains: its slot is not for new requests
	if p.QueueLen() != 2 || a.Active() != 0 {
		t.Fatalf("queue %d, a active %d after a draining release", p.QueueLen(), a.Active())
	}
	b.Release()
	if r := <-ch; r.id != 0 || r.b != b {
		t.Fatalf("got %+v, want waiter 0 on b", r)
	}
	// a comes back into the set: the reload serves the next waiter on it.
	if err := bl.Update(mustBackends(t, "a:1,max-conns=1", "b:1,max-conns=1")); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.id != 1 || r.b != a {
		t.Fatalf("got %+v, want waiter 1 on a", r)
	}
}

// Many goroutines picking, waiting and releasing never push a backend
// over its max-conns.
func TestMaxConnsExactConcurrent(t *testing.T) {
	t.Run("unpaced", func(t *testing.T) { testMaxConnsExact(t, 0) })
	t.Run("paced", func(t *testing.T) { testMaxConnsExact(t, 2000) })
}

func testMaxConnsExact(t *testing.T, pace float64) {
	bl, clk, _ := testBalancer(t, Config{MaxHandshakesPerBackend: pace}, "a:1,max-conns=3", "b:1,max-conns=1", "c:1,max-conns=2,weight=3")
	p := bl.Pool("")
	if pace > 0 {
		// Time moves while the workers run, so that tokens refill.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					clk.Advance(time.Millisecond)
					runtime.Gosched()
				}
			}
		}()
		defer func() { close(stop); <-done }()
	}
	s, err := NewSticky(StickyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	held := map[*Backend]*atomic.Int64{}
	for _, b := range p.Backends() {
		held[b] = new(atomic.Int64)
	}
	var (
		wg      sync.WaitGroup
		bad     atomic.Value
		waited  atomic.Int64
		iters   = 3000
		workers = 16
	)
	if testing.Short() {
		iters = 500
	}
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				var b *Backend
				switch (g + i) % 4 {
				case 0:
					b = p.Pick(nil)
				case 1:
					b = s.PickHash(p, []byte{byte(i)}, nil)
				case 2:
					if c := p.Backends()[i%3]; s.Pin(c, nil) {
						b = c
					}
				default:
					var (
						w   time.Duration
						err error
					)
					b, w, err = p.PickWait(nil, i%2 == 0, time.Hour)
					if err != nil {
						bad.Store(err.Error())
						return
					}
					if w > 0 {
						waited.Add(1)
					}
				}
				if b == nil {
					runtime.Gosched()
					continue
				}
				if n := held[b].Add(1); n > int64(b.MaxConns()) || b.Active() > int64(b.MaxConns()) {
					bad.Store(fmt.Sprintf("%v holds %d (active %d), max-conns %d", b, n, b.Active(), b.MaxConns()))
				}
				runtime.Gosched()
				held[b].Add(-1)
				if i%5 == 0 {
					b.TunnelStarted()
					b.TunnelEnded()
				} else {
					b.Release()
				}
			}
		}()
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	for _, b := range p.Backends() {
		if b.Active() != 0 || b.Underflows() != 0 {
			t.Errorf("%v: active %d, underflows %d at the end", b, b.Active(), b.Underflows())
		}
	}
	if p.QueueLen() != 0 {
		t.Errorf("queue %d at the end", p.QueueLen())
	}
	t.Logf("queue stats %+v", p.QueueStats())
}

// Upgrades are paced per backend by a token bucket; a timer on the clock
// serves the queue when a token refills. Plain requests are not paced.
func TestHandshakePacing(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{MaxHandshakesPerBackend: 10}, "a:1")
	p := bl.Pool("")
	a := p.Backends()[0]
	b, w, err := p.PickWait(nil, true, time.Minute)
	if b != a || w != 0 || err != nil {
		t.Fatalf("first upgrade: %v %v %v", b, w, err)
	}
	b.Release()
	// The bucket (burst 1) is empty now: plain requests still go at once.
	for range 100 {
		b, w, err := p.PickWait(nil, false, time.Minute)
		if b == nil || w != 0 || err != nil {
			t.Fatalf("plain request paced: %v %v %v", b, w, err)
		}
		b.Release()
	}
	const n = 25
	ch := make(chan result, n)
	for i := range n {
		goWait(p, i, nil, true, time.Minute, ch)
		waitQueued(t, p, i+1)
	}
	for i := range n {
		clk.Advance(100 * time.Millisecond)
		r := <-ch
		if r.id != i || r.err != nil || r.waited != time.Duration(i+1)*100*time.Millisecond {
			t.Fatalf("upgrade %d: %+v, want waiter %d after %v", i, r, i, time.Duration(i+1)*100*time.Millisecond)
		}
		select {
		case r := <-ch:
			t.Fatalf("two upgrades within one token interval: %+v", r)
		default:
		}
		r.b.Release()
	}
	// Not spinning: with the queue empty, no timer is left pending.
	clk.mu.Lock()
	pending := 0
	for _, tm := range clk.timers {
		if !tm.done {
			pending++
		}
	}
	clk.mu.Unlock()
	if pending > 3 { // the drain sweep, plus stopped waiter timers not yet pruned
		t.Errorf("%d timers pending", pending)
	}
}

// Pacing is per backend, with a burst, and a paced backend counts as full
// for upgrades only: another backend with a token takes them at once.
func TestHandshakePacingBurstAndSpread(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{MaxHandshakesPerBackend: 100}, "a:1", "b:1")
	p := bl.Pool("")
	got := map[string]int{}
	for range 20 { // burst 10 each
		b, w, err := p.PickWait(nil, true, time.Minute)
		if err != nil || w != 0 {
			t.Fatalf("%v %v", w, err)
		}
		got[b.Addr()]++
	}
	if got["a:1"] != 10 || got["b:1"] != 10 {
		t.Fatalf("burst: %v, want 10 each", got)
	}
	ch := make(chan result, 1)
	goWait(p, 0, nil, true, time.Minute, ch)
	waitQueued(t, p, 1)
	clk.Advance(10 * time.Millisecond)
	if r := <-ch; r.err != nil || r.waited != 10*time.Millisecond {
		t.Fatalf("%+v", r)
	}
	// Over 10 s, 2 backends at 100/s take 2,000 (+ a burst each at most).
	served := 0
	for range 1000 {
		clk.Advance(10 * time.Millisecond)
		for {
			b, _, err := p.PickWait(nil, true, 0)
			if err != nil {
				break
			}
			served++
			b.Release()
		}
	}
	// Over the whole 10.01 s: at most rate × time + burst per backend.
	if total := served + 21; total > 2*(100*10.01+10) || total < 2*100*10 {
		t.Errorf("%d upgrades in 10.01 s at 2 × 100/s, burst 10", total)
	}
	if _, err := New(Config{Backends: mustBackends(t, "a:1"), MaxHandshakesPerBackend: -1}); err == nil {
		t.Error("negative pacing rate accepted")
	}
}

// A waiter whose skip excludes the freed backend lets the next one take it.
func TestQueueSkipWaiter(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1,max-conns=1", "b:1,max-conns=1")
	p := bl.Pool("")
	bs := byAddr(p)
	a, b := bs["a:1"], bs["b:1"]
	a.acquire()
	b.acquire()
	ch := make(chan result, 2)
	goWait(p, 0, func(x *Backend) bool { return x == a }, false, time.Minute, ch) // wants b only
	waitQueued(t, p, 1)
	goWait(p, 1, nil, false, time.Minute, ch)
	waitQueued(t, p, 2)
	a.Release()
	if r := <-ch; r.id != 1 || r.b != a {
		t.Fatalf("got %+v, want waiter 1 on a", r)
	}
	b.Release()
	if r := <-ch; r.id != 0 || r.b != b {
		t.Fatalf("got %+v, want waiter 0 on b", r)
	}
}

// A backend coming back up serves the queue; every backend going down
// answers the waiters ErrNoBackend then, not at their timeout.
func TestQueueHealthChanges(t *testing.T) {
	var pt *probeTable
	cfg := Config{Health: HealthConfig{Interval: time.Second, Rise: 2, Fall: 2}}
	cfg.Health.Probe = func(ctx context.Context, b *Backend) error { return pt.probe(ctx, b) }
	bl, clk, _ := testBalancer(t, cfg, "a:1,max-conns=1", "b:1,max-conns=1")
	pt = newProbeTable(clk)
	bl.Start()
	p := bl.Pool("")
	a, b := bl.Backend("", "a:1"), bl.Backend("", "b:1")
	const step, limit = 10 * time.Millisecond, time.Minute

	pt.set("b:1", errors.New("refused"))
	stepUntil(t, clk, step, limit, "b down", func() bool { return !b.Healthy() })
	if p.Pick(nil) != a {
		t.Fatal("a not picked")
	}
	ch := make(chan result, 2)
	goWait(p, 0, nil, false, time.Hour, ch)
	waitQueued(t, p, 1)
	pt.set("b:1", nil)
	stepUntil(t, clk, step, limit, "b up", func() bool { return b.Healthy() })
	if r := <-ch; r.b != b || r.err != nil {
		t.Fatalf("waiter after b came up: %+v", r)
	}

	goWait(p, 1, nil, false, time.Hour, ch)
	waitQueued(t, p, 1)
	pt.set("a:1", errors.New("refused"))
	pt.set("b:1", errors.New("refused"))
	stepUntil(t, clk, step, limit, "both down", func() bool { return !a.Healthy() && !b.Healthy() })
	if r := <-ch; !errors.Is(r.err, ErrNoBackend) || r.waited > limit {
		t.Fatalf("waiter after every backend went down: %+v", r)
	}
}

// A reload that caps an uncapped pool (and uncaps it again) switches the
// pool's scan: the cap holds from the reload on.
func TestReloadCapsUncappedPool(t *testing.T) {
	bl, _, _ := testBalancer(t, Config{}, "a:1", "b:1")
	p := bl.Pool("")
	for range 10 {
		p.Pick(nil)
	}
	if err := bl.Update(mustBackends(t, "a:1,max-conns=6", "b:1,max-conns=6")); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p.Pick(nil) != nil {
		n++
	}
	if n != 2 {
		t.Fatalf("%d picks after capping 10 active at 2 × 6, want 2", n)
	}
	if _, _, err := p.PickWait(nil, false, 0); !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("PickWait on the capped pool: %v", err)
	}
	if err := bl.Update(mustBackends(t, "a:1", "b:1")); err != nil {
		t.Fatal(err)
	}
	if p.Pick(nil) == nil {
		t.Fatal("no pick after the caps were removed")
	}
}

// The end of a passive ejection (a time, not an event) wakes the queue.
func TestQueueEjectionEnds(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Health: HealthConfig{FailTimeout: 10 * time.Second}}, "a:1,max-conns=1", "b:1")
	p := bl.Pool("")
	a, b := bl.Backend("", "a:1"), bl.Backend("", "b:1")
	for range 3 {
		b.ReportFailure()
	}
	if p.Pick(nil) != a {
		t.Fatal("a not picked")
	}
	ch := make(chan result, 1)
	goWait(p, 0, nil, false, time.Hour, ch)
	waitQueued(t, p, 1)
	clk.Advance(10*time.Second - time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("served while b is ejected: %+v", r)
	default:
	}
	clk.Advance(time.Millisecond)
	if r := <-ch; r.b != b || r.waited != 10*time.Second {
		t.Fatalf("after the ejection ended: %+v", r)
	}
}

// A sticky upgrade pinned to its node is paced like a picked one.
func TestPinUpgradePaced(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{MaxHandshakesPerBackend: 10}, "a:1", "b:1")
	s, err := NewSticky(StickyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a := bl.Backend("", "a:1")
	if !s.PinUpgrade(a, nil) {
		t.Fatal("first pinned upgrade refused")
	}
	if s.PinUpgrade(a, nil) {
		t.Fatal("second pinned upgrade within 100 ms taken")
	}
	if !s.Pin(a, nil) {
		t.Fatal("plain Pin paced")
	}
	if a.Active() != 2 {
		t.Fatalf("active %d, want 2", a.Active())
	}
	ch := make(chan result, 1)
	goWait(bl.Pool(""), 0, func(x *Backend) bool { return x != a }, true, time.Minute, ch)
	waitQueued(t, bl.Pool(""), 1)
	clk.Advance(100 * time.Millisecond)
	if r := <-ch; r.b != a || r.waited != 100*time.Millisecond {
		t.Fatalf("waiting for a's next token: %+v", r)
	}
	// Without pacing, PinUpgrade is Pin.
	bl2, _, _ := testBalancer(t, Config{}, "a:1")
	a2 := bl2.Backend("", "a:1")
	if !s.PinUpgrade(a2, nil) || !s.PinUpgrade(a2, nil) {
		t.Fatal("PinUpgrade without pacing refused")
	}
}

// answerFunc is a QueueWaiter.
type answerFunc func(*Backend, time.Duration, error)

func (f answerFunc) QueueAnswer(b *Backend, w time.Duration, err error) { f(b, w, err) }

// PickAsync answers at once when PickWait would, and otherwise queues in
// the same FIFO as PickWait, calling done with its answer.
func TestPickAsync(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1,max-conns=1")
	p := bl.Pool("")
	never := answerFunc(func(*Backend, time.Duration, error) { t.Error("done called for an answer given at once") })
	a, err, tk := p.PickAsync(nil, false, time.Minute, never)
	if a == nil || err != nil || tk != nil {
		t.Fatalf("PickAsync on a free pool = %v, %v, %v", a, err, tk)
	}
	if b, err, tk := p.PickAsync(nil, false, 0, never); b != nil || !errors.Is(err, ErrQueueTimeout) || tk != nil {
		t.Fatalf("PickAsync with timeout 0 on a full pool = %v, %v, %v", b, err, tk)
	}
	ch := make(chan result, 4)
	async := func(id int, timeout time.Duration) *Ticket {
		b, err, tk := p.PickAsync(nil, false, timeout, answerFunc(func(b *Backend, w time.Duration, err error) { ch <- result{id, b, w, err} }))
		if b != nil || err != nil || tk == nil {
			t.Fatalf("PickAsync on a full pool = %v, %v, %v; want a ticket", b, err, tk)
		}
		return tk
	}
	async(0, time.Minute)
	goWait(p, 1, nil, false, time.Minute, ch) // a blocking waiter between two async ones
	waitQueued(t, p, 2)
	async(2, 10*time.Second)
	clk.Advance(2 * time.Second)
	a.Release()
	if r := <-ch; r.id != 0 || r.b != a || r.err != nil || r.waited != 2*time.Second {
		t.Fatalf("first answer %+v, want async waiter 0 served after 2s", r)
	}
	a.Release()
	if r := <-ch; r.id != 1 || r.b != a {
		t.Fatalf("second answer %+v, want the blocking waiter", r)
	}
	clk.Advance(8 * time.Second)
	if r := <-ch; r.id != 2 || !errors.Is(r.err, ErrQueueTimeout) || r.waited != 10*time.Second {
		t.Fatalf("third answer %+v, want async waiter 2 timed out", r)
	}
	if st := p.QueueStats(); st.Queued != 3 || st.Served != 2 || st.Timeouts != 2 || p.QueueLen() != 0 {
		t.Errorf("stats %+v, queue %d", st, p.QueueLen())
	}
}

// A withdrawn waiter leaves the queue at once, is never answered, and a
// freed slot goes to the next waiter; one already answered cannot be
// withdrawn.
func TestQueueWithdraw(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1,max-conns=1")
	p := bl.Pool("")
	a := p.Pick(nil)
	ch := make(chan result, 4)
	var tks []*Ticket
	for i := range 3 {
		_, _, tk := p.PickAsync(nil, false, time.Minute, answerFunc(func(b *Backend, w time.Duration, err error) { ch <- result{i, b, w, err} }))
		tks = append(tks, tk)
	}
	if !tks[0].Withdraw() || !tks[1].Withdraw() {
		t.Fatal("Withdraw of a queued waiter = false")
	}
	if tks[0].Withdraw() {
		t.Error("a second Withdraw = true")
	}
	if n := p.QueueLen(); n != 1 {
		t.Fatalf("queue %d after two withdrawals, want 1", n)
	}
	a.Release()
	if r := <-ch; r.id != 2 || r.b != a {
		t.Fatalf("answer %+v, want waiter 2 (0 and 1 withdrawn)", r)
	}
	if tks[2].Withdraw() {
		t.Error("Withdraw of a served waiter = true")
	}
	if a.Active() != 1 {
		t.Errorf("active %d, want 1 (waiter 2's)", a.Active())
	}
	// A withdrawn waiter's timer is stopped: no answer when it would fire.
	_, _, tk := p.PickAsync(nil, false, time.Second, answerFunc(func(b *Backend, w time.Duration, err error) { ch <- result{3, b, w, err} }))
	tk.Withdraw()
	clk.Advance(2 * time.Second)
	select {
	case r := <-ch:
		t.Fatalf("a withdrawn waiter was answered: %+v", r)
	default:
	}
	if st := p.QueueStats(); st.Withdrawn != 3 || st.Served != 1 || st.Timeouts != 0 || p.QueueLen() != 0 {
		t.Errorf("stats %+v, queue %d", st, p.QueueLen())
	}
}
