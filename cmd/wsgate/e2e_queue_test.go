package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// concurrencyBackend is a test backend whose /hold WebSocket handler counts
// the tunnels it holds at once, as the kernel sees them, and the most it
// ever held. A tunnel wsgate has closed may still have a handler that has
// not read its end yet, while wsgate has already given the slot to the next
// request: its FIN came first (wsgate closes, then releases the slot), so
// each new connection counts the others whose FIN has not arrived
// (poll POLLRDHUP), not the handlers still running.
type concurrencyBackend struct {
	*testBackend
	mu    sync.Mutex
	open  map[net.Conn]bool
	peak  int
	count int // /hold handshakes accepted
}

func startConcurrencyBackend(t *testing.T, name string) *concurrencyBackend {
	cb := &concurrencyBackend{open: map[net.Conn]bool{}}
	cb.testBackend = startBackend(t, name, 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
			b.handlers.Add(1)
			defer b.handlers.Done()
			c := b.upgrade(w, r)
			if c == nil {
				return
			}
			defer b.forget(c)
			cb.arrived(c.NetConn())
			defer cb.left(c.NetConn())
			if c.WriteMessage(websocket.TextMessage, []byte("hello from "+name)) != nil {
				return
			}
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		})
	})
	return cb
}

func (cb *concurrencyBackend) arrived(nc net.Conn) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.count++
	cb.open[nc] = true
	live := 0
	for c := range cb.open {
		if !peerFinished(c) {
			live++
		}
	}
	cb.peak = max(cb.peak, live)
}

func (cb *concurrencyBackend) left(nc net.Conn) {
	cb.mu.Lock()
	delete(cb.open, nc)
	cb.mu.Unlock()
}

func (cb *concurrencyBackend) peakHeld() int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.peak
}

// peerFinished reports whether the peer of c has sent its FIN (or reset).
func peerFinished(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	done := false
	rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
			done = pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return done
}

// TestMaxConnsQueueStorm: a backend with max-conns=5 and 40 clients that
// arrive at once, each holding its tunnel for a moment. The backend never
// holds more than 5 (a handler runs from before the 101 until the
// connection ends, so its count covers the whole tunnel); everyone is
// served in the end, the later ones after waiting in the queue.
func TestMaxConnsQueueStorm(t *testing.T) {
	be := startConcurrencyBackend(t, "capped")
	g := startGate(t, "-b", be.addr+",max-conns=5", "--queue-timeout", "60s", "--health-path", "")

	const clients = 40
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for range clients {
		wg.Go(func() {
			c, err := dialWS(g.addr, "/hold")
			if err == nil {
				_, err = readHello(c)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			time.Sleep(50 * time.Millisecond)
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.Close()
			ok.Add(1)
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d clients failed (first: %v)", failed.Load(), clients, firstErr.Load())
	}
	if p := be.peakHeld(); p > 5 || p == 0 {
		t.Errorf("the backend held %d tunnels at once; max-conns is 5", p)
	}
	if q := g.metric(t, `wsgate_queue_queued_total{pool="default"}`); q == 0 {
		t.Errorf("no request waited in the queue (40 clients, 5 slots): wsgate_queue_queued_total is 0")
	}
	t.Logf("%d served; backend peak %d; queued %v", ok.Load(), be.peakHeld(), g.metric(t, `wsgate_queue_queued_total{pool="default"}`))
}

// TestMaxConnsQueueTimeout: with both slots of a max-conns=2 backend held,
// a third handshake and a plain request wait --queue-timeout and get 503
// with Retry-After; neither reaches the backend. Once a slot frees, the
// next request is served.
func TestMaxConnsQueueTimeout(t *testing.T) {
	be := startConcurrencyBackend(t, "small")
	g := startGate(t, "-b", be.addr+",max-conns=2", "--queue-timeout", "300ms", "--health-path", "")

	var held []*websocket.Conn
	for range 2 {
		c, err := dialWS(g.addr, "/hold")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readHello(c); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}

	_, resp, err := wsDialer.Dial("ws://"+g.addr+"/hold", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("a third handshake: err %v, response %v; want 503", err, resp)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (the queue timeout, rounded up)", ra)
	}
	r2, body := httpGet(t, "http://"+g.addr+"/")
	if r2.StatusCode != 503 || r2.Header.Get("Retry-After") == "" {
		t.Errorf("a plain request with both slots held: %d %q, Retry-After %q; want 503 with Retry-After", r2.StatusCode, body, r2.Header.Get("Retry-After"))
	}
	if p := be.peakHeld(); p != 2 {
		t.Errorf("backend peak %d, want 2", p)
	}
	if n := g.metric(t, `wsgate_queue_refused_total{pool="default",reason="timeout"}`); n != 2 {
		t.Errorf("wsgate_queue_refused_total{reason=timeout} = %v, want 2", n)
	}

	held[0].Close()
	var resp3 *http.Response
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		resp3, err = http.Get("http://" + g.addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp3.Body)
			resp3.Body.Close()
			if resp3.StatusCode == 200 {
				break
			}
		}
	}
	if resp3 == nil || resp3.StatusCode != 200 {
		t.Fatalf("after a slot freed: %v %v", resp3, err)
	}
	held[1].Close()
}

// TestQueueFlags: the new flags' bad values get one line naming the flag
// and exit status 2.
func TestQueueFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"-b", "127.0.0.1:1", "--rebalance", "fast"}, "--rebalance"},
		{[]string{"-b", "127.0.0.1:1", "--rebalance-tolerance", "-5%"}, "--rebalance-tolerance"},
		{[]string{"-b", "127.0.0.1:1", "--max-handshakes-per-backend", "x/s"}, "--max-handshakes-per-backend"},
		{[]string{"-b", "127.0.0.1:1", "--queue-timeout", "-1s"}, "--queue-timeout"},
		{[]string{"-b", "127.0.0.1:1,max-conns=0"}, "--backend"},
	} {
		var stdout, stderr strings.Builder
		if code := run(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		if out := stderr.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.flag) {
			t.Errorf("%v: stderr %q, want one line naming %s", tc.args, out, tc.flag)
		}
	}
}

// TestMetricsSeriesOnce: every series on /metrics appears once (two
// writers of the same per-backend series would make Prometheus reject the
// scrape), and the queue and rebalancing series are there.
func TestMetricsSeriesOnce(t *testing.T) {
	a, b := startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil)
	g := startGate(t, "-b", a.addr+",max-conns=3", "-b", b.addr, "--health-path", "")
	resp, err := e2eHTTP.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	seen := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		if seen[series] {
			t.Errorf("series %s written twice", series)
		}
		seen[series] = true
	}
	for _, want := range []string{
		`wsgate_queue_length{pool="default"}`,
		`wsgate_rebalance_passes_total{pool="default"}`,
		`wsgate_backend_fair_tunnels{pool="default",backend="` + a.addr + `"}`,
		`wsgate_rebalance_moved_total{pool="default",backend="` + b.addr + `"}`,
		`wsgate_backend_tunnels{pool="default",backend="` + a.addr + `"}`,
	} {
		if !seen[want] {
			t.Errorf("no series %s", want)
		}
	}
}
