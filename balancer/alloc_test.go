//go:build !race

package balancer

import (
	"testing"
	"time"
)

// The hot path (Route, Pick, Release) must not allocate; the race detector
// adds allocations of its own, hence the build tag.
func TestAllocs(t *testing.T) {
	bl, err := New(Config{
		Backends: mustBackends(t, "a:1", "b:1,weight=3", "c:1", "api=d:1", "api=e:1"),
		Routes:   mustRoutes(t, "/api=api,strip", "*.example.com/ws=api", "example.com/=default"),
	})
	if err != nil {
		t.Fatal(err)
	}
	host, path := []byte("Foo.Example.com:8080"), []byte("/api/users")
	if n := testing.AllocsPerRun(1000, func() {
		if p, _ := bl.Route(host, path); p == nil {
			t.Fatal("no route")
		}
	}); n != 0 {
		t.Errorf("Route: %v allocs per run, want 0", n)
	}
	for _, policy := range []Policy{LeastConn, RoundRobin} {
		p := newPool(t, policy, "a:1", "b:1,weight=3", "c:1")
		if n := testing.AllocsPerRun(1000, func() { p.Pick(nil).Release() }); n != 0 {
			t.Errorf("%v Pick/Release: %v allocs per run, want 0", policy, n)
		}
		// PickWait with a free backend, and capped backends, do not either.
		if n := testing.AllocsPerRun(1000, func() {
			b, _, _ := p.PickWait(nil, true, time.Second)
			b.Release()
		}); n != 0 {
			t.Errorf("%v PickWait/Release: %v allocs per run, want 0", policy, n)
		}
		c := newPool(t, policy, "a:1,max-conns=2", "b:1,max-conns=1,weight=3")
		if n := testing.AllocsPerRun(1000, func() {
			b, _, _ := c.PickWait(nil, false, time.Second)
			b.Release()
		}); n != 0 {
			t.Errorf("%v capped PickWait/Release: %v allocs per run, want 0", policy, n)
		}
		// A skip closure that captures caller state stays on the stack.
		var tried [4]*Backend
		ntried := 0
		if n := testing.AllocsPerRun(1000, func() {
			first := p.Pick(nil)
			tried[0], ntried = first, 1
			second := p.Pick(func(b *Backend) bool {
				for _, t := range tried[:ntried] {
					if t == b {
						return true
					}
				}
				return false
			})
			first.Release()
			second.Release()
		}); n != 0 {
			t.Errorf("%v Pick with skip: %v allocs per run, want 0", policy, n)
		}
	}
}
