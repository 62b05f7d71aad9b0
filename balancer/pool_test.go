package balancer

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// newPool builds a one-pool Balancer from "addr[,weight=N]" values.
func newPool(t testing.TB, policy Policy, specs ...string) *Pool {
	t.Helper()
	cfg := Config{Policy: policy}
	for _, s := range specs {
		bc, err := ParseBackend(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Backends = append(cfg.Backends, bc)
	}
	bl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return bl.Pool("")
}

func byAddr(p *Pool) map[string]*Backend {
	m := make(map[string]*Backend)
	for _, b := range p.Backends() {
		m[b.Addr()] = b
	}
	return m
}

func TestLeastConnPicksLowest(t *testing.T) {
	p := newPool(t, LeastConn, "a:1", "b:1", "c:1")
	bs := byAddr(p)
	// a carries 2, b carries 1, c carries 3: b is the least loaded.
	for range 2 {
		bs["a:1"].acquire()
	}
	bs["b:1"].acquire()
	for range 3 {
		bs["c:1"].acquire()
	}
	got := p.Pick(nil)
	if got != bs["b:1"] {
		t.Fatalf("Pick = %v, want b:1", got)
	}
	if got.Active() != 2 {
		t.Fatalf("Active after Pick = %d, want 2", got.Active())
	}
	// Now a and b both carry 2: the next pick is one of them, never c.
	for range 100 {
		b := p.Pick(nil)
		if b == bs["c:1"] {
			t.Fatalf("picked c carrying 3 while a and b carry 2")
		}
		b.Release()
	}
}

func TestLeastConnWeights(t *testing.T) {
	// 4,000 picks held at once (none released): weight 3 vs 1 gets 3:1.
	p := newPool(t, LeastConn, "heavy:1,weight=3", "light:1")
	bs := byAddr(p)
	const n = 4000
	var held []*Backend
	for range n {
		held = append(held, p.Pick(nil))
	}
	heavy := bs["heavy:1"].Active()
	share := float64(heavy) / n
	if share < 0.70 || share > 0.80 {
		t.Errorf("heavy share %.3f (%d of %d), want 0.75±0.05", share, heavy, n)
	}
	for _, b := range held {
		b.Release()
	}
	for _, b := range p.Backends() {
		if b.Active() != 0 || b.Underflows() != 0 {
			t.Errorf("%v: Active %d Underflows %d after releasing all", b, b.Active(), b.Underflows())
		}
	}
}

func TestLeastConnWeightsConcurrent(t *testing.T) {
	// The same from 8 goroutines: the lock-free scan may double up under
	// contention, but the share still holds.
	p := newPool(t, LeastConn, "heavy:1,weight=3", "light:1")
	const n, workers = 4000, 8
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				p.Pick(nil)
			}
		})
	}
	wg.Wait()
	heavy := byAddr(p)["heavy:1"].Active()
	if share := float64(heavy) / n; share < 0.70 || share > 0.80 {
		t.Errorf("heavy share %.3f (%d of %d), want 0.75±0.05", share, heavy, n)
	}
}

func TestLeastConnTiesRandom(t *testing.T) {
	p := newPool(t, LeastConn, "a:1", "b:1")
	bs := byAddr(p)
	const n = 10000
	for range n {
		p.Pick(nil).Release()
	}
	for addr, b := range bs {
		share := float64(b.Picks()) / n
		if share < 0.45 || share > 0.55 {
			t.Errorf("%s share %.3f, want 0.45..0.55", addr, share)
		}
		if b.Active() != 0 {
			t.Errorf("%s Active %d, want 0", addr, b.Active())
		}
	}
}

func TestLeastConnTiesRandomAmongMany(t *testing.T) {
	// Reservoir sampling must be uniform over every tied backend, not just
	// favour the first or last.
	p := newPool(t, LeastConn, "a:1", "b:1", "c:1", "d:1", "busy:1")
	busy := byAddr(p)["busy:1"]
	busy.acquire()
	const n = 20000
	for range n {
		p.Pick(nil).Release()
	}
	for _, b := range p.Backends() {
		if b == busy {
			if b.Picks() != 1 {
				t.Errorf("busy backend picked %d times", b.Picks()-1)
			}
			continue
		}
		if share := float64(b.Picks()) / n; share < 0.22 || share > 0.28 {
			t.Errorf("%v share %.3f, want 0.25±0.03", b, share)
		}
	}
}

func TestPickSkip(t *testing.T) {
	for _, policy := range []Policy{LeastConn, RoundRobin} {
		t.Run(policy.String(), func(t *testing.T) {
			p := newPool(t, policy, "a:1", "b:1", "c:1")
			bs := byAddr(p)
			tried := map[*Backend]bool{}
			skip := func(b *Backend) bool { return tried[b] }
			for range 3 {
				b := p.Pick(skip)
				if b == nil {
					t.Fatal("Pick = nil with backends left")
				}
				if tried[b] {
					t.Fatalf("Pick returned skipped %v", b)
				}
				tried[b] = true
			}
			if b := p.Pick(skip); b != nil {
				t.Fatalf("Pick = %v with every backend skipped, want nil", b)
			}
			for addr, b := range bs {
				if b.Active() != 1 {
					t.Errorf("%s Active %d, want 1 (nil Pick must count nothing)", addr, b.Active())
				}
				b.Release()
			}
			// Skipping the least loaded backend sends the pick elsewhere.
			only := p.Pick(func(b *Backend) bool { return b != bs["c:1"] })
			if only != bs["c:1"] {
				t.Fatalf("Pick = %v, want c:1", only)
			}
			only.Release()
		})
	}
}

func TestReleaseClamps(t *testing.T) {
	p := newPool(t, LeastConn, "a:1")
	b := p.Pick(nil)
	b.Release()
	b.Release()
	b.Release()
	if b.Active() != 0 {
		t.Fatalf("Active = %d after extra Releases, want 0", b.Active())
	}
	if b.Underflows() != 2 {
		t.Fatalf("Underflows = %d, want 2", b.Underflows())
	}
	if got := p.Pick(nil); got != b || b.Active() != 1 {
		t.Fatalf("Pick after clamp: Active %d, want 1", b.Active())
	}
}

func TestPickReleaseConcurrent(t *testing.T) {
	for _, policy := range []Policy{LeastConn, RoundRobin} {
		t.Run(policy.String(), func(t *testing.T) {
			p := newPool(t, policy, "a:1,weight=2", "b:1", "c:1,weight=5", "d:1")
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					held := make([]*Backend, 0, 8)
					for i := range 2000 {
						var skip func(*Backend) bool
						if i%3 == 0 {
							skip = func(b *Backend) bool { return b.Addr() == fmt.Sprintf("%c:1", 'a'+g%4) }
						}
						b := p.Pick(skip)
						if b == nil {
							t.Error("Pick = nil")
							return
						}
						held = append(held, b)
						if len(held) == cap(held) {
							for _, h := range held {
								h.Release()
							}
							held = held[:0]
						}
					}
					for _, h := range held {
						h.Release()
					}
				})
			}
			wg.Wait()
			var picks uint64
			for _, b := range p.Backends() {
				if b.Active() != 0 || b.Underflows() != 0 {
					t.Errorf("%v: Active %d Underflows %d, want 0 0", b, b.Active(), b.Underflows())
				}
				picks += b.Picks()
			}
			if picks != 16*2000 {
				t.Errorf("total picks %d, want %d", picks, 16*2000)
			}
		})
	}
}

func TestRoundRobinSmoothWeighted(t *testing.T) {
	// nginx's example: weights 5, 1, 1 give a a b a c a a (not a a a a a b c).
	p := newPool(t, RoundRobin, "a:1,weight=5", "b:1", "c:1")
	var seq []string
	for range 14 {
		b := p.Pick(nil)
		seq = append(seq, b.Addr()[:1])
		b.Release()
	}
	if got, want := strings.Join(seq, ""), "aabacaa"+"aabacaa"; got != want {
		t.Errorf("sequence %s, want %s", got, want)
	}

	// Round robin ignores load: it keeps cycling while picks are held.
	p = newPool(t, RoundRobin, "a:1", "b:1", "c:1")
	seq = seq[:0]
	for range 6 {
		seq = append(seq, p.Pick(nil).Addr()[:1])
	}
	if got := strings.Join(seq, ""); got != "abcabc" {
		t.Errorf("sequence %s, want abcabc", got)
	}
}

func TestRoundRobinSkip(t *testing.T) {
	// A skipped backend takes no turn; the rest keep their 2:1 ratio.
	p := newPool(t, RoundRobin, "a:1,weight=2", "b:1", "c:1,weight=4")
	notC := func(b *Backend) bool { return b.Addr() == "c:1" }
	counts := map[string]int{}
	for range 300 {
		b := p.Pick(notC)
		counts[b.Addr()]++
		b.Release()
	}
	if counts["a:1"] != 200 || counts["b:1"] != 100 || counts["c:1"] != 0 {
		t.Errorf("counts %v, want a:200 b:100 c:0", counts)
	}
}

func TestBackendSize(t *testing.T) {
	if s := unsafe.Sizeof(Backend{}); s != 128 {
		t.Errorf("Backend is %d bytes, want 128 (two cache lines, see its padding)", s)
	}
}
