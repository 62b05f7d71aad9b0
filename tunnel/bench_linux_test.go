package tunnel

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRelay64B: a 64 B ping-pong round trip client → tunnel → echo
// backend → tunnel → client (two relays per op). cpu-µs/op is the whole
// process (client and echo backend included): subtract
// BenchmarkRelay64BDirect's to get the engine's share.
func BenchmarkRelay64B(b *testing.B) {
	e := newEngine(b, Config{})
	p := newRig(b).newPair(b, e, nil, nil)
	pingPong(b, p.client, p.backend)
}

// BenchmarkRelay64BDirect is the same ping-pong without the tunnel.
func BenchmarkRelay64BDirect(b *testing.B) {
	r := newRig(b)
	client, err := net.Dial("tcp", r.back.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	backend, err := r.back.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	defer backend.Close()
	pingPong(b, client.(*net.TCPConn), backend.(*net.TCPConn))
}

func pingPong(b *testing.B, client, backend *net.TCPConn) {
	go echo(backend)
	msg, got := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(2 * 64)
	b.ResetTimer()
	cpu0 := cpuNanos()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
}

// cpuNanos is the process's user+system CPU time.
func cpuNanos() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkRelayBulk: 16 MiB one way per op, client → tunnel → backend,
// with splice (default) and with buffers only.
func BenchmarkRelayBulk(b *testing.B) {
	for _, bc := range []struct {
		name      string
		spliceMin int
	}{{"splice", 0}, {"buffers", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			const size = 16 << 20
			e := newEngine(b, Config{SpliceMin: bc.spliceMin})
			p := newRig(b).newPair(b, e, nil, nil)
			received := make(chan struct{})
			go func() {
				buf := make([]byte, 256<<10)
				var n int
				for {
					m, err := p.backend.Read(buf)
					n += m
					for n >= size {
						n -= size
						received <- struct{}{}
					}
					if err != nil {
						return
					}
				}
			}()
			chunk := make([]byte, 256<<10)
			b.ReportAllocs()
			b.SetBytes(size)
			b.ResetTimer()
			cpu0 := cpuNanos()
			for i := 0; i < b.N; i++ {
				for sent := 0; sent < size; sent += len(chunk) {
					if _, err := p.client.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				<-received
			}
			// The whole process, writer and reader included (the same work in
			// both sub-benchmarks): the difference is the relay's.
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
		})
	}
}

// BenchmarkIdleTunnelMemory opens n idle tunnels and reports the engine's
// user-space memory per tunnel (HeapInuse+StackInuse delta; the test's own
// sockets are made before the baseline). Each tunnel costs 4 fds here (2
// engine, 2 test side): n stays under the 20,000 fd limit.
func BenchmarkIdleTunnelMemory(b *testing.B) {
	const n = 4500
	r := newRig(b)
	for i := 0; i < b.N; i++ {
		e := newEngine(b, Config{})
		type fds struct{ c, b int }
		pairs := make([]*pair, n)
		all := make([]fds, n)
		for j := range pairs {
			p, cfd, bfd := r.conns(b)
			pairs[j], all[j] = p, fds{cfd, bfd}
		}
		done := func(Stats) {}
		before := inUse()
		for _, f := range all {
			if err := e.Add(f.c, f.b, nil, nil, done); err != nil {
				b.Fatal(err)
			}
		}
		e.run(func(*loop) {}) // every Add processed
		after := inUse()
		b.ReportMetric(float64(after-before)/n, "B/tunnel")
		e.Close()
		for _, p := range pairs {
			p.close()
		}
	}
}

func inUse() int64 {
	var ms runtime.MemStats
	for i := 0; i < 2; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
