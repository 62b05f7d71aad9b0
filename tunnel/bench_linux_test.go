package tunnel

import (
	"encoding/binary"
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
	// One 64 B WebSocket frame (masked binary, 58 B of payload), echoed as it is.
	msg, got := make([]byte, 64), make([]byte, 64)
	msg[0], msg[1] = 0x82, 0x80|58
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

// BenchmarkRelayBulk: one 16 MiB WebSocket frame one way per op, client →
// tunnel → backend, with splice (default) and with buffers only.
func BenchmarkRelayBulk(b *testing.B) {
	for _, bc := range []struct {
		name      string
		spliceMin int
	}{{"splice", 0}, {"buffers", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			const payload = 16 << 20
			// A masked binary frame header with a 64-bit length (zero key).
			header := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint64(header[2:], payload)
			const size = payload + 14
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
				if _, err := p.client.Write(header); err != nil {
					b.Fatal(err)
				}
				for sent := 0; sent < payload; sent += len(chunk) {
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

// BenchmarkCloseTaggedBeforeScan: the cost of one CloseTaggedBefore call
// over 10,000 open tunnels (slab slots made to look open, on one loop: the
// fd limit allows no 10,000 real ones beside the test's own sockets), none
// of which qualifies: the scan itself.
func BenchmarkCloseTaggedBeforeScan(b *testing.B) {
	const n = 10000
	e := newEngine(b, Config{Loops: 1})
	e.run(func(l *loop) {
		for i := 0; i < n; i++ {
			t := l.slot(l.alloc())
			t.open, t.tag, t.start = true, uint64(i%8), int64(i)
		}
	})
	defer e.run(func(l *loop) {
		for ci := range l.chunks {
			for j := range l.chunks[ci] {
				if t := &l.chunks[ci][j]; t.open {
					t.open = false
					l.free = append(l.free, int32(ci<<chunkBits|j))
				}
			}
		}
	})
	before := e.epoch // no tunnel was added before the engine started
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if e.CloseTaggedBefore(3, before, 100, Rebalance) != 0 {
			b.Fatal("closed something")
		}
	}
}
