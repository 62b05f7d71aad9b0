package balancer

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func benchPool(b *testing.B, policy Policy, n int) *Pool {
	specs := make([]string, n)
	for i := range specs {
		specs[i] = fmt.Sprintf("10.0.%d.%d:3000,weight=%d", i/256, i%256, 1+i%4)
	}
	return newPool(b, policy, specs...)
}

// BenchmarkPick is one Pick and its Release, single goroutine.
func BenchmarkPick(b *testing.B) {
	for _, policy := range []Policy{LeastConn, RoundRobin} {
		for _, n := range []int{2, 64} {
			b.Run(fmt.Sprintf("%v/%d", policy, n), func(b *testing.B) {
				p := benchPool(b, policy, n)
				b.ReportAllocs()
				for b.Loop() {
					p.Pick(nil).Release()
				}
			})
		}
	}
}

// BenchmarkPickCapped is BenchmarkPick with every backend capped (well
// above what the loop holds), and PickWait on an uncapped pool.
func BenchmarkPickCapped(b *testing.B) {
	for _, n := range []int{2, 64} {
		b.Run(fmt.Sprintf("least-conn/%d/capped", n), func(b *testing.B) {
			p := benchPool(b, LeastConn, n)
			for _, be := range p.Backends() {
				be.maxConns.Store(1000)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(nil).Release()
			}
		})
		b.Run(fmt.Sprintf("least-conn/%d/PickWait", n), func(b *testing.B) {
			p := benchPool(b, LeastConn, n)
			b.ReportAllocs()
			for b.Loop() {
				be, _, _ := p.PickWait(nil, false, time.Second)
				be.Release()
			}
		})
	}
}

// BenchmarkPickParallel compares the lock-free least-conn scan with the same
// scan under a per-pool mutex, from GOMAXPROCS goroutines, each holding 16
// picks (as a proxy holds in-flight requests and tunnels).
func BenchmarkPickParallel(b *testing.B) {
	for _, n := range []int{2, 64} {
		for _, locked := range []bool{false, true} {
			name := fmt.Sprintf("least-conn/%d/lock-free", n)
			if locked {
				name = fmt.Sprintf("least-conn/%d/mutex", n)
			}
			b.Run(name, func(b *testing.B) {
				p := benchPool(b, LeastConn, n)
				var mu sync.Mutex
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					var held [16]*Backend
					i := 0
					for pb.Next() {
						if held[i] != nil {
							held[i].Release()
						}
						if locked {
							mu.Lock()
							held[i] = p.Pick(nil)
							mu.Unlock()
						} else {
							held[i] = p.Pick(nil)
						}
						i = (i + 1) % len(held)
					}
					for _, h := range held {
						if h != nil {
							h.Release()
						}
					}
				})
			})
		}
	}
	b.Run("round-robin/64", func(b *testing.B) {
		p := benchPool(b, RoundRobin, 64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p.Pick(nil).Release()
			}
		})
	})
}

func BenchmarkRoute(b *testing.B) {
	bl, err := New(Config{
		Backends: mustBackends(b, "a:1", "api=d:1", "rt=e:1"),
		Routes:   mustRoutes(b, "/api=api,strip", "/socket.io/=rt", "*.example.com/ws=api", "example.com/=default"),
	})
	if err != nil {
		b.Fatal(err)
	}
	host, path := []byte("app.example.com:8080"), []byte("/socket.io/")
	b.ReportAllocs()
	for b.Loop() {
		bl.Route(host, path)
	}
}
