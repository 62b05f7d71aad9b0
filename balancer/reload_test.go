package balancer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

func addrs(bs []*Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Addr())
	}
	return out
}

func TestReloadMerge(t *testing.T) {
	bl, clk, logs := testBalancer(t, Config{SlowStart: 5 * time.Second, DrainTimeout: 30 * time.Second},
		"a:1", "b:1", "api=x:1")
	bl.Start()
	pool := bl.Pool("")
	a, b, x := bl.Backend("", "a:1"), bl.Backend("", "b:1"), bl.Backend("api", "x:1")
	for range 3 {
		a.acquire()
	}
	for range 2 {
		b.acquire()
	}
	b.TunnelStarted()
	x.acquire()

	// A bad set is rejected as a whole: nothing changes.
	for _, bad := range [][]BackendConfig{
		nil,
		mustBackends(t, "b:1", "c:1", "b:1"),
		{{Addr: "b:1"}, {Addr: "c:1", Weight: MaxWeight + 1}},
		{{Addr: "c"}},
	} {
		if err := bl.Update(bad); err == nil {
			t.Errorf("Update(%v) accepted", bad)
		}
	}
	if got := addrs(pool.Backends()); !slices.Equal(got, []string{"a:1", "b:1"}) || bl.Backend("", "a:1") != a {
		t.Fatalf("after rejected updates: %v", got)
	}

	if err := bl.Update(mustBackends(t, "b:1,weight=3", "c:1", "api=x:1", "api=y:1", "new=z:1")); err != nil {
		t.Fatal(err)
	}
	if got := addrs(pool.Backends()); !slices.Equal(got, []string{"b:1", "c:1"}) {
		t.Fatalf("default pool after reload: %v, want b c", got)
	}
	if bl.Backend("", "b:1") != b || bl.Backend("api", "x:1") != x {
		t.Fatal("kept backends are new objects: their counts would reset")
	}
	if b.Active() != 2 || b.Tunnels() != 1 || x.Active() != 1 || b.Weight() != 3 {
		t.Errorf("kept counts: b active %d tunnels %d weight %d, x active %d; want 2 1 3 1", b.Active(), b.Tunnels(), b.Weight(), x.Active())
	}
	c := bl.Backend("", "c:1")
	if c == nil || c.State() != "slow-starting" {
		t.Fatalf("new backend c: %v", c)
	}
	if b.State() != "healthy" {
		t.Errorf("kept backend b state %s, want healthy (no slow start for it)", b.State())
	}
	if bl.Pool("new") == nil || bl.Pool("new").Backends()[0].Addr() != "z:1" {
		t.Errorf("new pool not created")
	}
	// a drains: never picked, still counted, still in the status.
	if a.State() != "draining" || a.Active() != 3 || bl.Backend("", "a:1") != nil {
		t.Errorf("removed a: state %s active %d", a.State(), a.Active())
	}
	for range 100 {
		p := pool.Pick(nil)
		if p == a {
			t.Fatal("picked a draining backend")
		}
		p.Release()
	}
	found := false
	for _, ps := range bl.Status() {
		for _, st := range ps.Backends {
			if st.Addr == "a:1" && st.State == "draining" && st.Active == 3 && st.DrainingSince != nil {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("a not in the status as draining: %+v", bl.Status())
	}

	// a comes back while still draining: the same object, with its count.
	if err := bl.Update(mustBackends(t, "a:1", "b:1,weight=3", "c:1", "api=x:1")); err != nil {
		t.Fatal(err)
	}
	if bl.Backend("", "a:1") != a || a.Active() != 3 || a.State() == "draining" {
		t.Fatalf("re-added a: same %v active %d state %s", bl.Backend("", "a:1") == a, a.Active(), a.State())
	}
	if bl.Backend("api", "y:1") != nil {
		t.Errorf("y still live")
	}

	// Remove a again; once its work ends, the sweep forgets it.
	if err := bl.Update(mustBackends(t, "b:1", "c:1", "api=x:1")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	if !slices.Contains(bl.Draining(), a) {
		t.Fatal("a forgotten while still active")
	}
	for range 3 {
		a.Release()
	}
	clk.Advance(2 * time.Second)
	if slices.Contains(bl.Draining(), a) || logs.count("a:1", "drained") != 1 {
		t.Errorf("a idle but still draining (%v) or not logged", bl.Draining())
	}

	// A backend whose tunnels outlive --drain-timeout is dropped from the status.
	x.TunnelStarted()
	if err := bl.Update(mustBackends(t, "b:1", "c:1", "api=y:1")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(29 * time.Second)
	if !slices.Contains(bl.Draining(), x) {
		t.Fatal("x forgotten before --drain-timeout")
	}
	clk.Advance(2 * time.Second)
	if slices.Contains(bl.Draining(), x) || logs.count("x:1", "drain-timeout", "passed with") != 1 {
		t.Errorf("x still followed after --drain-timeout")
	}
	x.TunnelEnded() // releases its Pick too
	if x.Active() != 0 || x.Underflows() != 0 {
		t.Errorf("x counts after its tunnel ended: active %d underflows %d", x.Active(), x.Underflows())
	}

	// A pool emptied by a reload gives nil picks (503); its route stays.
	if err := bl.Update(mustBackends(t, "api=y:1")); err != nil {
		t.Fatal(err)
	}
	if p, _ := bl.Route([]byte("h"), []byte("/")); p != pool || p.Pick(nil) != nil {
		t.Errorf("empty default pool: route %v", p)
	}
}

// fakeResolver answers from a table the test changes.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	err     error
	calls   int
}

func (r *fakeResolver) set(name string, as ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	r.answers[name] = out
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	a, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

func TestDNSDiscovery(t *testing.T) {
	res := &fakeResolver{answers: map[string][]netip.Addr{}}
	res.set("svc.cluster.local", "10.0.0.1", "10.0.0.2")
	bl, clk, _ := testBalancer(t, Config{Resolver: res, DNSInterval: 5 * time.Second},
		"svc.cluster.local:3000,weight=2", "10.9.9.9:80")
	pool := bl.Pool("")
	if got := addrs(pool.Backends()); !slices.Equal(got, []string{"10.0.0.1:3000", "10.0.0.2:3000", "10.9.9.9:80"}) {
		t.Fatalf("backends %v", got)
	}
	one, two := bl.Backend("", "10.0.0.1:3000"), bl.Backend("", "10.0.0.2:3000")
	if one.Host() != "svc.cluster.local:3000" || one.Weight() != 2 {
		t.Errorf("resolved backend: host %q weight %d", one.Host(), one.Weight())
	}
	one.acquire()
	bl.Start()

	res.set("svc.cluster.local", "10.0.0.2", "10.0.0.3", "::1")
	clk.Advance(5 * time.Second)
	if got := addrs(pool.Backends()); !slices.Equal(got, []string{"10.0.0.2:3000", "10.0.0.3:3000", "[::1]:3000", "10.9.9.9:80"}) {
		t.Fatalf("after re-resolution: %v", got)
	}
	if bl.Backend("", "10.0.0.2:3000") != two {
		t.Errorf("an address that stayed got a new Backend")
	}
	if one.State() != "draining" || one.Active() != 1 {
		t.Errorf("vanished address: state %s active %d, want draining 1", one.State(), one.Active())
	}

	// A failing lookup keeps the last answer; a name that is gone empties it.
	res.mu.Lock()
	res.err = errors.New("i/o timeout")
	res.mu.Unlock()
	clk.Advance(5 * time.Second)
	if n := len(pool.Backends()); n != 4 {
		t.Errorf("%d backends after a failed lookup, want the 4 from before", n)
	}
	res.mu.Lock()
	res.err = nil
	delete(res.answers, "svc.cluster.local")
	calls := res.calls
	res.mu.Unlock()
	clk.Advance(5 * time.Second)
	if got := addrs(pool.Backends()); !slices.Equal(got, []string{"10.9.9.9:80"}) {
		t.Errorf("after NXDOMAIN: %v", got)
	}
	if res.calls != calls+1 {
		t.Errorf("%d lookups in one interval, want 1", res.calls-calls)
	}
}
