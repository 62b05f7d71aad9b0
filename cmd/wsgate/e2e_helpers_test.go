package main

// Helpers for the binary-level end-to-end tests (e2e_*_test.go): the wsgate
// binary is built once by TestMain and run as a child process per test,
// against real backends (net/http and gorilla/websocket servers) on
// loopback. Everything talks to 127.0.0.1 only.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsgate/wsgate/loop/looptest"
)

// gateBin is the wsgate binary built by TestMain.
var gateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	gateBin = filepath.Join(dir, "wsgate")
	build := exec.Command("go", "build", "-o", gateBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build of cmd/wsgate failed: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// wsgate as a child process

// logWriter copies a child's output into the test log, line by line (the
// first maxLogLines lines), and keeps the first MiB for assertions.
type logWriter struct {
	t      *testing.T
	prefix string

	mu      sync.Mutex // guards the fields below
	partial []byte
	all     bytes.Buffer
	lines   int
	closed  bool
}

const maxLogLines = 300

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all.Len() < 1<<20 {
		w.all.Write(p)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if w.lines < maxLogLines && !w.closed {
			w.t.Logf("%s: %s", w.prefix, w.partial[:i])
		}
		w.lines++
		w.partial = append(w.partial[:0], w.partial[i+1:]...)
	}
	return len(p), nil
}

// close stops logging (the test is ending) and reports what was left out.
func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 && w.lines < maxLogLines && !w.closed {
		w.t.Logf("%s: %s", w.prefix, w.partial)
	}
	if w.lines > maxLogLines && !w.closed {
		w.t.Logf("%s: (%d more lines not shown)", w.prefix, w.lines-maxLogLines)
	}
	w.closed = true
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// gate is a running wsgate process.
type gate struct {
	t        *testing.T
	cmd      *exec.Cmd
	addr     string   // client listener, 127.0.0.1:port (the first of listens)
	listens  []string // every plain listener, from --ready-file
	tlsAddrs []string // TLS listeners, from --ready-file
	admin    string   // admin listener, 127.0.0.1:port
	ready    string   // the --ready-file
	stderr   *logWriter

	done  chan struct{}    // closed once the process has exited
	state *os.ProcessState // set before done is closed
}

// startGate runs wsgate -l 127.0.0.1:0 --admin 127.0.0.1:0 args... and
// reads the ports the kernel chose back from --ready-file, which wsgate
// writes once every listener is bound: no port is chosen by the test, so
// none can be taken by someone else between choosing and binding. The
// process is stopped (SIGTERM, then SIGKILL after 5 s) when the test ends.
func startGate(t *testing.T, args ...string) *gate {
	t.Helper()
	g, err := launchGate(t, "wsgate stderr", "127.0.0.1:0", args)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// launchGate runs wsgate -l listen --admin 127.0.0.1:0 --ready-file F
// args... and waits until F appears (every listener bound and listening:
// the kernel queues connections until the accept loops run), or the
// process exits, or 15 s pass.
func launchGate(t *testing.T, logPrefix, listen string, args []string) (*gate, error) {
	ready := filepath.Join(t.TempDir(), "ready")
	g := &gate{t: t, ready: ready, done: make(chan struct{})}
	full := append([]string{"-l", listen, "--admin", "127.0.0.1:0", "--ready-file", ready}, args...)
	g.stderr = &logWriter{t: t, prefix: logPrefix}
	g.cmd = exec.Command(gateBin, full...)
	g.cmd.Stdout = g.stderr
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		return g, fmt.Errorf("starting wsgate: %v", err)
	}
	t.Logf("started wsgate (pid %d) %s", g.cmd.Process.Pid, strings.Join(full, " "))
	go func() {
		g.cmd.Wait()
		g.state = g.cmd.ProcessState
		close(g.done)
	}()
	t.Cleanup(g.stop)
	lines, err := waitReadyFile(ready, g.done, 15*time.Second)
	if err != nil {
		g.stop()
		return g, fmt.Errorf("wsgate %s: %v", strings.Join(full, " "), err)
	}
	for _, l := range lines {
		kind, addr, _ := strings.Cut(l, " ")
		switch kind {
		case "listen":
			g.listens = append(g.listens, addr)
		case "tls":
			g.tlsAddrs = append(g.tlsAddrs, addr)
		case "admin":
			g.admin = addr
		}
	}
	if len(g.listens) == 0 || g.admin == "" {
		g.stop()
		return g, fmt.Errorf("--ready-file has no listen or admin line: %q", lines)
	}
	g.addr = g.listens[0]
	return g, nil
}

// waitReadyFile waits for a --ready-file and returns its lines; it fails
// when exited is closed first (the process ended) or after d. wsgate
// renames the file into place whole, so a file that exists is complete.
func waitReadyFile(path string, exited <-chan struct{}, d time.Duration) ([]string, error) {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		select {
		case <-exited:
			return nil, errors.New("exited during startup")
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no %s after %v", path, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *gate) pid() int { return g.cmd.Process.Pid }

// pidList is pid as the list cpuOf reads.
func (g *gate) pidList() []int { return []int{g.pid()} }

// exited reports whether the process has exited, without waiting.
func (g *gate) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit.
func (g *gate) wait(d time.Duration) (*os.ProcessState, bool) {
	select {
	case <-g.done:
		return g.state, true
	case <-time.After(d):
		return nil, false
	}
}

func (g *gate) stop() {
	if !g.exited() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		if _, ok := g.wait(5 * time.Second); !ok {
			g.t.Logf("wsgate did not exit within 5 s of SIGTERM; killing it")
			g.cmd.Process.Kill()
			<-g.done
		}
	}
	g.stderr.close()
}

// ---------------------------------------------------------------------------
// metrics

// metrics reads http://admin/metrics into name{labels} → value.
func (g *gate) metrics() (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// metric returns one metric's value; the test fails when it is missing.
func (g *gate) metric(t *testing.T, name string) float64 {
	t.Helper()
	m, err := g.metrics()
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("metric %s missing from /metrics", name)
	}
	return v
}

// waitMetric polls name until ok(value) holds, for up to d; the test fails
// with the last value seen otherwise.
func (g *gate) waitMetric(t *testing.T, name, want string, d time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	last, seen := 0.0, false
	var lastErr error
	for {
		m, err := g.metrics()
		if err == nil {
			last, seen = m[name]
			if seen && ok(last) {
				return last
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			switch {
			case lastErr != nil:
				t.Fatalf("metric %s: want %s within %v; reading metrics: %v", name, want, d, lastErr)
			case !seen:
				t.Fatalf("metric %s: want %s within %v; it is missing from /metrics", name, want, d)
			default:
				t.Fatalf("metric %s: want %s within %v; it is %v", name, want, d, last)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *gate) waitMetricEq(t *testing.T, name string, want float64, d time.Duration) {
	t.Helper()
	g.waitMetric(t, name, fmt.Sprint(want), d, func(v float64) bool { return v == want })
}

func activeMetric(backendAddr string) string {
	return fmt.Sprintf(`wsgate_backend_active{pool="default",backend=%q}`, backendAddr)
}

const (
	mTunnelsOpen = `wsgate_tunnels_open`
	mConnsOpen   = `wsgate_connections_open`
)

// rssKiB is a process's VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// ---------------------------------------------------------------------------
// addresses and raw sockets

// reserveAddr returns 127.0.0.1:port of a socket bound (SO_REUSEADDR,
// SO_REUSEPORT) but never listening, kept open until the test ends: a
// connection to it is refused (RST: no listener), and the port is not
// handed out to anyone else meanwhile (a bind to port 0 and the ephemeral
// port of an outgoing connection both skip a bound port). A listener of
// this test may still bind the address, since Go's listeners (and nginx's,
// HAProxy's, Node's) set SO_REUSEADDR and the reservation does not
// listen: that is how a backend is killed and restarted on one address
// with no window in which another process could take it.
func reserveAddr(t *testing.T) string { return looptest.ReserveAddr(t) }

// dialSmallRcvBuf connects with a small SO_RCVBUF set before the handshake
// (which also turns receive-buffer autotuning off), so that a client that
// stops reading stops the flow after a few dozen KiB of kernel buffer.
func dialSmallRcvBuf(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return d.DialContext(ctx, network, addr)
}

// ---------------------------------------------------------------------------
// backends

// testBackend is an HTTP + WebSocket server on 127.0.0.1 that identifies itself:
// header X-Backend: name on every response, and "hello from name" as the
// first message of every WebSocket connection on /ws (then it echoes).
type testBackend struct {
	name string
	addr string
	srv  *http.Server
	ln   net.Listener

	mu     sync.Mutex // guards conns, killed
	conns  map[net.Conn]struct{}
	killed bool

	handlers sync.WaitGroup // WebSocket handlers running
}

var wsUpgrader = websocket.Upgrader{
	ReadBufferSize:  4 << 10,
	WriteBufferSize: 4 << 10,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// startBackend starts a backend; extra may add handlers to its mux (it has
// "/ws" and "/" already). sndbuf > 0 sets SO_SNDBUF on accepted sockets.
// Its address stays reserved until the test ends (reserveAddr): once
// killed it refuses connections, and startBackendAt can bring it back.
func startBackend(t *testing.T, name string, sndbuf int, extra func(b *testBackend, mux *http.ServeMux)) *testBackend {
	t.Helper()
	addr := reserveAddr(t) // kill leaves it refusing, and no one else's
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
	if extra != nil {
		extra(b, mux)
	}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	var l net.Listener = ln
	if sndbuf > 0 {
		l = sndbufListener{ln, sndbuf}
	}
	go b.srv.Serve(l)
	t.Cleanup(func() {
		b.kill()
		waitGroupTimeout(&b.handlers, 10*time.Second)
	})
	return b
}

type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(l.size)
	}
	return c, err
}

// upgrade upgrades r and tracks the connection so that kill closes it; nil
// when the upgrade failed or the backend is already killed.
func (b *testBackend) upgrade(w http.ResponseWriter, r *http.Request) *websocket.Conn {
	c, err := wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.killed {
		c.Close()
		return nil
	}
	b.conns[c.NetConn()] = struct{}{}
	return c
}

func (b *testBackend) forget(c *websocket.Conn) {
	b.mu.Lock()
	delete(b.conns, c.NetConn())
	b.mu.Unlock()
	c.Close()
}

func (b *testBackend) echoWS(w http.ResponseWriter, r *http.Request) {
	b.handlers.Add(1)
	defer b.handlers.Done()
	c := b.upgrade(w, r)
	if c == nil {
		return
	}
	defer b.forget(c)
	if c.WriteMessage(websocket.TextMessage, []byte("hello from "+b.name)) != nil {
		return
	}
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(mt, p) != nil {
			return
		}
	}
}

// kill stops the backend the way a crash would look from outside: the
// listener and every connection (hijacked WebSocket ones included) close.
func (b *testBackend) kill() {
	b.mu.Lock()
	b.killed = true
	conns := b.conns
	b.conns = map[net.Conn]struct{}{}
	b.mu.Unlock()
	b.srv.Close()
	for c := range conns {
		c.Close()
	}
}

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// ---------------------------------------------------------------------------
// clients

var wsDialer = websocket.Dialer{
	HandshakeTimeout: 15 * time.Second,
	ReadBufferSize:   4 << 10,
	WriteBufferSize:  4 << 10,
}

// dialWS opens ws://addr/path through wsgate.
func dialWS(addr, path string) (*websocket.Conn, error) {
	c, resp, err := wsDialer.Dial("ws://"+addr+path, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial ws://%s%s: %w (HTTP %s)", addr, path, err, resp.Status)
		}
		return nil, fmt.Errorf("dial ws://%s%s: %w", addr, path, err)
	}
	return c, nil
}

// readHello reads the first message and returns the backend name in it.
func readHello(c *websocket.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	mt, p, err := c.ReadMessage()
	if err != nil {
		return "", fmt.Errorf("reading hello: %w", err)
	}
	name, ok := strings.CutPrefix(string(p), "hello from ")
	if mt != websocket.TextMessage || !ok {
		return "", fmt.Errorf("first message is %q (type %d), want \"hello from <name>\"", p, mt)
	}
	return name, nil
}

// openTunnels opens n WebSocket connections to addr/ws with at most par
// handshakes at a time, and returns them with the backend name each got.
// They are closed when the test ends, if the test has not closed them.
func openTunnels(t *testing.T, addr string, n, par int) ([]*websocket.Conn, []string) {
	t.Helper()
	conns := make([]*websocket.Conn, n)
	names := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialWS(addr, "/ws")
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			names[i], errs[i] = readHello(c)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	failed := 0
	for i, err := range errs {
		if err != nil {
			if failed < 5 {
				t.Errorf("tunnel %d: %v", i, err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d WebSocket connections failed", failed, n)
	}
	return conns, names
}

// e2eHTTP makes one connection per request (no keep-alive) and gives up
// after 20 s.
var e2eHTTP = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// httpGet does GET url and returns the response with its body read.
func httpGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := e2eHTTP.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

// isTimeoutErr reports whether err is a deadline/timeout error.
func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
