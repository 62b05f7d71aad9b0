package balancer

import (
	"errors"
	"math"
	"testing"
	"time"
)

// fleet simulates the loop and the tunnel engine around a Rebalancer:
// tunnels opened by picks, closes that take a while to finish, and clients
// that reconnect (through Pick) when closed.
type fleet struct {
	t       *testing.T
	p       *Pool
	clk     *fakeClock
	closing map[*Backend][]time.Time // when each started close finishes
	closeIn time.Duration            // how long a close takes
	moves   []timedMove              // every Move Plan returned
	noBack  bool                     // closed clients do not reconnect
	back    func() *Backend          // where a closed client reconnects; nil: Pick (least connections)
}

type timedMove struct {
	at time.Time
	Move
}

func newFleet(t *testing.T, p *Pool, clk *fakeClock) *fleet {
	return &fleet{t: t, p: p, clk: clk, closing: map[*Backend][]time.Time{}, closeIn: 200 * time.Millisecond}
}

// open gives b n live tunnels.
func openTunnels(b *Backend, n int) {
	for range n {
		b.acquire()
		b.TunnelStarted()
	}
}

// planSettled plans once to see the imbalance, lets RebalanceSettle pass
// on the fake clock, and plans again: the standing policy's first moves.
func planSettled(rb *Rebalancer, clk *fakeClock) []Move {
	rb.Plan(clk.Now(), nil)
	clk.Advance(RebalanceSettle)
	return rb.Plan(clk.Now(), nil)
}

// closeTunnels ends n of b's tunnels (their clients not back yet).
func closeTunnels(b *Backend, n int) {
	for range n {
		b.TunnelEnded()
	}
}

func (f *fleet) leaving(b *Backend) int64 { return int64(len(f.closing[b])) }

// step plans once at the current fake time, starts the closes, advances
// the clock by d and finishes the closes due (their clients reconnect).
func (f *fleet) step(d time.Duration) []Move {
	now := f.clk.Now()
	ms := f.p.Rebalancer().Plan(now, f.leaving)
	for _, m := range ms {
		if m.N < 1 {
			f.t.Fatalf("Move with N=%d", m.N)
		}
		if int64(m.N) > m.Backend.Tunnels()-f.leaving(m.Backend) {
			f.t.Fatalf("Move of %d on %v, which has only %d tunnels not already closing", m.N, m.Backend, m.Backend.Tunnels()-f.leaving(m.Backend))
		}
		for range m.N {
			f.closing[m.Backend] = append(f.closing[m.Backend], now.Add(f.closeIn))
		}
		f.moves = append(f.moves, timedMove{now, m})
	}
	f.clk.Advance(d)
	now = f.clk.Now()
	for b, ends := range f.closing {
		n := 0
		for len(ends) > 0 && !ends[0].After(now) {
			ends = ends[1:]
			n++
		}
		f.closing[b] = ends
		for range n {
			b.TunnelEnded()
			switch {
			case f.noBack:
			case f.back != nil:
				nb := f.back()
				nb.acquire()
				nb.TunnelStarted()
			default:
				nb := f.p.Pick(nil)
				nb.TunnelStarted()
			}
		}
	}
	return ms
}

// run steps every 100 ms for d.
func (f *fleet) run(d time.Duration) {
	for range int(d / (100 * time.Millisecond)) {
		f.step(100 * time.Millisecond)
	}
}

func (f *fleet) moved() int {
	n := 0
	for _, m := range f.moves {
		n += m.N
	}
	return n
}

// checkRate fails when some window of one second holds more than
// rate + burst moves.
func (f *fleet) checkRate(rate float64) {
	f.t.Helper()
	limit := int(rate + burst(rate))
	for i, m := range f.moves {
		n := 0
		for _, m2 := range f.moves[i:] {
			if m2.at.Sub(m.at) < time.Second {
				n += m2.N
			}
		}
		if n > limit {
			f.t.Fatalf("%d moves within 1 s from %v, want at most %d (rate %g + burst)", n, m.at, limit, rate)
		}
	}
}

func tunnelsOf(p *Pool) []int64 {
	var out []int64
	for _, b := range p.Backends() {
		out = append(out, b.Tunnels())
	}
	return out
}

// A scale-out from 2 × 1500 to three nodes ends at 1000 each (not at the
// tolerance's 1100/1100/800), at the configured rate, closing only the
// excess.
func TestRebalanceScaleOut(t *testing.T) {
	bl, clk, logs := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1500)
	openTunnels(bs["b:1"], 1500)
	f := newFleet(t, p, clk)
	f.run(2 * time.Second)
	if len(f.moves) != 0 {
		t.Fatalf("balanced pool: %d moves", len(f.moves))
	}
	if err := bl.Update(mustBackends(t, "a:1", "b:1", "c:1")); err != nil {
		t.Fatal(err)
	}
	f.run(RebalanceSettle) // the imbalance must last before a pass starts
	if len(f.moves) != 0 {
		t.Fatalf("%d moves before the imbalance had lasted RebalanceSettle", len(f.moves))
	}
	f.step(100 * time.Millisecond)
	start := p.Rebalancer().PassStart()
	if start.IsZero() {
		t.Fatal("no pass started after the scale-out")
	}
	f.run(15 * time.Second)
	got := tunnelsOf(p)
	for i, n := range got {
		if n < 1000-4 || n > 1000+2 {
			t.Errorf("backend %d: %d tunnels, want 1000 (+2, -4) (all: %v)", i, n, got)
		}
	}
	if n := f.moved(); n > 1000 {
		t.Errorf("%d closes, want at most the 1000 excess", n)
	}
	f.checkRate(100)
	if !p.Rebalancer().PassStart().IsZero() {
		t.Error("pass still running when balanced")
	}
	if logs.count("rebalancing pass ended") != 1 {
		t.Errorf("want one pass end logged, got %v", logs.lines)
	}
	if bs["a:1"].Moved()+bs["b:1"].Moved() != uint64(f.moved()) || p.Lookup("c:1").Moved() != 0 {
		t.Errorf("Moved: a %d b %d c %d, want the %d moves on a and b", bs["a:1"].Moved(), bs["b:1"].Moved(), p.Lookup("c:1").Moved(), f.moved())
	}
	// Closes were spread over a and b alike.
	if d := int64(bs["a:1"].Moved()) - int64(bs["b:1"].Moved()); d < -2 || d > 2 {
		t.Errorf("uneven spread: a %d, b %d", bs["a:1"].Moved(), bs["b:1"].Moved())
	}
}

// With closes that never finish, Plan asks for exactly the excess, once.
func TestRebalanceLeavingNeverClosesTwice(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 1000}, "a:1", "b:1", "c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1500)
	openTunnels(bs["b:1"], 1500)
	f := newFleet(t, p, clk)
	f.closeIn = time.Hour
	f.run(10 * time.Second)
	if n := f.moved(); n != 1000 {
		t.Errorf("%d closes with none finished, want exactly the excess 1000", n)
	}
	if a, b := bs["a:1"].Moved(), bs["b:1"].Moved(); a != 500 || b != 500 {
		t.Errorf("Moved a=%d b=%d, want 500 each", a, b)
	}
	f.checkRate(1000)
}

// Plan called at irregular intervals never exceeds rate per second plus
// the burst, including after a long gap.
func TestRebalanceRateLimit(t *testing.T) {
	for _, rate := range []float64{0.5, 3, 50, 400} {
		bl, clk, _ := testBalancer(t, Config{Rebalance: rate}, "a:1", "b:1")
		p := bl.Pool("")
		bs := byAddr(p)
		openTunnels(bs["a:1"], 20000)
		f := newFleet(t, p, clk)
		f.closeIn = time.Hour
		gaps := []time.Duration{7, 230, 100, 1, 3000, 55, 100, 100, 999, 13}
		for i := range 400 {
			f.step(gaps[i%len(gaps)] * time.Millisecond)
		}
		f.checkRate(rate)
		if f.moved() == 0 {
			t.Errorf("rate %g: no moves", rate)
		}
		// Over the whole run the rate holds too.
		el := clk.Now().Sub(f.moves[0].at).Seconds()
		if float64(f.moved()) > rate*el+burst(rate)+1 {
			t.Errorf("rate %g: %d moves in %.1f s", rate, f.moved(), el)
		}
	}
}

// The tolerance decides when a pass starts.
func TestRebalanceToleranceTrigger(t *testing.T) {
	cases := []struct {
		tol     float64
		a, b, c int
		want    bool
	}{
		{0, 1100, 1100, 800, true},  // default 10%: 1100 is not above 1100, but 800 is 20% below
		{0, 1100, 1000, 900, false}, // nobody beyond 10% either way
		{0, 1120, 1080, 800, true},
		{0.2, 1190, 1010, 800, false},
		{0.2, 1210, 990, 800, true},
		{0, 3, 0, 0, false}, // within the slack of a few tunnels
		{0, 5, 0, 0, true},
	}
	for _, c := range cases {
		bl, clk, _ := testBalancer(t, Config{Rebalance: 100, RebalanceTolerance: c.tol}, "a:1", "b:1", "c:1")
		p := bl.Pool("")
		bs := byAddr(p)
		openTunnels(bs["a:1"], c.a)
		openTunnels(bs["b:1"], c.b)
		openTunnels(bs["c:1"], c.c)
		ms := planSettled(p.Rebalancer(), clk)
		if got := len(ms) > 0; got != c.want {
			t.Errorf("tolerance %g, %d/%d/%d: moves %v, want moves: %v", c.tol, c.a, c.b, c.c, ms, c.want)
		}
	}
}

// Fair shares follow effective weights.
func TestRebalanceWeighted(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 10000}, "a:1", "b:1", "c:1,weight=2")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1000)
	openTunnels(bs["b:1"], 1000)
	rb := p.Rebalancer()
	want := map[string]float64{"a:1": 500, "b:1": 500, "c:1": 1000}
	for _, s := range rb.Status() {
		if s.Fair != want[s.Backend.Addr()] || rb.FairShare(s.Backend) != s.Fair {
			t.Errorf("%v: fair %g (FairShare %g), want %g", s.Backend, s.Fair, rb.FairShare(s.Backend), want[s.Backend.Addr()])
		}
	}
	f := newFleet(t, p, clk)
	f.run(5 * time.Second)
	if got := tunnelsOf(p); got[0] != 500 || got[1] != 500 || got[2] != 1000 {
		t.Errorf("tunnels %v, want 500/500/1000", got)
	}
}

// Closes of one Plan are spread by excess, largest remainder first.
func TestRebalanceSpread(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1", "c:1", "d:1")
	p := bl.Pool("")
	bs := byAddr(p)
	// total 2000, fair 500: excess 300 on a, 100 on b.
	openTunnels(bs["a:1"], 800)
	openTunnels(bs["b:1"], 600)
	openTunnels(bs["c:1"], 300)
	openTunnels(bs["d:1"], 300)
	ms := planSettled(p.Rebalancer(), clk) // a full burst: 10
	if len(ms) != 2 || ms[0].Backend != bs["a:1"] || ms[0].N != 8 || ms[1].Backend != bs["b:1"] || ms[1].N != 2 {
		t.Fatalf("moves %v, want a:8 b:2", ms)
	}
}

// A backend that becomes unhealthy stops the pass; a new one starts only
// when a later Plan sees an imbalance again.
func TestRebalanceStopsWhenUnhealthy(t *testing.T) {
	bl, clk, logs := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1", "c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1500)
	openTunnels(bs["b:1"], 1500)
	f := newFleet(t, p, clk)
	f.run(RebalanceSettle + time.Second)
	rb := p.Rebalancer()
	if rb.PassStart().IsZero() {
		t.Fatal("no pass")
	}
	before := f.moved()
	for range 3 {
		bs["c:1"].ReportFailure() // ejected: the node that was to take the tunnels
	}
	if ms := f.step(100 * time.Millisecond); ms != nil {
		t.Fatalf("moves %v after a backend became unhealthy", ms)
	}
	if !rb.PassStart().IsZero() {
		t.Fatal("pass still running")
	}
	if _, stopped := rb.Passes(); stopped != 1 || logs.count("is no longer healthy") != 1 {
		t.Errorf("stopped %d, logs %v", stopped, logs.lines)
	}
	// a and b are balanced between themselves: nothing restarts.
	f.run(5 * time.Second)
	if f.moved() != before {
		t.Errorf("%d more moves with a and b balanced", f.moved()-before)
	}
	if started, _ := rb.Passes(); started != 1 {
		t.Errorf("%d passes started, want 1", started)
	}
	// An imbalance seen afterwards starts a new pass: within the cooldown
	// after the stop, not yet; after it, yes.
	openTunnels(bs["a:1"], 1000)
	f.step(100 * time.Millisecond)
	if started, _ := rb.Passes(); started != 1 {
		t.Errorf("%d passes started within the cooldown, want 1", started)
	}
	f.run(RebalanceCooldown)
	if started, _ := rb.Passes(); started != 2 || rb.PassStart().IsZero() {
		t.Errorf("%d passes started after a new imbalance past the cooldown, want 2", started)
	}
}

// After a pass ends, its clients are still reconnecting: the pool looks
// short of them, and the old backends over-loaded. No new pass starts for
// RebalanceCooldown; a one-off pass (StartPass) is not held back.
func TestRebalanceCooldown(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 1000}, "a:1", "b:1", "c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 150)
	openTunnels(bs["b:1"], 150)
	rb := p.Rebalancer()
	// Close what the plans ask for, and let no client come back: the
	// total shrinks, as while clients are away.
	var moved int
	for _, m := range planSettled(rb, clk) { // the first closes, from the burst
		closeTunnels(m.Backend, m.N)
		moved += m.N
	}
	for i := 0; i < 50 && !rb.PassStart().IsZero(); i++ {
		for _, m := range rb.Plan(clk.Now(), nil) {
			closeTunnels(m.Backend, m.N)
			moved += m.N
		}
		clk.Advance(100 * time.Millisecond)
	}
	if !rb.PassStart().IsZero() || moved != 100 {
		t.Fatalf("pass running %v, moved %d; want ended after the excess of 100", !rb.PassStart().IsZero(), moved)
	}
	// a and b hold 100 each, c none: far above fair (67), but the clients
	// are still away. Within the cooldown nothing more is closed.
	for range 50 {
		if ms := rb.Plan(clk.Now(), nil); ms != nil {
			t.Fatalf("moves %v within the cooldown", ms)
		}
		clk.Advance(100 * time.Millisecond)
	}
	// A one-off pass is not held back.
	if err := rb.StartPass(clk.Now(), 100); err != nil || rb.PassStart().IsZero() {
		t.Fatalf("StartPass within the cooldown: %v", err)
	}
}

// A pool with fewer than 2 healthy backends never rebalances.
func TestRebalanceNeedsTwoHealthy(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1000)
	for range 3 {
		bs["b:1"].ReportFailure()
	}
	f := newFleet(t, p, clk)
	f.run(2 * time.Second)
	if f.moved() != 0 {
		t.Errorf("%d moves with one healthy backend", f.moved())
	}
	if err := p.Rebalancer().StartPass(clk.Now(), 50); !errors.Is(err, ErrTooFewHealthy) {
		t.Errorf("StartPass: %v, want ErrTooFewHealthy", err)
	}
	one, clk1, _ := testBalancer(t, Config{Rebalance: 100}, "solo:1")
	openTunnels(one.Pool("").Backends()[0], 10)
	if ms := one.Pool("").Rebalancer().Plan(clk1.Now(), nil); ms != nil {
		t.Errorf("one backend: moves %v", ms)
	}
	// A pass running when the second-last backend leaves ends.
	bl2, clk2, _ := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1")
	p2 := bl2.Pool("")
	openTunnels(p2.Lookup("a:1"), 1000)
	f2 := newFleet(t, p2, clk2)
	f2.closeIn = time.Hour
	f2.run(RebalanceSettle)
	f2.step(100 * time.Millisecond)
	if p2.Rebalancer().PassStart().IsZero() {
		t.Fatal("no pass")
	}
	if err := bl2.Update(mustBackends(t, "a:1")); err != nil {
		t.Fatal(err)
	}
	if ms := f2.step(100 * time.Millisecond); ms != nil || !p2.Rebalancer().PassStart().IsZero() {
		t.Errorf("after the reload to one backend: moves %v, pass %v", ms, p2.Rebalancer().PassStart())
	}
}

// StartPass runs one pass with the standing policy off; it ends like any
// pass, and nothing starts on its own afterwards.
func TestRebalanceOneOffPass(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 900)
	openTunnels(bs["b:1"], 100)
	rb := p.Rebalancer()
	f := newFleet(t, p, clk)
	f.run(2 * time.Second)
	if f.moved() != 0 {
		t.Fatalf("standing policy off: %d moves", f.moved())
	}
	if err := rb.StartPass(clk.Now(), 0); err == nil {
		t.Error("StartPass without any rate: no error")
	}
	start := clk.Now()
	if err := rb.StartPass(start, 40); err != nil {
		t.Fatal(err)
	}
	if !rb.PassStart().Equal(start) {
		t.Errorf("PassStart %v, want %v", rb.PassStart(), start)
	}
	f.run(20 * time.Second)
	if got := tunnelsOf(p); got[0] > 502 || got[1] < 498 {
		t.Errorf("tunnels %v after the one-off pass, want 500/500 within 2", got)
	}
	if n := f.moved(); n < 398 || n > 400 {
		t.Errorf("%d moves, want 398..400", n)
	}
	f.checkRate(40)
	if !rb.PassStart().IsZero() {
		t.Error("one-off pass still running")
	}
	// Once a plan after the cooldown has found the pool within the band,
	// the one-off pass has no follow-up left (TestRebalanceOneOffFollowUp).
	f.run(RebalanceCooldown)
	openTunnels(bs["a:1"], 1000)
	n := f.moved()
	f.run(5 * time.Second)
	if f.moved() != n {
		t.Errorf("%d moves after the one-off pass ended, standing policy off", f.moved()-n)
	}
}

// A one-off pass whose moved clients partly went back to the old nodes
// (least connections misled while they reconnected) is followed by a pass
// of its own, after the cooldown and the settle pause, at the one-off's
// rate; once the pool is within the band, nothing more runs, and a later
// imbalance waits for a new POST /rebalance.
func TestRebalanceOneOffFollowUp(t *testing.T) {
	bl, clk, logs := testBalancer(t, Config{}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1500)
	openTunnels(bs["b:1"], 1500)
	if err := bl.Update(mustBackends(t, "a:1", "b:1", "c:1")); err != nil {
		t.Fatal(err)
	}
	a, b, c := bs["a:1"], bs["b:1"], p.Lookup("c:1")
	rb := p.Rebalancer()
	f := newFleet(t, p, clk)
	i := 0
	f.back = func() *Backend { // one reconnect in 8 back to an old node, as seen with Socket.IO clients under load
		i++
		switch {
		case i%16 == 0:
			return a
		case i%8 == 0:
			return b
		}
		return c
	}
	if err := rb.StartPass(clk.Now(), 200); err != nil {
		t.Fatal(err)
	}
	f.run(8 * time.Second)
	if got := tunnelsOf(p); got[2] > 900 || got[0] < 1050 {
		t.Fatalf("after the one-off pass: %v, want c below the band (the misrouted reconnects)", got)
	}
	if started, _ := rb.Passes(); started != 1 {
		t.Fatalf("%d passes during the one-off", started)
	}
	first := f.moved()
	f.back = nil // the clients of the follow-up find their way
	f.run(RebalanceCooldown + RebalanceSettle + 5*time.Second)
	if started, _ := rb.Passes(); started != 2 {
		t.Errorf("%d passes, want the one-off and one follow-up", started)
	}
	if logs.count("a follow-up") != 1 {
		t.Errorf("want one follow-up logged, got %v", logs.lines)
	}
	for i, n := range tunnelsOf(p) {
		if n < 1000-4 || n > 1000+2 {
			t.Errorf("backend %d: %d tunnels after the follow-up, want 1000 (+2, -4) (all: %v)", i, n, tunnelsOf(p))
		}
	}
	if n := f.moved() - first; n < 100 || n > 140 {
		t.Errorf("the follow-up moved %d, want the misrouted ~125", n)
	}
	f.checkRate(200)
	// Balanced after the cooldown: the follow-ups are gone.
	f.run(RebalanceCooldown + time.Second)
	openTunnels(a, 600)
	n := f.moved()
	f.run(30 * time.Second)
	if f.moved() != n {
		t.Errorf("%d moves for a later imbalance, with the one-off's follow-ups spent and the standing policy off", f.moved()-n)
	}
}

// However the clients come back, a one-off pass has at most
// RebalanceFollowUps follow-ups.
func TestRebalanceOneOffFollowUpsBounded(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{}, "a:1", "b:1", "c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 2000)
	openTunnels(bs["b:1"], 1000)
	rb := p.Rebalancer()
	f := newFleet(t, p, clk)
	f.back = func() *Backend { return bs["a:1"] } // every moved client returns to a
	if err := rb.StartPass(clk.Now(), 500); err != nil {
		t.Fatal(err)
	}
	f.run(2 * time.Minute)
	if started, _ := rb.Passes(); started != 1+RebalanceFollowUps {
		t.Errorf("%d passes, want the one-off and %d follow-ups", started, RebalanceFollowUps)
	}
	if want := (1 + RebalanceFollowUps) * 1000; f.moved() != want {
		t.Errorf("%d moves, want %d (each pass its excess of 1000)", f.moved(), want)
	}
}

// A pass never closes more than the excess it started with, even when
// closed clients do not come back.
func TestRebalanceBudget(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 1000}, "a:1", "b:1", "c:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 1500)
	openTunnels(bs["b:1"], 1500)
	f := newFleet(t, p, clk)
	f.noBack = true
	f.closeIn = 50 * time.Millisecond
	// Let one pass run until its budget is spent.
	for range 100 {
		f.step(100 * time.Millisecond)
		if f.moved() > 0 && p.Rebalancer().PassStart().IsZero() {
			break
		}
	}
	if n := f.moved(); n != 1000 {
		t.Errorf("first pass closed %d, want its budget 1000", n)
	}
}

func TestParseRateAndFraction(t *testing.T) {
	for in, want := range map[string]float64{"100/s": 100, "60/m": 1, "2.5": 2.5, "0": 0, "off": 0, "7200/h": 2} {
		if got, err := ParseRate(in); err != nil || math.Abs(got-want) > 1e-9 {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1/s", "1/d", "x", "NaN", "Inf/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q): no error", in)
		}
	}
	for in, want := range map[string]float64{"10%": 0.1, "0.25": 0.25, "0": 0, "150%": 1.5} {
		if got, err := ParseFraction(in); err != nil || math.Abs(got-want) > 1e-12 {
			t.Errorf("ParseFraction(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5%", "%", "ten"} {
		if _, err := ParseFraction(in); err == nil {
			t.Errorf("ParseFraction(%q): no error", in)
		}
	}
	if _, err := New(Config{Backends: mustBackends(t, "a:1"), Rebalance: -1}); err == nil {
		t.Error("New with a negative rebalance rate: no error")
	}
	if _, err := New(Config{Backends: mustBackends(t, "a:1"), RebalanceTolerance: math.NaN()}); err == nil {
		t.Error("New with a NaN tolerance: no error")
	}
}

// An imbalance that does not last RebalanceSettle (a pool filling up)
// starts no pass; one that lasts does.
func TestRebalanceSettle(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	rb := p.Rebalancer()
	openTunnels(bs["a:1"], 30)
	openTunnels(bs["b:1"], 10)
	for range 10 { // 1 s of plans: uneven, not yet long enough
		if ms := rb.Plan(clk.Now(), nil); ms != nil {
			t.Fatalf("moves %v before the imbalance lasted %v", ms, RebalanceSettle)
		}
		clk.Advance(100 * time.Millisecond)
	}
	openTunnels(bs["b:1"], 20) // evened out by arrivals
	rb.Plan(clk.Now(), nil)
	clk.Advance(100 * time.Millisecond)
	openTunnels(bs["a:1"], 20) // uneven again: the wait starts over
	for range 15 {
		if ms := rb.Plan(clk.Now(), nil); ms != nil {
			t.Fatalf("moves %v: the wait did not start over", ms)
		}
		clk.Advance(100 * time.Millisecond)
	}
	clk.Advance(RebalanceSettle)
	if ms := rb.Plan(clk.Now(), nil); len(ms) == 0 {
		t.Fatal("no moves after the imbalance lasted RebalanceSettle")
	}
}

// Closes the caller could not start are given back: not counted as moved,
// and asked for again by a later plan.
func TestRebalanceUnused(t *testing.T) {
	bl, clk, _ := testBalancer(t, Config{Rebalance: 100}, "a:1", "b:1")
	p := bl.Pool("")
	bs := byAddr(p)
	openTunnels(bs["a:1"], 200)
	rb := p.Rebalancer()
	ms := planSettled(rb, clk) // the burst: 10
	if len(ms) != 1 || ms[0].N != 10 || bs["a:1"].Moved() != 10 {
		t.Fatalf("moves %v, moved %d", ms, bs["a:1"].Moved())
	}
	rb.Unused(bs["a:1"], 10) // none could be closed
	if m := bs["a:1"].Moved(); m != 0 {
		t.Fatalf("moved %d after giving all back", m)
	}
	ms = rb.Plan(clk.Now(), nil) // the tokens came back: asked again at once
	if len(ms) != 1 || ms[0].N != 10 {
		t.Fatalf("moves %v after Unused, want a:10 again", ms)
	}
	// The budget came back too: the pass can still close the whole excess.
	total := 10
	for i := 0; i < 100 && !rb.PassStart().IsZero(); i++ {
		clk.Advance(100 * time.Millisecond)
		for _, m := range rb.Plan(clk.Now(), nil) {
			total += m.N
		}
	}
	if total != 100 {
		t.Errorf("%d closes asked in all, want the excess of 100", total)
	}
}
