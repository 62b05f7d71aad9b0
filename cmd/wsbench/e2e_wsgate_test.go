package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench"
)

// startWsgate builds cmd/wsgate and runs it in front of the backends,
// listening on a port the kernel chose (read back from --ready-file: no port
// is picked by the test and then reused). wsbench only runs the binary, as
// any user would; it imports none of its code.
func startWsgate(t *testing.T, backends ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds cmd/wsgate")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "wsgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../wsgate").CombinedOutput(); err != nil {
		t.Skipf("cmd/wsgate does not build here, nothing to measure through: %v\n%s", err, out)
	}
	ready := filepath.Join(dir, "ready")
	args := []string{"-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--ready-file", ready}
	for _, b := range backends {
		args = append(args, "-b", b)
	}
	cmd := exec.Command(bin, args...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		if b, err := os.ReadFile(ready); err == nil {
			for l := range strings.SplitSeq(string(b), "\n") {
				if addr, ok := strings.CutPrefix(l, "listen "); ok {
					return addr
				}
			}
			t.Fatalf("--ready-file without a listen line: %q", b)
		}
		select {
		case <-exited:
			t.Fatalf("wsgate exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate wrote no --ready-file:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a process's output may write to while
// a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The echo backend through wsgate: probe says it works, echo and connect
// run without errors.
func TestThroughWsgate(t *testing.T) {
	backend := startEcho(t)
	proxy := startWsgate(t, backend)
	url := fmt.Sprintf("ws://%s/ws", proxy)

	code, stdout, _ := wsbench(t, "probe", "--backend", backend, url)
	if code != 0 || !strings.Contains(stdout, "result: works") {
		t.Errorf("probe through wsgate: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr := wsbench(t, "echo", "-c", "8", "-d", "1s", "-q", "--json", url)
	var res bench.Result
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.Messages == 0 || res.Errors != 0 {
		t.Errorf("echo through wsgate: exit %d, %+v\n%s", code, res.ErrorKinds, stderr)
	}
	code, stdout, _ = wsbench(t, "connect", "-c", "200", "--ramp", "1000/s", "-d", "500ms", "-q", "--source-ips", "127.0.0.1-127.0.0.4", url)
	if code != 0 || !strings.Contains(stdout, "connected 200, failed 0, dropped 0") {
		t.Errorf("connect through wsgate: exit %d\n%s", code, stdout)
	}
}

// killableBackend is a WebSocket backend that names itself in X-Backend and
// can die at once (listener and every connection closed, no close frame),
// as a crashed node does, or close its connections with a close code.
type killableBackend struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	open map[*websocket.Conn]bool // mu must be held
}

func startKillable(t *testing.T, name string) *killableBackend {
	t.Helper()
	k := &killableBackend{open: map[*websocket.Conn]bool{}}
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, http.Header{"X-Backend": {name}})
		if err != nil {
			return
		}
		k.mu.Lock()
		k.open[c] = true
		k.mu.Unlock()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
		k.mu.Lock()
		delete(k.open, c)
		k.mu.Unlock()
		c.Close()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	k.srv = &http.Server{Handler: mux}
	go k.srv.Serve(ln)
	t.Cleanup(k.kill)
	return k
}

func (k *killableBackend) conns() []*websocket.Conn {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*websocket.Conn
	for c := range k.open {
		out = append(out, c)
	}
	return out
}

// kill closes the listener and every connection, without close frames.
func (k *killableBackend) kill() {
	k.srv.Close()
	for _, c := range k.conns() {
		c.UnderlyingConn().Close()
	}
}

// A backend dies behind wsgate: every client it had reconnects (wsgate
// sends the new handshakes to the survivor), then the survivor restarts
// some connections with 1012 and the proxy passes the code through.
func TestHoldThroughWsgateWhenABackendDies(t *testing.T) {
	a, b := startKillable(t, "a"), startKillable(t, "b")
	proxy := startWsgate(t, a.addr, b.addr)
	const n = 60
	h, err := bench.StartHold(context.Background(), bench.HoldConfig{URL: "ws://" + proxy + "/ws", Conns: n,
		ReconnectDelayMin: 50 * time.Millisecond, ReconnectDelayMax: 250 * time.Millisecond, CountHeader: "X-Backend",
		SourceIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := func(what string, cond func(bench.HoldSnapshot) bool) bench.HoldSnapshot {
		t.Helper()
		s, ok := h.WaitUntil(ctx, cond)
		if !ok {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		return s
	}
	s := wait("all open", func(s bench.HoldSnapshot) bool { return s.Open == n })
	onA := s.OpenByHeader["a"]
	if onA == 0 || s.OpenByHeader["b"] == 0 {
		t.Fatalf("least-conn spread %v", s.OpenByHeader)
	}
	for len(a.conns())+len(b.conns()) != n {
		time.Sleep(10 * time.Millisecond)
	}

	a.kill()
	s = wait("all back, on b", func(s bench.HoldSnapshot) bool { return s.OpenByHeader["b"] == n })
	if s.Closes != onA || s.Reconnects != onA {
		t.Errorf("a had %d; closes %d (%v, no close frame %d), reconnects %d, failures %v",
			onA, s.Closes, s.ClosesByCode, s.NoCloseFrame, s.Reconnects, s.ReconnectFailures)
	}
	for len(b.conns()) != n {
		time.Sleep(10 * time.Millisecond)
	}

	for _, c := range b.conns()[:10] {
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1012, ""), time.Now().Add(time.Second))
	}
	wait("10 restarted", func(s bench.HoldSnapshot) bool { return s.ClosesByCode[1012] == 10 && s.Open == n })
	h.Stop()
	r := h.Wait()
	if r.StormCount != 2 || r.LongestStorm == nil || !r.LongestStorm.Recovered || r.OpenByHeaderAtEnd["b"] != n {
		t.Errorf("storms %d longest %+v open at end %v", r.StormCount, r.LongestStorm, r.OpenByHeaderAtEnd)
	}
	var text strings.Builder
	r.WriteText(&text)
	t.Logf("\n%s", text.String())
}
