package bench

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The efficiency bar: against a direct echo backend, wsbench's 64 B
// echo throughput is at least that of a plain gorilla/websocket closed-loop
// client on the same machine. BenchmarkEcho64 puts both side by side (one
// op = one round trip, same connection count, backend in another process);
// TestMeasureEchoVsGorilla (WSBENCH_MEASURE=1) prints messages/s and CPU
// per message of each, as `make bench-compare` shows.

const compareConns = 32

// gorillaClient is the baseline: gorilla/websocket, closed loop,
// WriteMessage then ReadMessage, one goroutine per connection.
func gorillaDial(tb testing.TB, url string, n int) []*websocket.Conn {
	tb.Helper()
	var cs []*websocket.Conn
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			tb.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func gorillaRoundTrip(c *websocket.Conn, payload []byte) error {
	if err := c.WriteMessage(websocket.BinaryMessage, payload); err != nil {
		return err
	}
	_, _, err := c.ReadMessage()
	return err
}

// wsbenchDial opens n sessions the way Run does.
func wsbenchDial(tb testing.TB, url string, n int) []session {
	tb.Helper()
	r := &run{cfg: Config{Mode: ModeEcho, Size: 64, HandshakeTimeout: 5 * time.Second}}
	r.tgt, _ = ParseTarget(url)
	var ss []session
	for i := range n {
		s, err := r.openWS(context.Background(), i)
		if err != nil {
			tb.Fatal(err)
		}
		ss = append(ss, s)
	}
	return ss
}

// spread runs total round trips over n goroutines.
func spread(n, total int, rt func(i int) error) error {
	var wg sync.WaitGroup
	var first atomic.Value
	for i := range n {
		k := total / n
		if i < total%n {
			k++
		}
		wg.Go(func() {
			for range k {
				if err := rt(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

func BenchmarkEcho64(b *testing.B) {
	url := startEchoProcess(b)
	payload := make([]byte, 64)
	b.Run("gorilla", func(b *testing.B) {
		cs := gorillaDial(b, url, compareConns)
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		if err := spread(compareConns, b.N, func(i int) error { return gorillaRoundTrip(cs[i], payload) }); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
	b.Run("wsbench", func(b *testing.B) {
		ss := wsbenchDial(b, url, compareConns)
		defer func() {
			for _, s := range ss {
				s.close(0)
			}
		}()
		rec := newRecorder()
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		err := spread(compareConns, b.N, func(i int) error {
			t0 := time.Now()
			if err := ss[i].roundTrip(); err != nil {
				return err
			}
			rec.record(i, time.Since(t0)) // as Run does: latency recorded per message
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}

// TestMeasureEchoVsGorilla measures, does not judge: it logs both clients'
// throughput against the same echo process. Run with WSBENCH_MEASURE=1.
func TestMeasureEchoVsGorilla(t *testing.T) {
	if os.Getenv("WSBENCH_MEASURE") == "" {
		t.Skip("measurement: set WSBENCH_MEASURE=1 (make bench-compare)")
	}
	url := startEchoProcess(t)
	dur := 3 * time.Second
	payload := make([]byte, 64)
	for round := 1; round <= 2; round++ {
		// gorilla closed loop
		cs := gorillaDial(t, url, compareConns)
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		cpu0, t0 := cpuNow(), time.Now()
		for _, c := range cs {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if gorillaRoundTrip(c, payload) != nil {
						return
					}
					n.Add(1)
				}
			})
		}
		time.Sleep(dur)
		close(stop)
		wg.Wait()
		el, cpu := time.Since(t0), cpuNow()-cpu0
		for _, c := range cs {
			c.Close()
		}
		g := float64(n.Load()) / el.Seconds()
		t.Logf("round %d gorilla/websocket closed loop: %d conns, 64 B: %.0f msgs/s, client CPU %.2fµs/msg",
			round, compareConns, g, float64(cpu.Microseconds())/float64(n.Load()))

		res, err := Run(context.Background(), Config{Mode: ModeEcho, URL: url, Conns: compareConns, Duration: dur, Size: 64})
		if err != nil {
			t.Fatal(err)
		}
		w := float64(res.Messages) / (res.ElapsedS - res.RampS)
		t.Logf("round %d wsbench echo (Run, histograms on):  %d conns, 64 B: %.0f msgs/s, client CPU %.2fµs/msg, p50 %s p99 %s; ratio %.2f",
			round, compareConns, w, res.CPUPerOpUS, fmtMS(res.Latency.P50MS), fmtMS(res.Latency.P99MS), w/g)
	}
}

// TestMeasureConnect9000 opens 9,000 connections from this process (the
// backend is another process: each stays under the 20,000-file limit) over
// eight source addresses, and logs wsbench's memory per open connection.
// Run with WSBENCH_MEASURE=1.
func TestMeasureConnect9000(t *testing.T) {
	if os.Getenv("WSBENCH_MEASURE") == "" {
		t.Skip("measurement: set WSBENCH_MEASURE=1 (make bench-compare)")
	}
	url := startEchoProcess(t)
	ips, _ := ParseSourceIPs("127.0.0.1-127.0.0.8")
	res, err := Run(context.Background(), Config{Mode: ModeConnect, URL: url, Conns: 9000, Duration: 3 * time.Second, SourceIPs: ips})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connect 9000: connected %d, open at end %d, errors %v, ramp %.1fs, handshake p50 %s p99 %s",
		res.Connected, res.OpenAtEnd, res.ErrorKinds, res.RampS, fmtMS(res.HandshakeLatency.P50MS), fmtMS(res.HandshakeLatency.P99MS))
	t.Logf("connect 9000: wsbench Go heap+stacks %.1f KiB per connection, RSS %.1f KiB per connection, max RSS %.1f MiB, %d goroutines, CPU %.0fµs per handshake",
		res.MemPerConnKiB, res.RSSPerConnKiB, float64(res.MaxRSSKiB)/1024, res.GoroutinesAtEnd, res.CPUPerOpUS)
	if res.Connected != 9000 {
		t.Errorf("connected %d of 9000", res.Connected)
	}
}
