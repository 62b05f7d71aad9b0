package tunnel

import (
	"io"
	"net"
	"syscall"
	"testing"
)

func cpuNow() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkExpRelay(b *testing.B) {
	for _, loops := range []int{0, 1, 2} {
		b.Run(map[int]string{0: "direct", 1: "loops1", 2: "loops2"}[loops], func(b *testing.B) {
			r := newRig(b)
			var client, backend net.Conn
			if loops == 0 {
				c, _ := net.Dial("tcp", r.back.Addr().String())
				s, _ := r.back.Accept()
				client, backend = c, s
			} else {
				e := newEngine(b, Config{Loops: loops})
				p := r.newPair(b, e, nil, nil)
				client, backend = p.client, p.backend
			}
			go echo(backend.(*net.TCPConn))
			msg, got := make([]byte, 64), make([]byte, 64)
			b.ResetTimer()
			c0 := cpuNow()
			for i := 0; i < b.N; i++ {
				client.Write(msg)
				io.ReadFull(client, got)
			}
			b.ReportMetric(float64(cpuNow()-c0)/float64(b.N)/1000, "cpu-µs/op")
		})
	}
}
