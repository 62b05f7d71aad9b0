package main

// The close frames wsgate injects when it ends a tunnel on purpose (issue
// 17: rebalancing; also a drain on SIGTERM and --tunnel-idle-timeout) are
// valid for real WebSocket stacks: each client reads the close code through
// its own API (gorilla/websocket's CloseError, Node's ws 'close' event,
// Chromium's CloseEvent), and the backend, a gorilla/websocket server,
// reads wsgate's masked 1001 as a CloseError (gorilla refuses an unmasked
// frame from a client with a protocol error). Also POST /rebalance's
// answers.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closeRecorder is the backend side: /wsrec greets, then reads until the
// connection ends and records how (the CloseError code; -1 for any other
// error).
type closeRecorder struct {
	mu    sync.Mutex // guards codes, other
	codes map[int]int
	other []string
}

func newCloseRecorder() *closeRecorder { return &closeRecorder{codes: map[int]int{}} }

func (r *closeRecorder) handler(b *testBackend) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		b.handlers.Add(1)
		defer b.handlers.Done()
		c := b.upgrade(w, req)
		if c == nil {
			return
		}
		defer b.forget(c)
		if c.WriteMessage(websocket.TextMessage, []byte("hello from "+b.name)) != nil {
			return
		}
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				r.mu.Lock()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					r.codes[ce.Code]++
				} else {
					r.codes[-1]++
					if len(r.other) < 10 {
						r.other = append(r.other, err.Error())
					}
				}
				r.mu.Unlock()
				return
			}
		}
	}
}

// wait waits up to d until the backend recorded n ends, and returns the
// codes.
func (r *closeRecorder) wait(n int, d time.Duration) (map[int]int, []string) {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		total := 0
		for _, v := range r.codes {
			total += v
		}
		codes := make(map[int]int, len(r.codes))
		for k, v := range r.codes {
			codes[k] = v
		}
		other := append([]string(nil), r.other...)
		r.mu.Unlock()
		if total >= n || time.Now().After(deadline) {
			return codes, other
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closePage opens ?n= WebSockets to /wsrec on its own origin (wsgate),
// reports {"open":n} once every greeting came, then each close event with
// its code, to ?report= (the backend itself, so that reports still arrive
// while wsgate drains and accepts nothing new).
const closePage = `<!doctype html><title>close codes</title><script>
const q = new URLSearchParams(location.search);
const n = Number(q.get("n")), reportTo = q.get("report");
function report(v) { fetch(reportTo + "?r=" + encodeURIComponent(JSON.stringify(v)), {mode: "no-cors"}); }
let greeted = 0;
for (let i = 0; i < n; i++) {
  const ws = new WebSocket("ws://" + location.host + "/wsrec");
  let hello = false;
  ws.onmessage = () => { if (!hello) { hello = true; if (++greeted === n) report({open: n}); } };
  ws.onclose = (e) => report({close: i, code: e.code, wasClean: e.wasClean, reason: e.reason});
  ws.onerror = () => report({error: i});
}
</script>`

// closeReport is one line from a client of any kind: {"open": n}, or
// {"close": i, "code": c, ...}, or {"error": i, "message": m}.
type closeReport struct {
	Open     *int
	Close    *int
	Code     int
	WasClean *bool
	Reason   string
	Error    *int
	Message  string
}

// closeClient is a set of n idle WebSocket clients of one kind through
// wsgate to /wsrec, each reporting how it was closed.
type closeClient struct {
	kind    string
	n       int
	reports chan closeReport
}

// waitOpen waits until the n connections have their greeting.
func (cc *closeClient) waitOpen(t *testing.T) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-cc.reports:
			switch {
			case r.Open != nil:
				return
			case r.Error != nil:
				t.Fatalf("%s: connection %d: error %s", cc.kind, *r.Error, r.Message)
			case r.Close != nil:
				t.Fatalf("%s: connection %d closed (%d) before all were open", cc.kind, *r.Close, r.Code)
			}
		case <-deadline:
			t.Fatalf("%s: %d connections not open after 60 s", cc.kind, cc.n)
		}
	}
}

// closes collects close reports until want arrived or d passed (then it
// waits 500 ms more for any surplus), and returns the codes seen.
func (cc *closeClient) closes(t *testing.T, want int, d time.Duration) map[int]int {
	t.Helper()
	codes := map[int]int{}
	got := 0
	deadline := time.After(d)
	var extra <-chan time.Time
	for {
		select {
		case r := <-cc.reports:
			switch {
			case r.Close != nil:
				codes[r.Code]++
				got++
				if r.Message != "" {
					t.Logf("%s: connection %d ended without a close frame: %s", cc.kind, *r.Close, r.Message)
				}
				if r.WasClean != nil && !*r.WasClean {
					t.Errorf("%s: connection %d: close %d not clean (wasClean false)", cc.kind, *r.Close, r.Code)
				}
				if got == want && extra == nil {
					extra = time.After(500 * time.Millisecond)
				}
			case r.Error != nil:
				t.Errorf("%s: connection %d: error %s", cc.kind, *r.Error, r.Message)
			}
		case <-deadline:
			return codes
		case <-extra:
			return codes
		}
	}
}

// openGorilla opens n gorilla/websocket clients to /wsrec; each reads
// until its connection ends and reports the CloseError code (-1 for
// another error).
func openGorilla(t *testing.T, addr string, n int) *closeClient {
	t.Helper()
	cc := &closeClient{kind: "gorilla", n: n, reports: make(chan closeReport, 2*n+2)}
	for i := range n {
		c, err := dialWS(addr, "/wsrec")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := readHello(c); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					// No t.Logf here: this may run after the test ended
					// (its cleanup closes c); closes logs the message.
					var ce *websocket.CloseError
					r := closeReport{Close: &i, Code: -1}
					if errors.As(err, &ce) {
						r.Code = ce.Code
					} else {
						r.Message = err.Error()
					}
					cc.reports <- r
					return
				}
			}
		}()
	}
	cc.reports <- closeReport{Open: &n}
	return cc
}

// needNodeWS skips when Node.js or testdata/node's ws is missing (as the
// other Node tests do; CI installs both).
func needNodeWS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found in PATH")
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws", "package.json")); err != nil {
		t.Skip("testdata/node/node_modules/ws missing: run `npm ci --prefix testdata/node` (CI does)")
	}
}

// openNodeWS runs close-code-client.js: n connections with Node's ws.
func openNodeWS(t *testing.T, addr string, n int) *closeClient {
	t.Helper()
	needNodeWS(t)
	cc := &closeClient{kind: "node ws", n: n, reports: make(chan closeReport, 2*n+2)}
	cmd, stdin, out := startNode(t, "close-code-client.js stderr", true, "close-code-client.js", "ws://"+addr+"/wsrec", fmt.Sprint(n))
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r closeReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Logf("close-code-client.js: %q", sc.Text())
				continue
			}
			cc.reports <- r
		}
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cc
}

// chromiumPath finds chromium the way TestWSSChromium does: missing, the
// test fails in CI and is skipped elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	return chromium
}

// openChromium loads closePage from the backend through wsgate (plain
// http) in headless Chromium: n WebSockets to /wsrec, reports to
// be's /closereport directly. be must have been started with
// closeBackend's handlers.
func openChromium(t *testing.T, chromium, addr string, be *testBackend, reports chan closeReport, n int) *closeClient {
	t.Helper()
	cc := &closeClient{kind: "chromium", n: n, reports: reports}
	page := fmt.Sprintf("http://%s/close.html?n=%d&report=%s", addr, n, url.QueryEscape("http://"+be.addr+"/closereport"))
	dir := t.TempDir()
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--remote-debugging-port=0", page)
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", errb.String())
		}
	})
	return cc
}

// closeBackend starts a backend with /wsrec (rec records how each
// connection ended), /close.html (closePage) and /closereport (Chromium's
// reports, into reports).
func closeBackend(t *testing.T, name string, rec *closeRecorder, reports chan closeReport) *testBackend {
	t.Helper()
	return startBackend(t, name, 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/wsrec", rec.handler(b))
		mux.HandleFunc("/close.html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, closePage)
		})
		mux.HandleFunc("/closereport", func(w http.ResponseWriter, r *http.Request) {
			var cr closeReport
			if err := json.Unmarshal([]byte(r.URL.Query().Get("r")), &cr); err == nil && reports != nil {
				select {
				case reports <- cr:
				default:
				}
			}
		})
	})
}

// postRebalance does POST http://admin/rebalance?query and returns the
// status and body.
func postRebalance(t *testing.T, g *gate, query string) (int, string) {
	t.Helper()
	resp, err := e2eHTTP.Post("http://"+g.admin+"/rebalance?"+query, "", nil)
	if err != nil {
		t.Fatalf("POST /rebalance?%s: %v", query, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A one-off rebalancing pass (POST /rebalance) closes the excess tunnels
// of an over-loaded backend: each client, of three WebSocket stacks, reads
// the close code 1012 through its own API, and backend a reads wsgate's
// masked 1001. The clients are opened while backend b is not in the
// pool (--backends-file has a only), so all n are on a; then b joins by
// SIGHUP and the pass moves n/2 of them (the excess over the fair share;
// the clients here do not reconnect, and the pass ends once it started as
// many closes as the excess it began with). n is 8: a backend at most 2
// above its fair share counts as balanced, so 4 on one of 2 would move
// none.
func TestCloseFramesRebalance(t *testing.T) {
	const n = 8
	for _, kind := range []string{"gorilla", "node-ws", "chromium"} {
		t.Run(kind, func(t *testing.T) {
			var chromium string
			switch kind {
			case "chromium":
				chromium = chromiumPath(t)
			case "node-ws":
				needNodeWS(t)
			}
			rec := newCloseRecorder()
			pageReports := make(chan closeReport, 4*n)
			a := closeBackend(t, "a", rec, pageReports)
			b := startBackend(t, "b", 0, nil)
			file := filepath.Join(t.TempDir(), "backends")
			if err := os.WriteFile(file, []byte(a.addr+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			g := startGate(t, "--backends-file", file, "--health-interval", "200ms", "--health-rise", "1")
			var cc *closeClient
			switch kind {
			case "gorilla":
				cc = openGorilla(t, g.addr, n)
			case "node-ws":
				cc = openNodeWS(t, g.addr, n)
			case "chromium":
				cc = openChromium(t, chromium, g.addr, a, pageReports, n)
			}
			cc.waitOpen(t)
			g.waitMetricEq(t, mTunnelsOpen, n, 10*time.Second)
			openedAt := time.Now()

			if code, body := postRebalance(t, g, "rate=100/s"); code != http.StatusConflict {
				t.Fatalf("POST /rebalance with one backend: %d %q, want 409", code, body)
			}
			if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			g.waitState(t, b.addr, 15*time.Second, "healthy")
			// A pass closes no tunnel younger than 5 s (loop/rebalance.go).
			time.Sleep(time.Until(openedAt.Add(5500 * time.Millisecond)))
			if code, body := postRebalance(t, g, "rate=100/s"); code != http.StatusAccepted {
				t.Fatalf("POST /rebalance: %d %q, want 202", code, body)
			}
			codes := cc.closes(t, n/2, 20*time.Second)
			moved := g.metric(t, fmt.Sprintf(`wsgate_rebalance_moved_total{pool="default",backend=%q}`, a.addr))
			backend, other := rec.wait(n/2, 10*time.Second)
			t.Logf("%s: moved %v of %d; the clients read close codes %v; backend a read %v %v", kind, moved, n, codes, backend, other)
			if moved != n/2 {
				t.Errorf("moved %v tunnels, want %d (the excess)", moved, n/2)
			}
			if codes[1012] != n/2 || len(codes) != 1 {
				t.Errorf("%s clients read close codes %v, want 1012 × %d", kind, codes, n/2)
			}
			if backend[1001] != n/2 || len(backend) != 1 {
				t.Errorf("backend read %v (%v), want CloseError 1001 × %d", backend, other, n/2)
			}
			if v := g.metric(t, `wsgate_tunnel_close_fallbacks_total`); v != 0 {
				t.Errorf("%v plain-close fallbacks", v)
			}
			if v := g.metric(t, `wsgate_tunnel_close_frames_total{to="client",code="1012"}`); v != n/2 {
				t.Errorf("wsgate counts %v 1012 frames to clients, want %d", v, n/2)
			}
			g.waitMetricEq(t, mTunnelsOpen, n-n/2, 10*time.Second)
		})
	}
}

// On SIGTERM wsgate drains: the tunnels still open at the end of
// --drain-timeout are closed with 1012, which gorilla, Node's ws and
// Chromium clients all read, and the backend reads a masked 1001 for each.
func TestCloseFramesDrain(t *testing.T) {
	const n = 3
	rec := newCloseRecorder()
	pageReports := make(chan closeReport, 4*n)
	a := closeBackend(t, "a", rec, pageReports)
	g := startGate(t, "-b", a.addr, "--drain-timeout", "3s", "--drain-spread", "1s")
	clients := []*closeClient{openGorilla(t, g.addr, n)}
	clients[0].waitOpen(t)
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws", "package.json")); err == nil {
			cc := openNodeWS(t, g.addr, n)
			cc.waitOpen(t)
			clients = append(clients, cc)
		} else {
			t.Log("no testdata/node/node_modules/ws: node ws clients left out")
		}
	} else {
		t.Log("no node: node ws clients left out")
	}
	if chromium, err := exec.LookPath("chromium"); err == nil {
		cc := openChromium(t, chromium, g.addr, a, pageReports, n)
		cc.waitOpen(t)
		clients = append(clients, cc)
	} else if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs it)")
	} else {
		t.Log("no chromium: Chromium clients left out")
	}
	total := n * len(clients)
	g.waitMetricEq(t, mTunnelsOpen, float64(total), 10*time.Second)

	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, cc := range clients {
		codes := cc.closes(t, n, 20*time.Second)
		t.Logf("%s clients read close codes %v", cc.kind, codes)
		if codes[1012] != n || len(codes) != 1 {
			t.Errorf("%s clients read close codes %v, want 1012 × %d", cc.kind, codes, n)
		}
	}
	backend, other := rec.wait(total, 10*time.Second)
	t.Logf("backend read %v %v", backend, other)
	if backend[1001] != total || len(backend) != 1 {
		t.Errorf("backend read %v (%v), want CloseError 1001 × %d", backend, other, total)
	}
	st, ok := g.wait(15 * time.Second)
	if !ok {
		t.Fatal("wsgate still running 15 s after SIGTERM")
	}
	if st.ExitCode() != 0 {
		t.Errorf("exit status %d after the drain, want 0", st.ExitCode())
	}
}

// --tunnel-idle-timeout 2s: an idle tunnel is closed with 1001 (Going
// Away) to the client, which gorilla and Node's ws read, and a masked 1001
// to the backend, which gorilla's server reads as a CloseError.
func TestCloseFramesIdleTimeout(t *testing.T) {
	rec := newCloseRecorder()
	a := closeBackend(t, "a", rec, nil)
	g := startGate(t, "-b", a.addr, "--tunnel-idle-timeout", "2s")
	clients := []*closeClient{openGorilla(t, g.addr, 2)}
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "ws", "package.json")); err == nil {
			clients = append(clients, openNodeWS(t, g.addr, 2))
		}
	}
	opened := time.Now()
	for _, cc := range clients {
		cc.waitOpen(t)
	}
	total := 0
	for _, cc := range clients {
		codes := cc.closes(t, cc.n, 30*time.Second)
		total += cc.n
		t.Logf("%s clients read close codes %v %v after they opened", cc.kind, codes, time.Since(opened).Round(100*time.Millisecond))
		if codes[1001] != cc.n || len(codes) != 1 {
			t.Errorf("%s clients read close codes %v, want 1001 × %d", cc.kind, codes, cc.n)
		}
	}
	if since := time.Since(opened); since < 2*time.Second {
		t.Errorf("closed %v after opening, before the 2 s idle timeout", since)
	}
	backend, other := rec.wait(total, 10*time.Second)
	t.Logf("backend read %v %v", backend, other)
	if backend[1001] != total || len(backend) != 1 {
		t.Errorf("backend read %v (%v), want CloseError 1001 × %d", backend, other, total)
	}
	if v := g.metric(t, `wsgate_tunnel_close_frames_total{to="client",code="1001"}`); v != float64(total) {
		t.Errorf("wsgate counts %v 1001 frames to clients, want %d", v, total)
	}
}

// POST /rebalance on the admin listener: 202 when a pass starts (and a
// pass is counted and logged), 404 for an unknown pool, 409 with fewer
// than 2 healthy backends (and with no rate given and no --rebalance),
// 400 for a bad rate; only POST.
func TestRebalanceAdminAnswers(t *testing.T) {
	a := startBackend(t, "a", 0, nil)
	bAddr := reserveAddr(t) // b refuses connections until it starts
	g := startGate(t, "-b", a.addr, "-b", bAddr, "--health-interval", "100ms", "--health-rise", "1", "--health-fall", "1")
	g.waitState(t, bAddr, 15*time.Second, "down")
	g.waitState(t, a.addr, 15*time.Second, "healthy")
	check := func(query string, want int, wantBody string) {
		t.Helper()
		code, body := postRebalance(t, g, query)
		if code != want || !strings.Contains(body, wantBody) {
			t.Errorf("POST /rebalance?%s: %d %q, want %d with %q", query, code, body, want, wantBody)
		}
	}
	check("rate=100/s", http.StatusConflict, "2 healthy")
	check("pool=default&rate=100/s", http.StatusConflict, "2 healthy")
	check("pool=nope&rate=100/s", http.StatusNotFound, "nope")
	for _, bad := range []string{"fast", "-1/s", "100/d", "NaN", "Inf/s", "2000000/s", "1e400"} {
		check("rate="+url.QueryEscape(bad), http.StatusBadRequest, "bad rate")
	}

	startBackendAt(t, "b", bAddr)
	g.waitState(t, bAddr, 15*time.Second, "healthy")
	check("pool=nope&rate=100/s", http.StatusNotFound, "nope")
	check("rate=fast", http.StatusBadRequest, "bad rate")
	// No rate, and no standing --rebalance rate to fall back on.
	check("", http.StatusConflict, "rate")
	if v := g.metric(t, `wsgate_rebalance_passes_total{pool="default"}`); v != 0 {
		t.Fatalf("%v passes before any was started", v)
	}
	check("rate=100/s", http.StatusAccepted, "rebalancing pool default")
	check("pool=default&rate=6000/m", http.StatusAccepted, "rebalancing pool default")
	if v := g.metric(t, `wsgate_rebalance_passes_total{pool="default"}`); v < 1 {
		t.Errorf("wsgate_rebalance_passes_total = %v after a 202, want ≥ 1", v)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.stderr.String(), "rebalancing pass started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(g.stderr.String(), "rebalancing pass started") {
		t.Errorf("no log line for the pass")
	}
	for _, method := range []string{"GET", "PUT"} {
		req, _ := http.NewRequest(method, "http://"+g.admin+"/rebalance?rate=100/s", nil)
		resp, err := e2eHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /rebalance: %d, want 405", method, resp.StatusCode)
		}
	}

	// With a standing --rebalance rate, a POST without a rate takes it.
	g2 := startGate(t, "-b", a.addr, "-b", bAddr, "--rebalance", "50/s", "--health-interval", "100ms", "--health-rise", "1")
	g2.waitState(t, a.addr, 15*time.Second, "healthy")
	g2.waitState(t, bAddr, 15*time.Second, "healthy")
	if code, body := postRebalance(t, g2, ""); code != http.StatusAccepted {
		t.Errorf("POST /rebalance with --rebalance 50/s and no rate: %d %q, want 202", code, body)
	}
}
