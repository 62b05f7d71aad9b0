package main

// Operations (issue 8), end to end through the built binary: graceful drain
// with live tunnels and a request in flight, restart under load without a
// single failure, metrics against known traffic, access-log lines, the
// /status page in headless Chromium, and --check.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startGateAt is startGate on a given client address (a restart binds the
// address the running instance holds, SO_REUSEPORT) with an admin port of
// its own; ready once its --ready-file is written (the client address
// answers already, through the other instance).
func startGateAt(t *testing.T, addr string, args ...string) *gate {
	t.Helper()
	g, err := launchGate(t, "wsgate(2) stderr", addr, args)
	if err != nil {
		t.Fatalf("second wsgate on %s: %v", addr, err)
	}
	if g.addr != addr {
		t.Fatalf("second wsgate listens on %s, want %s", g.addr, addr)
	}
	return g
}

// TestOpsDrainSpreadsTunnelCloses: on SIGTERM the request in flight
// finishes (with Connection: close), the tunnels keep working while the
// drain waits, wsgate_draining reads 1, and the tunnels still open at the
// end are closed spread over the last --drain-spread of --drain-timeout,
// not at once; then the process exits 0.
func TestOpsDrainSpreadsTunnelCloses(t *testing.T) {
	entered := make(chan struct{}, 1)
	be := startBackend(t, "a", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			time.Sleep(time.Second)
			io.WriteString(w, "slow done\n")
		})
	})
	const (
		drain  = 4 * time.Second
		spread = 2 * time.Second
		n      = 30
	)
	g := startGate(t, "-b", be.addr, "--drain-timeout", drain.String(), "--drain-spread", spread.String())
	conns, _ := openTunnels(t, g.addr, n, 10)
	g.waitMetricEq(t, mTunnelsOpen, n, 10*time.Second)

	type result struct {
		status int
		close  bool
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := e2eHTTP.Get("http://" + g.addr + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, resp.Close, string(body), err}
	}()
	<-entered

	// Each tunnel's reader records when its connection ended.
	closedAt := make([]time.Time, n)
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			c.SetReadDeadline(time.Now().Add(drain + 10*time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					closedAt[i] = time.Now()
					return
				}
			}
		}()
	}

	if resp, _ := httpGet(t, "http://"+g.admin+"/ready"); resp.StatusCode != 200 {
		t.Fatalf("/ready before the drain: %d, want 200", resp.StatusCode)
	}
	sigAt := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-slow
	if r.err != nil || r.status != 200 || r.body != "slow done\n" || !r.close {
		t.Fatalf("request in flight at SIGTERM: status %d, Connection: close %v, body %q, err %v; want 200 with Connection: close", r.status, r.close, r.body, r.err)
	}
	if v := g.metric(t, "wsgate_draining"); v != 1 {
		t.Fatalf("wsgate_draining = %v during the drain, want 1", v)
	}
	if resp, _ := httpGet(t, "http://"+g.admin+"/ready"); resp.StatusCode != 503 {
		t.Fatalf("/ready during the drain: %d, want 503", resp.StatusCode)
	}
	// Tunnels still carry messages while the drain waits.
	for i, c := range conns[:5] {
		if err := c.WriteMessage(websocket.TextMessage, []byte(fmt.Sprint("ping ", i))); err != nil {
			t.Fatalf("tunnel %d during the drain: %v", i, err)
		}
	}
	readers.Wait()
	st, ok := g.wait(10 * time.Second)
	if !ok {
		t.Fatal("wsgate still running 10 s after its tunnels closed")
	}
	if st.ExitCode() != 0 {
		t.Fatalf("exit status %d after the drain, want 0", st.ExitCode())
	}
	at := make([]time.Duration, n)
	for i, c := range closedAt {
		at[i] = c.Sub(sigAt)
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	t.Logf("tunnel closes after SIGTERM: first %v, median %v, last %v", at[0].Round(time.Millisecond), at[n/2].Round(time.Millisecond), at[n-1].Round(time.Millisecond))
	// None before the spread began; not all at once within it.
	if at[0] < drain-spread-100*time.Millisecond {
		t.Errorf("a tunnel closed %v after SIGTERM, before the spread (%v..%v)", at[0], drain-spread, drain)
	}
	if at[n-1]-at[0] < spread/2 {
		t.Errorf("all %d tunnels closed within %v: not spread over %v", n, at[n-1]-at[0], spread)
	}
	if !strings.Contains(g.stderr.String(), fmt.Sprintf("closing %d tunnels over", n)) {
		t.Errorf("no 'closing %d tunnels over' line in the log", n)
	}
}

// TestOpsRestartUnderLoad: while clients keep making HTTP requests (new
// connections and keep-alive) and WebSocket handshakes, a second wsgate
// starts on the same address and the first one is stopped (SIGTERM). Not
// one request or handshake fails, and both instances served some.
func TestOpsRestartUnderLoad(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g1 := startGate(t, "-b", be.addr, "--drain-timeout", "3s")

	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	fail := func(what string, err error) {
		failed.Add(1)
		errMu.Lock()
		if len(errs) < 10 {
			errs = append(errs, what+": "+err.Error())
		}
		errMu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	keepAlive := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch w % 3 {
				case 0: // a new connection per request
					resp, err := e2eHTTP.Get("http://" + g1.addr + "/x")
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						fail("GET", err)
						continue
					}
				case 1: // keep-alive
					resp, err := keepAlive.Get("http://" + g1.addr + "/k")
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						fail("keep-alive GET", err)
						continue
					}
				case 2: // a WebSocket handshake, its first message, close
					c, err := dialWS(g1.addr, "/ws")
					if err == nil {
						_, err = readHello(c)
						c.Close()
					}
					if err != nil {
						fail("handshake", err)
						continue
					}
				}
				ok.Add(1)
			}
		}()
	}
	count := func() int64 { return ok.Load() }
	waitMore := func(n int64) {
		t.Helper()
		base := count()
		deadline := time.Now().Add(20 * time.Second)
		for count() < base+n {
			if time.Now().After(deadline) {
				t.Fatalf("load stalled: %d more in 20 s", count()-base)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitMore(200)
	g2 := startGateAt(t, g1.addr, "-b", be.addr, "--drain-timeout", "3s")
	waitMore(200)
	before := count()
	if err := g1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, exited := g1.wait(15 * time.Second); !exited {
		t.Fatal("the first wsgate did not exit within 15 s of SIGTERM")
	}
	during := count() - before
	waitMore(200)
	close(stop)
	wg.Wait()

	t.Logf("%d requests and handshakes succeeded (%d while the first instance drained), %d failed", count(), during, failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests or handshakes failed across the restart: %s", failed.Load(), strings.Join(errs, "; "))
	}
	served2 := g2.metric(t, `wsgate_requests_total{pool="default",class="2xx"}`) + g2.metric(t, `wsgate_requests_total{pool="default",class="1xx"}`)
	if served2 < 200 {
		t.Fatalf("the new instance served %v requests, want at least the 200 after the restart", served2)
	}
}

// TestOpsMetricsKnownTraffic: counters and gauges against traffic the test
// made itself.
func TestOpsMetricsKnownTraffic(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	api := startBackend(t, "api", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/api/hold", func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
		})
		mux.HandleFunc("/api/missing", http.NotFound)
	})
	web := startBackend(t, "web", 0, nil)
	g := startGate(t, "-b", web.addr, "-b", "api="+api.addr, "--route", "/api=api")

	for range 5 {
		httpGet(t, "http://"+g.addr+"/page")
	}
	for range 3 {
		httpGet(t, "http://"+g.addr+"/api/x")
	}
	for range 2 {
		if resp, _ := httpGet(t, "http://"+g.addr+"/api/missing"); resp.StatusCode != 404 {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
	}
	// A handshake with a bad version (426, never forwarded) and one the
	// backend declines (plain 200 on "/": no upgrade).
	raw := func(path, version string) string {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: %s\r\n\r\n", path, version)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	if l := raw("/ws", "12"); !strings.Contains(l, " 426 ") {
		t.Fatalf("bad version: %q", l)
	}
	if l := raw("/plain", "13"); !strings.Contains(l, " 200 ") {
		t.Fatalf("declined handshake: %q", l)
	}
	// Two tunnels, open then closed; one request held in flight.
	conns, _ := openTunnels(t, g.addr, 2, 2)
	web1 := fmt.Sprintf(`{pool="default",backend=%q}`, web.addr)
	api1 := fmt.Sprintf(`{pool="api",backend=%q}`, api.addr)
	g.waitMetricEq(t, "wsgate_backend_tunnels"+web1, 2, 10*time.Second)
	held := make(chan error, 1)
	go func() {
		resp, err := e2eHTTP.Get("http://" + g.addr + "/api/hold")
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	<-entered
	g.waitMetricEq(t, "wsgate_backend_inflight"+api1, 1, 10*time.Second)
	g.waitMetricEq(t, "wsgate_backend_inflight"+web1, 0, time.Second)
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	g.waitMetricEq(t, "wsgate_tunnel_duration_seconds_count", 2, 10*time.Second)

	want := map[string]float64{
		`wsgate_requests_total{pool="default",class="2xx"}`:       5 + 1, // pages, the declined handshake
		`wsgate_requests_total{pool="default",class="1xx"}`:       2,     // the tunnels' 101s
		`wsgate_requests_total{pool="api",class="2xx"}`:           3 + 1, // /api/x, /api/hold
		`wsgate_requests_total{pool="api",class="4xx"}`:           2,
		`wsgate_handshake_rejections_total{reason="bad_version"}`: 1,
		`wsgate_handshake_rejections_total{reason="declined"}`:    1,
		`wsgate_tunnel_opened_total`:                              2,
		`wsgate_backend_tunnels` + web1:                           0,
		`wsgate_backend_inflight` + api1:                          0,
		`wsgate_backend_up` + web1:                                1,
		`wsgate_backend_up` + api1:                                1,
		`wsgate_draining`:                                         0,
	}
	m, err := g.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range want {
		if got, ok := m[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if c := m[`wsgate_tunnel_closes_total{reason="client_closed"}`]; c != 2 {
		t.Errorf("tunnel closes by client = %v, want 2", c)
	}
}

// TestOpsAccessLog: one JSON line for a request and one for a tunnel close,
// with the fields the issue names and the values of the traffic.
func TestOpsAccessLog(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	logPath := filepath.Join(t.TempDir(), "access.log")
	g := startGate(t, "-b", be.addr, "--access-log", logPath)

	req, _ := http.NewRequest("POST", "http://"+g.addr+"/submit?x=1", strings.NewReader("0123456789"))
	req.Host = "shop.example"
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	c, err := dialWS(g.addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readHello(c); err != nil { // "hello from a": a 14-byte frame
		t.Fatal(err)
	}
	c.WriteMessage(websocket.TextMessage, []byte("hello")) // 11 bytes masked
	c.ReadMessage()                                        // 7 bytes back
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.ReadMessage()
	// Wait for the backend's FIN to come through before closing, so that
	// the backend is the side that finished first.
	c.UnderlyingConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c.UnderlyingConn())
	c.Close()
	g.waitMetricEq(t, "wsgate_tunnel_duration_seconds_count", 1, 10*time.Second)
	g.stop() // flushes the log

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	t.Logf("access log:\n%s", data)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (request, handshake, tunnel)", len(lines))
	}
	check := func(m map[string]any, field string, want any) {
		t.Helper()
		if fmt.Sprint(m[field]) != fmt.Sprint(want) {
			t.Errorf("%s line: %s = %v, want %v", m["type"], field, m[field], want)
		}
	}
	// Lines are written when each exchange ends, by connections running
	// concurrently: find each by what it is, not by its position.
	find := func(typ, method string) map[string]any {
		t.Helper()
		for _, m := range lines {
			if m["type"] == typ && (method == "" || m["method"] == method) {
				return m
			}
		}
		t.Fatalf("no %s %s line", typ, method)
		return nil
	}
	r := find("request", "POST")
	for f, v := range map[string]any{"type": "request", "client": "127.0.0.1", "method": "POST", "host": "shop.example",
		"path": "/submit?x=1", "status": 200, "pool": "default", "backend": be.addr, "bytes_in": 10, "bytes_out": len(body)} {
		check(r, f, v)
	}
	check(find("request", "GET"), "status", 101)
	tl := find("tunnel", "")
	// In: "hello" (11 bytes masked) and the close frame (8); out: the
	// hello (14), the echo (7) and the backend's close frame (4). The
	// backend answers the close and hangs up first.
	for f, v := range map[string]any{"type": "tunnel", "path": "/ws", "backend": be.addr, "reason": "backend_closed",
		"bytes_in": 11 + 8, "bytes_out": 14 + 7 + 4} {
		check(tl, f, v)
	}
	for _, f := range []string{"time", "duration_ms"} {
		if _, ok := tl[f]; !ok {
			t.Errorf("tunnel line has no %s", f)
		}
	}
}

// TestOpsStatusPageChromium: /status rendered by headless Chromium shows
// every backend with its state and live tunnels; a screenshot is taken
// (kept in $WSGATE_ARTIFACTS when set).
func TestOpsStatusPageChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	a := startBackend(t, "a", 0, nil)
	b := startBackend(t, "b", 0, nil)
	down := reserveAddr(t) // bound, never listening: the checks take it down
	g := startGate(t, "-b", a.addr, "-b", b.addr, "-b", "api="+down, "--route", "/api=api",
		"--health-interval", "200ms", "--health-fall", "1")
	openTunnels(t, g.addr, 3, 3)
	g.waitMetricEq(t, mTunnelsOpen, 3, 10*time.Second)
	g.waitMetricEq(t, fmt.Sprintf(`wsgate_backend_up{pool="api",backend=%q}`, down), 0, 10*time.Second)

	dir := t.TempDir()
	url := "http://" + g.admin + "/status?refresh=0"
	run := func(args ...string) []byte {
		t.Helper()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile")}
		cmd := exec.Command(chromium, append(append(base, args...), url)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("chromium %v did not finish in 60 s", args)
		}
		return []byte(out.String())
	}
	dom := string(run("--dump-dom"))
	for _, want := range []string{"wsgate status", "pool default", "pool api", a.addr, b.addr, down,
		`id="tunnels">3<`, `class="l phase-serving"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page as Chromium renders it lacks %q", want)
		}
	}
	// Rows: the two healthy backends carry the 3 tunnels between them; the
	// one nothing listens on is down.
	tunnels := 0
	for _, addr := range []string{a.addr, b.addr} {
		row := rowOf(dom, addr)
		if !strings.Contains(row, `class="healthy"`) {
			t.Errorf("row of %s is not healthy: %s", addr, row)
		}
		var n int
		if i := strings.Index(row, `class="tunnels">`); i >= 0 {
			fmt.Sscanf(row[i+len(`class="tunnels">`):], "%d", &n)
		}
		tunnels += n
	}
	if tunnels != 3 {
		t.Errorf("the backend rows show %d tunnels, want 3", tunnels)
	}
	if row := rowOf(dom, down); !strings.Contains(row, `class="down"`) {
		t.Errorf("row of %s is not down: %s", down, row)
	}

	shot := filepath.Join(dir, "status.png")
	run("--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(png) < 10<<10 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is %d bytes, not a rendered PNG page", len(png))
	}
	if out := os.Getenv("WSGATE_ARTIFACTS"); out != "" {
		os.MkdirAll(out, 0o755)
		os.WriteFile(filepath.Join(out, "status.png"), png, 0o644)
	}
	t.Logf("screenshot: %d bytes", len(png))
}

// rowOf returns the <tr> of the status page that holds addr's row.
func rowOf(dom, addr string) string {
	i := strings.Index(dom, `data-backend="`+addr+`"`)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(dom[:i], "<tr")
	end := strings.Index(dom[i:], "</tr>")
	if start < 0 || end < 0 {
		return ""
	}
	return dom[start : i+end]
}

// TestOpsCheck: --check on good and bad input.
func TestOpsCheck(t *testing.T) {
	a := startBackend(t, "a", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	})
	sick := startBackend(t, "sick", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte("# fleet\napi="+a.addr+",weight=2\n"), 0o644)
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte(a.addr+"\nnot a backend\n"), 0o644)
	_, port, _ := net.SplitHostPort(a.addr)

	code, out, errOut := runGate(t, "--check", "-l", "127.0.0.1:1", "-b", "localhost:"+port, "--backends-file", good, "--route", "/api=api")
	if code != 0 {
		t.Fatalf("--check on a good configuration: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"listen            127.0.0.1:1", "backend           api=" + a.addr + " weight 2",
		"(localhost:" + port + ")", "route             /api=api", "configuration ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("--check output lacks %q:\n%s", want, out)
		}
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"backend refuses", []string{"-b", reserveAddr(t)}, "connection refused"},
		{"health path fails", []string{"-b", sick.addr}, "GET /health"},
		{"name does not resolve", []string{"-b", "no-such-host.invalid:80"}, "no-such-host.invalid"},
		{"bad backends file", []string{"--backends-file", bad}, "line 2"},
		{"bad flag value", []string{"-b", a.addr, "--drain-timeout", "-1s"}, `"--drain-timeout"`},
		{"unwritable access log", []string{"-b", a.addr, "--access-log", "/nonexistent/dir/log"}, `"--access-log"`},
	} {
		code, out, errOut := runGate(t, append([]string{"--check"}, c.args...)...)
		if code != 1 || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "check failed") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 naming %q\nstdout: %s", c.name, code, errOut, c.want, out)
		}
	}
}
