package main

// End-to-end tests of issue 4: health checks, retries, slow start, routes
// with strip, and reload of --backends-file on SIGHUP, against the built
// binary and real backends on loopback.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/balancer"
)

// status reads /status.json.
func (g *gate) status(t *testing.T) []balancer.PoolStatus {
	t.Helper()
	resp, err := e2eHTTP.Get("http://" + g.admin + "/status.json")
	if err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Pools []balancer.PoolStatus `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("/status.json: %v", err)
	}
	return doc.Pools
}

// backendStatus finds addr in the status (live or draining); ok false when
// it is not there.
func (g *gate) backendStatus(t *testing.T, addr string) (balancer.BackendStatus, bool) {
	for _, p := range g.status(t) {
		for _, b := range p.Backends {
			if b.Addr == addr {
				return b, true
			}
		}
	}
	return balancer.BackendStatus{}, false
}

// waitState polls the status until addr is in one of states.
func (g *gate) waitState(t *testing.T, addr string, d time.Duration, states ...string) balancer.BackendStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, ok := g.backendStatus(t, addr)
		for _, s := range states {
			if ok && st.State == s {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %s: state %q (present %v) after %v, want one of %v", addr, st.State, ok, d, states)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBackendAt is startBackend on a given address (a backend restarted on
// its old port). addr is a killed startBackend's, still reserved for this
// test (reserveAddr), so nothing else can have taken it meanwhile.
func startBackendAt(t *testing.T, name, addr string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{name: name, addr: addr, ln: ln, conns: map[net.Conn]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", b.echoWS)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok from %s\n", name)
	})
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		mux.ServeHTTP(w, r)
	})}
	go b.srv.Serve(ln)
	t.Cleanup(func() {
		b.kill()
		waitGroupTimeout(&b.handlers, 10*time.Second)
	})
	return b
}

func countNames(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n]++
	}
	return m
}

// TestBackendKilledUnderLoad: clients keep sending requests and WebSocket
// handshakes while one of three backends is killed. Every request that
// starts later than one health interval plus the connect timeout after the
// kill succeeds, none of them on the dead backend, and the dead backend is
// out of rotation (ejected by passive checks or down by active ones) by
// then.
func TestBackendKilledUnderLoad(t *testing.T) {
	const interval, connectTO = 500 * time.Millisecond, time.Second
	bs := []*testBackend{startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil), startBackend(t, "c", 0, nil)}
	g := startGate(t, "-b", bs[0].addr, "-b", bs[1].addr, "-b", bs[2].addr,
		"--health-interval", interval.String(), "--health-timeout", "300ms", "--connect-timeout", connectTO.String())
	victim := bs[1]

	type result struct {
		start   time.Time
		backend string
		err     error
	}
	var (
		mu      sync.Mutex
		results []result
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	record := func(start time.Time, backend string, err error) {
		mu.Lock()
		results = append(results, result{start, backend, err})
		mu.Unlock()
	}
	for w := range 8 {
		wg.Go(func() {
			for !stop.Load() {
				start := time.Now()
				if w%2 == 0 {
					resp, err := e2eHTTP.Get("http://" + g.addr + "/")
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %s", resp.Status)
						}
						record(start, resp.Header.Get("X-Backend"), err)
					} else {
						record(start, "", err)
					}
					continue
				}
				c, err := dialWS(g.addr, "/ws")
				if err != nil {
					record(start, "", err)
					continue
				}
				name, err := readHello(c)
				c.Close()
				record(start, name, err)
			}
		})
	}
	time.Sleep(time.Second)
	killedAt := time.Now()
	victim.kill()
	st := g.waitState(t, victim.addr, interval+connectTO, "ejected", "down")
	outAfter := time.Since(killedAt)
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()

	window := killedAt.Add(interval + connectTO)
	var before, after, failedAfter, onVictimAfter int
	for _, r := range results {
		if r.start.Before(window) {
			before++
			continue
		}
		after++
		if r.err != nil {
			failedAfter++
			if failedAfter <= 5 {
				t.Errorf("request started %v after the kill failed: %v", r.start.Sub(killedAt).Round(time.Millisecond), r.err)
			}
		}
		if r.backend == victim.name {
			onVictimAfter++
		}
	}
	t.Logf("victim out of rotation (%s, %d failures counted) %v after the kill; %d requests before %v, %d after: %d failed, %d on the victim",
		st.State, st.Failures, outAfter.Round(time.Millisecond), before, interval+connectTO, after, failedAfter, onVictimAfter)
	if after < 50 {
		t.Fatalf("only %d requests after the window: the load did not run", after)
	}
	if failedAfter > 0 || onVictimAfter > 0 {
		t.Errorf("%d failed and %d served by the dead backend after the window", failedAfter, onVictimAfter)
	}
}

// TestBackendRestartSlowStart: b is killed while a carries 100 tunnels and
// comes back on the same port. With --slow-start, the next 100 handshakes
// do not all go to the empty b (least-connections alone would send every
// one there); the same run without --slow-start shows the flood.
func TestBackendRestartSlowStart(t *testing.T) {
	run := func(t *testing.T, slowStart string) (toB int) {
		a, b := startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil)
		args := []string{"-b", a.addr, "-b", b.addr, "--health-interval", "200ms", "--health-timeout", "200ms",
			"--health-rise", "1", "--health-fall", "1"}
		if slowStart != "" {
			args = append(args, "--slow-start", slowStart)
		}
		g := startGate(t, args...)
		conns, names := openTunnels(t, g.addr, 200, 20)
		b.kill()
		g.waitState(t, b.addr, 5*time.Second, "down", "ejected")
		for i, c := range conns { // b's clients see their sockets end and leave
			if names[i] == "b" {
				c.Close()
			}
		}
		g.waitMetricEq(t, mTunnelsOpen, float64(countNames(names)["a"]), 10*time.Second) // a's stay
		startBackendAt(t, "b2", b.addr)
		want := "healthy"
		if slowStart != "" {
			want = "slow-starting"
		}
		g.waitState(t, b.addr, 5*time.Second, want)
		_, names = openTunnels(t, g.addr, 100, 4)
		counts := countNames(names)
		st, _ := g.backendStatus(t, b.addr)
		t.Logf("--slow-start %q: after the restart, 100 handshakes went %v; b2 now %s, effective weight %.2f",
			slowStart, counts, st.State, st.EffectiveWeight)
		return counts["b2"]
	}
	var with, without int
	t.Run("slow-start", func(t *testing.T) { with = run(t, "5s") })
	t.Run("no-slow-start", func(t *testing.T) { without = run(t, "") })
	if without < 90 {
		t.Errorf("without slow start the restarted backend got %d of 100 (least-conn should flood it)", without)
	}
	if with > 60 {
		t.Errorf("with --slow-start 5s the restarted backend got %d of 100, want a ramp (well under the %d without)", with, without)
	}
}

// TestReloadDuringLiveTunnels: 1,000 live tunnels on a and b; SIGHUP with a
// file that drops a and adds c. No tunnel drops (a's drain), b's count is
// unchanged, new handshakes go to b and c only, and a bad file changes
// nothing.
func TestReloadDuringLiveTunnels(t *testing.T) {
	a, b, c := startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil), startBackend(t, "c", 0, nil)
	file := filepath.Join(t.TempDir(), "backends")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# the fleet\n" + a.addr + "\n" + b.addr + "  # second\n")
	g := startGate(t, "--backends-file", file, "--health-path", "")
	hup := func() {
		t.Helper()
		if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	const n = 1000
	conns, names := openTunnels(t, g.addr, n, 50)
	before := countNames(names)
	g.waitMetricEq(t, mTunnelsOpen, n, 10*time.Second)
	stA, _ := g.backendStatus(t, a.addr)
	stB, _ := g.backendStatus(t, b.addr)
	if stA.Tunnels != int64(before["a"]) || stB.Tunnels != int64(before["b"]) {
		t.Fatalf("status before reload: a %d b %d tunnels, clients saw %v", stA.Tunnels, stB.Tunnels, before)
	}

	// A bad file is rejected as a whole.
	write(b.addr + "\n" + c.addr + ",weight=0\n")
	hup()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.stderr.String(), "rejected") {
		if time.Now().After(deadline) {
			t.Fatal("no log line for the rejected file")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := g.backendStatus(t, c.addr); ok {
		t.Fatal("a backend of the rejected file joined")
	}

	write(b.addr + "\n" + c.addr + "\n")
	reloadAt := time.Now()
	hup()
	g.waitState(t, c.addr, 10*time.Second, "healthy")
	t.Logf("reload applied in %v", time.Since(reloadAt).Round(time.Millisecond))
	stA = g.waitState(t, a.addr, time.Second, "draining")
	stB, _ = g.backendStatus(t, b.addr)
	if stA.Tunnels != int64(before["a"]) || stB.Tunnels != int64(before["b"]) || stB.Active != int64(before["b"]) {
		t.Errorf("after reload: a %d tunnels (draining), b %d tunnels %d active; before %v", stA.Tunnels, stB.Tunnels, stB.Active, before)
	}

	// Every one of the 1,000 tunnels still echoes.
	var wg sync.WaitGroup
	var dropped atomic.Int64
	sem := make(chan struct{}, 50)
	for i, ws := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			msg := fmt.Sprintf("still here %d", i)
			ws.NetConn().SetDeadline(time.Now().Add(15 * time.Second))
			if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				dropped.Add(1)
				return
			}
			if _, p, err := ws.ReadMessage(); err != nil || string(p) != msg {
				dropped.Add(1)
			}
		}()
	}
	wg.Wait()
	if d := dropped.Load(); d > 0 {
		t.Fatalf("%d of %d tunnels dropped by the reload", d, n)
	}

	// New handshakes: b and c only; c (empty) takes them by least-conn.
	_, newNames := openTunnels(t, g.addr, 100, 10)
	got := countNames(newNames)
	t.Logf("tunnels before %v; 100 new after the reload: %v", before, got)
	if got["a"] != 0 {
		t.Errorf("%d new tunnels went to the removed backend", got["a"])
	}
	stB, _ = g.backendStatus(t, b.addr)
	stC, _ := g.backendStatus(t, c.addr)
	if stB.Tunnels != int64(before["b"]+got["b"]) || stC.Tunnels != int64(got["c"]) {
		t.Errorf("counts: b %d (want %d), c %d (want %d)", stB.Tunnels, before["b"]+got["b"], stC.Tunnels, got["c"])
	}

	// a's tunnels end: a leaves the status.
	for i, ws := range conns {
		if names[i] == "a" {
			ws.Close()
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		if _, ok := g.backendStatus(t, a.addr); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed backend is still in the status after its tunnels closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.waitMetricEq(t, mTunnelsOpen, float64(n-before["a"]+100), 10*time.Second)
}

// TestRoutesWithStrip: two pools; /api (with strip) goes to the api pool
// with the prefix removed and the query kept, for requests and WebSocket
// handshakes; other paths go to the default pool; a pool whose only
// backend is dead answers 503 once it is out of rotation.
func TestRoutesWithStrip(t *testing.T) {
	seen := make(chan string, 16)
	api := startBackend(t, "api", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
			seen <- r.URL.RequestURI()
			fmt.Fprintf(w, "users from api\n")
		})
	})
	web := startBackend(t, "web", 0, nil)
	dead := reserveAddr(t) // bound, never listening: connections are refused
	g := startGate(t, "-b", web.addr, "-b", "api="+api.addr, "-b", "dead="+dead,
		"--route", "/api=api,strip", "--route", "/dead=dead", "--route", "ws.example.com/=api",
		"--max-fails", "1")

	resp, body := httpGet(t, "http://"+g.addr+"/api/users?id=7&x=%2F")
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "api" {
		t.Fatalf("/api/users: %s from %q: %q", resp.Status, resp.Header.Get("X-Backend"), body)
	}
	if got := <-seen; got != "/users?id=7&x=%2F" {
		t.Errorf("api backend got %q, want /users?id=7&x=%%2F (prefix stripped, query kept)", got)
	}
	for path, want := range map[string]string{"/": "web", "/apis": "web", "/other/api": "web", "/api": "api"} {
		resp, _ := httpGet(t, "http://"+g.addr+path)
		if got := resp.Header.Get("X-Backend"); got != want {
			t.Errorf("GET %s went to %q, want %q", path, got, want)
		}
	}
	// Host route.
	req, _ := http.NewRequest("GET", "http://"+g.addr+"/", nil)
	req.Host = "ws.example.com"
	if resp, err := e2eHTTP.Do(req); err != nil || resp.Header.Get("X-Backend") != "api" {
		t.Errorf("Host ws.example.com: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	// A WebSocket through the stripping route: /api/ws reaches /ws.
	ws, err := dialWS(g.addr, "/api/ws")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := readHello(ws); err != nil || name != "api" {
		t.Errorf("ws via /api/ws: %q %v", name, err)
	}
	ws.Close()

	// The dead pool: the first request finds out (502), then 503.
	resp, _ = httpGet(t, "http://"+g.addr+"/dead/x")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("first request to the dead pool: %s, want 502", resp.Status)
	}
	resp, _ = httpGet(t, "http://"+g.addr+"/dead/x")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dead pool after ejection: %s, want 503", resp.Status)
	}
	if st, _ := g.backendStatus(t, dead); st.State != "ejected" && st.State != "down" {
		t.Errorf("dead backend state %q", st.State)
	}
}

// TestBackendsFileFlags: --backends-file alone is enough; a bad file at
// start is a usage error naming the flag; bad health flags too.
func TestBackendsFileFlags(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	file := filepath.Join(t.TempDir(), "backends")
	os.WriteFile(file, []byte(be.addr+"\n"), 0o644)
	g := startGate(t, "--backends-file", file)
	if resp, _ := httpGet(t, "http://"+g.addr+"/"); resp.Header.Get("X-Backend") != "a" {
		t.Errorf("backend from the file not used")
	}

	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte(be.addr+"\nnot-an-address\n"), 0o644)
	for _, args := range [][]string{
		{"--backends-file", bad},
		{"--backends-file", filepath.Join(t.TempDir(), "missing")},
		{"-b", be.addr, "--health-rise", "0"},
		{"-b", be.addr, "--health-interval", "0s"},
		{"-b", be.addr, "--slow-start", "-1s"},
		{"-b", be.addr, "--health-path", "health"},
		{"-b", be.addr, "--max-fails", "-1"},
	} {
		var stderr strings.Builder
		code := run(args, io.Discard, &stderr)
		msg := strings.TrimSpace(stderr.String())
		flag := strings.TrimLeft(args[len(args)-2], "-")
		if code != 2 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, flag) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line naming %s", args, code, msg, flag)
		}
	}
}
