//go:build linux

package main

// TestCompareStorm is bench-compare's reconnect-storm pass (issue 18), run
// the same way for HAProxy, nginx and wsgate: 3 backends hold 6,000 idle
// WebSocket clients (bench.Hold: each reconnects 0.2–1 s after its
// connection ends, as Socket.IO clients do); one backend dies (its listener
// and every connection close at once, as when its process is killed); the
// table gives the time until all 6,000 are connected again, the
// handshakes that failed, the handshake latency of the reconnects, the
// proxy's CPU during the storm, and what the survivors took: their peak
// handshake rate (per 100 ms, as a rate) and their peak connection count.
// Then the same for wsgate with max-conns on each backend (a FIFO queue in
// front of them) and with --max-handshakes-per-backend pacing.
//
// Knobs: WSGATE_COMPARE=1 (make bench-compare), WSGATE_STORM_CONNS=6000,
// WSGATE_COMPARE_ONLY as in TestCompareProxies.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench"
)

// stormBackend is an in-process WebSocket backend that counts what a storm
// does to it: handshakes per 100 ms window (the peak is its worst moment)
// and connections held (the peak too).
type stormBackend struct {
	name string
	addr string

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	conns    map[net.Conn]struct{}
	watch    bool // counting peaks
	window   int64
	inWin    int64
	peakWin  int64 // handshakes in the busiest 100 ms window while watching
	peakHeld int64
	held     atomic.Int64
}

const stormWindow = 100 * time.Millisecond

func startStormBackend(t *testing.T, name, addr string) *stormBackend {
	b := &stormBackend{name: name, addr: addr}
	b.start(t)
	return b
}

func (b *stormBackend) start(t *testing.T) {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		nc := c.NetConn()
		b.mu.Lock()
		if b.ln == nil { // killed meanwhile
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[nc] = struct{}{}
		n := b.held.Add(1)
		if b.watch {
			b.peakHeld = max(b.peakHeld, n)
			if w := time.Now().UnixNano() / int64(stormWindow); w != b.window {
				b.window, b.inWin = w, 0
			}
			b.inWin++
			b.peakWin = max(b.peakWin, b.inWin)
		}
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			if _, ok := b.conns[nc]; ok {
				delete(b.conns, nc)
				b.held.Add(-1)
			}
			b.mu.Unlock()
			c.Close()
		}()
		c.WriteMessage(websocket.TextMessage, []byte("hello from "+b.name))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "ok from %s\n", b.name) })
	b.mu.Lock()
	b.ln, b.conns = ln, map[net.Conn]struct{}{}
	b.srv = &http.Server{Handler: mux}
	b.mu.Unlock()
	go b.srv.Serve(ln)
}

// kill closes the listener and every connection at once.
func (b *stormBackend) kill() {
	b.mu.Lock()
	srv, conns := b.srv, b.conns
	b.ln, b.conns = nil, map[net.Conn]struct{}{}
	b.held.Store(0)
	b.mu.Unlock()
	srv.Close()
	for c := range conns {
		c.Close()
	}
}

func (b *stormBackend) watchPeaks(on bool) (peakRate, peakHeld int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	peakRate, peakHeld = b.peakWin*int64(time.Second/stormWindow), b.peakHeld
	b.watch, b.peakWin, b.peakHeld, b.window, b.inWin = on, 0, b.held.Load(), 0, 0
	return
}

// stormResult is one column of the storm table.
type stormResult struct {
	name               string
	held               int64
	recovery           time.Duration
	recovered          bool
	failed             int64
	failures           map[string]int64
	hsP50, hsP99       float64 // ms: handshakes of the reconnects during the storm
	cpuMS              float64 // proxy CPU from the kill to the recovery
	peakRate, peakHeld int64   // the busiest survivor
	openAt1s           int64   // connected 1 s after the kill
}

func TestCompareStorm(t *testing.T) {
	if os.Getenv("WSGATE_COMPARE") == "" {
		t.Skip("measurement: run with WSGATE_COMPARE=1 (make bench-compare)")
	}
	n := envInt("WSGATE_STORM_CONNS", 6000)
	dir := t.TempDir()
	env := &compareEnv{dir: dir, storm: true}
	defer func() {
		for _, p := range env.procs {
			if p != nil {
				p.stop()
			}
		}
	}()
	var bs []*stormBackend
	for _, name := range []string{"a", "b", "c"} {
		b := startStormBackend(t, name, reserveAddr(t))
		bs = append(bs, b)
		env.backends = append(env.backends, b.addr)
	}
	env.procs = append(env.procs, nil, nil) // stopProxies keeps the first two: backends here are in-process
	perBackend := (n + 1) / 2               // what each survivor must take
	variants := []struct {
		name  string
		start func(t *testing.T, env *compareEnv, listen string) (int, string)
	}{
		{"HAProxy", startHAProxy},
		{"nginx", startNginx},
		{"wsgate", func(t *testing.T, env *compareEnv, l string) (int, string) { return startWsgate(t, env, l, 1) }},
		{fmt.Sprintf("wsgate max-conns=%d", perBackend), func(t *testing.T, env *compareEnv, l string) (int, string) {
			env.gateBackendOpts = fmt.Sprintf(",max-conns=%d", perBackend)
			env.gateArgs = []string{"--queue-timeout", "10s"}
			defer func() { env.gateBackendOpts, env.gateArgs = "", nil }()
			return startWsgate(t, env, l, 1)
		}},
		{"wsgate paced 500/s", func(t *testing.T, env *compareEnv, l string) (int, string) {
			env.gateArgs = []string{"--max-handshakes-per-backend", "500/s", "--queue-timeout", "10s"}
			defer func() { env.gateArgs = nil }()
			return startWsgate(t, env, l, 1)
		}},
	}
	only := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("WSGATE_COMPARE_ONLY"), ",") {
		if s = strings.TrimSpace(strings.ToLower(s)); s != "" {
			only[s] = true
		}
	}
	var rs []stormResult
	for _, v := range variants {
		if len(only) > 0 && !only[strings.ToLower(strings.Fields(v.name)[0])] {
			continue
		}
		t.Logf("=== storm: %s", v.name)
		rs = append(rs, runStorm(t, env, bs, v.name, v.start, n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nreconnect storm: %d idle WebSocket clients on 3 backends reconnecting 0.2–1 s after a close; one backend dies; all on %s, one worker each\n\n", n, machineLine())
	fmt.Fprintf(&b, "| %-34s |", "figure")
	for _, r := range rs {
		fmt.Fprintf(&b, " %-22s |", r.name)
	}
	fmt.Fprintf(&b, "\n|%s|", strings.Repeat("-", 36))
	for range rs {
		fmt.Fprintf(&b, "%s|", strings.Repeat("-", 24))
	}
	b.WriteString("\n")
	row := func(label string, f func(r stormResult) string) {
		fmt.Fprintf(&b, "| %-34s |", label)
		for _, r := range rs {
			fmt.Fprintf(&b, " %-22s |", f(r))
		}
		b.WriteString("\n")
	}
	row("connections held before the kill", func(r stormResult) string { return fmt.Sprint(r.held) })
	row("time until all are connected again", func(r stormResult) string {
		if !r.recovered {
			return "not within 60 s"
		}
		return r.recovery.Round(10 * time.Millisecond).String()
	})
	row("connected 1 s after the kill", func(r stormResult) string { return fmt.Sprint(r.openAt1s) })
	row("failed handshakes", func(r stormResult) string {
		if r.failed == 0 {
			return "0"
		}
		return fmt.Sprintf("%d %v", r.failed, r.failures)
	})
	row("reconnect handshake p50 / p99 (ms)", func(r stormResult) string { return fmt.Sprintf("%.1f / %.1f", r.hsP50, r.hsP99) })
	row("proxy CPU during the storm (ms)", func(r stormResult) string { return fmt.Sprintf("%.0f", r.cpuMS) })
	row("survivor peak handshakes/s (100 ms)", func(r stormResult) string { return fmt.Sprint(r.peakRate) })
	row("survivor peak connections", func(r stormResult) string { return fmt.Sprint(r.peakHeld) })
	fmt.Print(b.String())
}

// runStorm runs one storm against the proxy start brings up.
func runStorm(t *testing.T, env *compareEnv, bs []*stormBackend, name string, start func(*testing.T, *compareEnv, string) (int, string), n int) stormResult {
	res := stormResult{name: name}
	pid, addr := start(t, env, reserveAddr(t))
	defer env.stopProxies()
	waitHTTP(t, "http://"+addr+"/name", 15*time.Second)
	pids := func() []int { return procTree(pid) }

	ips, _ := bench.ParseSourceIPs(sourceIPs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := bench.StartHold(ctx, bench.HoldConfig{URL: "ws://" + addr + "/ws", Conns: n, SourceIPs: ips, HandshakeTimeout: 30 * time.Second,
		ReconnectDelayMin: 200 * time.Millisecond, ReconnectDelayMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		h.Stop()
		h.Wait()
	}()
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	snap, ok := h.WaitUntil(wctx, func(s bench.HoldSnapshot) bool { return s.RampDone && s.Open == int64(n) })
	wcancel()
	if !ok {
		t.Errorf("%s: only %d of %d connected before the storm", name, snap.Open, n)
		return res
	}
	time.Sleep(2 * time.Second)
	res.held = h.Snapshot().Open
	before := h.Snapshot()
	for _, b := range bs[:2] {
		b.watchPeaks(true)
	}
	c0 := cpuOf(pids)
	killAt := time.Now()
	bs[2].kill()
	// Recovered: every client connected again after the kill's closes.
	var at1s int64 = -1
	for time.Since(killAt) < 60*time.Second {
		time.Sleep(20 * time.Millisecond)
		s := h.Snapshot()
		if at1s < 0 && time.Since(killAt) >= time.Second {
			at1s = s.Open
		}
		if s.Closes > before.Closes && s.Open == int64(n) {
			res.recovered, res.recovery = true, time.Since(killAt)
			break
		}
	}
	c1 := cpuOf(pids)
	if at1s < 0 {
		at1s = h.Snapshot().Open
	}
	res.openAt1s = at1s
	res.cpuMS = float64(c1.total-c0.total) * 1000 / clkTck
	for _, b := range bs[:2] {
		r, held := b.watchPeaks(false)
		res.peakRate, res.peakHeld = max(res.peakRate, r), max(res.peakHeld, held)
	}
	after := h.Snapshot()
	res.failed = after.ReconnectFailed - before.ReconnectFailed
	res.failures = after.ReconnectFailures
	// Every reconnect of the run is the storm's (nothing else closed).
	h.Stop()
	rep := h.Wait()
	res.hsP50, res.hsP99 = rep.ReconnectHandshakeLatency.P50MS, rep.ReconnectHandshakeLatency.P99MS
	t.Logf("%s: held %d; recovered %v in %v; at 1 s %d; failed %d %v; proxy CPU %.0f ms; survivors peak %d/s, %d held",
		name, res.held, res.recovered, res.recovery, res.openAt1s, res.failed, res.failures, res.cpuMS, res.peakRate, res.peakHeld)

	// Bring the backend back for the next column.
	bs[2].start(t)
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if bs[0].held.Load()+bs[1].held.Load()+bs[2].held.Load() == 0 {
			break
		}
	}
	return res
}
