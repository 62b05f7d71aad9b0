package balancer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// logSink collects Logf lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// count returns how many lines contain all of subs.
func (l *logSink) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// probeTable is an active check whose result per address the test sets.
type probeTable struct {
	mu   sync.Mutex
	fail map[string]error
	at   map[string][]time.Time // when each address was probed
	clk  Clock
}

func newProbeTable(clk Clock) *probeTable {
	return &probeTable{fail: map[string]error{}, at: map[string][]time.Time{}, clk: clk}
}

func (p *probeTable) probe(ctx context.Context, b *Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.at[b.Addr()] = append(p.at[b.Addr()], p.clk.Now())
	return p.fail[b.Addr()]
}

func (p *probeTable) set(addr string, err error) {
	p.mu.Lock()
	p.fail[addr] = err
	p.mu.Unlock()
}

func (p *probeTable) probes(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.at[addr])
}

// testBalancer builds a Balancer on a fake clock with a log sink.
func testBalancer(t *testing.T, cfg Config, specs ...string) (*Balancer, *fakeClock, *logSink) {
	t.Helper()
	clk, logs := newFakeClock(), &logSink{}
	cfg.Clock, cfg.Logf = clk, logs.logf
	cfg.Backends = append(cfg.Backends, mustBackends(t, specs...)...)
	bl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bl.Close)
	return bl, clk, logs
}

// stepUntil advances clk by step until cond holds; it fails after limit.
func stepUntil(t *testing.T, clk *fakeClock, step, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for d := time.Duration(0); !cond(); d += step {
		if d > limit {
			t.Fatalf("%s: not after %v of fake time", what, limit)
		}
		clk.Advance(step)
	}
}

// picksOf picks n times from p (releasing each) and counts by address.
func picksOf(p *Pool, n int) map[string]int {
	m := map[string]int{}
	for range n {
		if b := p.Pick(nil); b != nil {
			m[b.Addr()]++
			b.Release()
		} else {
			m["<nil>"]++
		}
	}
	return m
}

func TestActiveChecksRiseFall(t *testing.T) {
	var pt *probeTable
	cfg := Config{Health: HealthConfig{Interval: time.Second, Rise: 2, Fall: 3}, SlowStart: 10 * time.Second}
	cfg.Health.Probe = func(ctx context.Context, b *Backend) error { return pt.probe(ctx, b) }
	bl, clk, logs := testBalancer(t, cfg, "a:1", "b:1")
	pt = newProbeTable(clk)
	bl.Start()
	a, b := bl.Backend("", "a:1"), bl.Backend("", "b:1")
	pool := bl.Pool("")

	pt.set("a:1", errors.New("status 500"))
	const step, limit = 10 * time.Millisecond, time.Minute
	stepUntil(t, clk, step, limit, "2 failed checks", func() bool { return pt.probes("a:1") >= 2 })
	if !a.Healthy() || a.State() != "healthy" {
		t.Fatalf("after 2 failed checks (fall 3): Healthy %v, state %s; want still healthy", a.Healthy(), a.State())
	}
	stepUntil(t, clk, step, limit, "3 failed checks", func() bool { return pt.probes("a:1") >= 3 })
	if a.Healthy() || a.State() != "down" {
		t.Fatalf("after 3 failed checks: Healthy %v, state %s; want down", a.Healthy(), a.State())
	}
	if got := picksOf(pool, 100); got["b:1"] != 100 {
		t.Fatalf("picks with a down: %v, want all on b", got)
	}
	stepUntil(t, clk, step, limit, "6 failed checks", func() bool { return pt.probes("a:1") >= 6 })
	if n := logs.count("a:1", "down after"); n != 1 {
		t.Errorf("%d 'down' log lines for a, want exactly 1 (logged once per change)", n)
	}

	pt.set("a:1", nil)
	n := pt.probes("a:1")
	stepUntil(t, clk, step, limit, "1 passing check", func() bool { return pt.probes("a:1") >= n+1 })
	if a.Healthy() {
		t.Fatalf("up after 1 passing check, want rise 2")
	}
	stepUntil(t, clk, step, limit, "2 passing checks", func() bool { return pt.probes("a:1") >= n+2 })
	if !a.Healthy() || a.State() != "slow-starting" {
		t.Fatalf("after 2 passing checks: Healthy %v, state %s; want up and slow-starting", a.Healthy(), a.State())
	}
	stepUntil(t, clk, step, limit, "4 passing checks", func() bool { return pt.probes("a:1") >= n+4 })
	if n := logs.count("a:1", "up after"); n != 1 {
		t.Errorf("%d 'up' log lines for a, want exactly 1", n)
	}
	if logs.count("b:1", "down") != 0 || !b.Healthy() {
		t.Errorf("b changed state; its checks all passed")
	}
	// Status carries the last check.
	for _, ps := range bl.Status() {
		for _, st := range ps.Backends {
			if st.LastCheck == nil || st.Checks == 0 {
				t.Errorf("%s: no last check in status: %+v", st.Addr, st)
			}
		}
	}
}

func TestActiveChecksJitter(t *testing.T) {
	var pt *probeTable
	cfg := Config{Health: HealthConfig{Interval: 2 * time.Second}}
	cfg.Health.Probe = func(ctx context.Context, b *Backend) error { return pt.probe(ctx, b) }
	var specs []string
	for i := range 50 {
		specs = append(specs, fmt.Sprintf("10.0.0.%d:80", i+1))
	}
	bl, clk, _ := testBalancer(t, cfg, specs...)
	pt = newProbeTable(clk)
	start := clk.Now()
	bl.Start()
	for range 1000 { // 10 s in 10 ms steps
		clk.Advance(10 * time.Millisecond)
	}
	firsts := map[time.Duration]bool{}
	for _, s := range specs {
		pt.mu.Lock()
		at := pt.at[s]
		pt.mu.Unlock()
		if len(at) < 4 {
			t.Fatalf("%s probed %d times in 10 s with a 2 s interval", s, len(at))
		}
		if first := at[0].Sub(start); first > 2*time.Second {
			t.Errorf("%s: first check after %v, want within one interval", s, first)
		}
		firsts[at[0].Sub(start).Truncate(100*time.Millisecond)] = true
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 1800*time.Millisecond || gap > 2200*time.Millisecond+10*time.Millisecond {
				t.Errorf("%s: %v between checks, want 2 s ±10%%", s, gap)
			}
		}
	}
	// 50 backends over 20 buckets of 100 ms: synchronised checks would fill one.
	if len(firsts) < 12 {
		t.Errorf("first checks of 50 backends fall in %d of 20 100-ms buckets; want them spread", len(firsts))
	}
}

func TestPassiveEjection(t *testing.T) {
	cfg := Config{Health: HealthConfig{MaxFails: 3, FailTimeout: 10 * time.Second}}
	bl, clk, logs := testBalancer(t, cfg, "a:1", "b:1")
	a := bl.Backend("", "a:1")
	pool := bl.Pool("")

	// Failures spread wider than --fail-timeout never eject.
	for range 5 {
		a.ReportFailure()
		clk.Advance(6 * time.Second)
	}
	if !a.Healthy() {
		t.Fatalf("ejected by failures 6 s apart (3 within 10 s needed)")
	}
	clk.Advance(11 * time.Second)
	a.ReportFailure()
	clk.Advance(time.Second)
	a.ReportFailure()
	if !a.Healthy() {
		t.Fatalf("ejected after 2 close failures, want 3")
	}
	a.ReportFailure()
	if a.Healthy() || a.State() != "ejected" {
		t.Fatalf("after 3 failures within 10 s: Healthy %v state %s, want ejected", a.Healthy(), a.State())
	}
	if got := picksOf(pool, 50); got["b:1"] != 50 {
		t.Fatalf("picks with a ejected: %v", got)
	}
	clk.Advance(9900 * time.Millisecond)
	if a.Healthy() {
		t.Fatalf("back before --fail-timeout")
	}
	clk.Advance(200 * time.Millisecond)
	if got := picksOf(pool, 200); got["a:1"] < 50 {
		t.Fatalf("picks after --fail-timeout: %v, want a back", got)
	}
	if n := logs.count("a:1", "ejected"); n != 1 {
		t.Errorf("%d 'ejected' lines, want 1", n)
	}
	if n := logs.count("a:1", "back after --fail-timeout"); n != 1 {
		t.Errorf("%d 'back' lines, want 1", n)
	}
	if f := a.Failures(); f != 8 {
		t.Errorf("Failures = %d, want 8", f)
	}

	// Every backend ejected: Pick gives nil (the proxy's 503).
	b := bl.Backend("", "b:1")
	for range 3 {
		a.ReportFailure()
		b.ReportFailure()
	}
	if p := pool.Pick(nil); p != nil {
		t.Fatalf("Pick = %v with every backend ejected, want nil", p)
	}
	if pool.Healthy() != 0 {
		t.Errorf("Healthy() = %d, want 0", pool.Healthy())
	}

	// Passive ejection off.
	bl2, _, _ := testBalancer(t, Config{Health: HealthConfig{MaxFails: -1}}, "a:1")
	a2 := bl2.Backend("", "a:1")
	for range 10 {
		a2.ReportFailure()
	}
	if !a2.Healthy() || a2.Failures() != 10 {
		t.Errorf("MaxFails -1: Healthy %v Failures %d, want true 10", a2.Healthy(), a2.Failures())
	}
}

func TestPassingCheckEndsEjection(t *testing.T) {
	var pt *probeTable
	cfg := Config{Health: HealthConfig{Interval: time.Second, MaxFails: 1, FailTimeout: time.Hour}}
	cfg.Health.Probe = func(ctx context.Context, b *Backend) error { return pt.probe(ctx, b) }
	bl, clk, logs := testBalancer(t, cfg, "a:1")
	pt = newProbeTable(clk)
	a := bl.Backend("", "a:1")
	a.ReportFailure()
	if a.Healthy() {
		t.Fatal("not ejected")
	}
	bl.Start()
	stepUntil(t, clk, 10*time.Millisecond, 3*time.Second, "a passing check", func() bool { return pt.probes("a:1") >= 1 })
	if !a.Healthy() {
		t.Fatalf("still ejected (for an hour) after a passing active check")
	}
	if logs.count("a:1", "passing health check") != 1 {
		t.Errorf("return not logged once: %q", logs.lines)
	}
}

func TestSlowStartRamp(t *testing.T) {
	if got := slowWeight(16<<weightShift, 0, 100); got != 1<<weightShift {
		t.Errorf("slowWeight at 0 = %d, want w/16", got)
	}
	if got, want := slowWeight(16<<weightShift, 50, 100), int64(8.5*(1<<weightShift)); got != want {
		t.Errorf("slowWeight at half = %d, want %d", got, want)
	}
	if got := slowWeight(1, 0, 100); got != 1 {
		t.Errorf("slowWeight never below 1, got %d", got)
	}

	for _, policy := range []Policy{LeastConn, RoundRobin} {
		t.Run(policy.String(), func(t *testing.T) {
			for _, slow := range []time.Duration{10 * time.Second, 0} {
				bl, clk, _ := testBalancer(t, Config{Policy: policy, SlowStart: slow}, "a:1", "b:1")
				pool := bl.Pool("")
				// a and b carry 1,000 tunnels each when c joins.
				for _, b := range pool.Backends() {
					for range 1000 {
						b.acquire()
					}
				}
				if err := bl.Update(mustBackends(t, "a:1", "b:1", "c:1")); err != nil {
					t.Fatal(err)
				}
				c := bl.Backend("", "c:1")
				held := func(n int) int { // picks held, as new tunnels
					before := c.Active()
					for range n {
						pool.Pick(nil)
					}
					return int(c.Active() - before)
				}
				got0 := held(200)
				clk.Advance(slow / 2)
				got5 := held(200)
				t.Logf("slow start %v: c got %d of 200 at once, %d of 200 at half time", slow, got0, got5)
				switch {
				case slow == 0 && policy == LeastConn:
					if got0 != 200 {
						t.Errorf("no slow start: c got %d of 200, want all (least-conn floods the empty backend)", got0)
					}
				case slow == 0:
					if got0 < 60 || got0 > 75 {
						t.Errorf("no slow start, round robin: c got %d of 200, want a third", got0)
					}
				case policy == LeastConn:
					// Effective weight 1/16: c fills to ~1001/16 ≈ 62; half way (8.5/16) ~ 530.
					if got0 < 50 || got0 > 80 {
						t.Errorf("slow start: c got %d of 200 at once, want ~62 (weight 1/16)", got0)
					}
					if got5 < 150 {
						t.Errorf("slow start half way: c got %d of 200, want most (weight 8.5/16 < its share)", got5)
					}
				default:
					if got0 < 1 || got0 > 12 {
						t.Errorf("slow start, round robin: c got %d of 200 at once, want ~6 (1/16 vs 1+1)", got0)
					}
					if got5 < 32 || got5 > 52 {
						t.Errorf("slow start half way, round robin: c got %d of 200, want ~42 (share 0.53/2.53)", got5)
					}
				}
				if slow > 0 {
					if c.State() != "slow-starting" {
						t.Errorf("state %s half way, want slow-starting", c.State())
					}
					clk.Advance(slow)
					if c.State() != "healthy" {
						t.Errorf("state %s after the ramp, want healthy", c.State())
					}
				}
			}
		})
	}
}
