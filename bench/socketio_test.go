package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nodeDir is the shared Node.js test fleet (npm ci --prefix testdata/node).
var nodeDir = filepath.Join("..", "testdata", "node")

// startNode runs a script from testdata/node as a server named name and
// returns its address; it skips when node or the npm packages are missing.
func startNode(t *testing.T, script, name string) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; .ci/run installs the Node.js fleet")
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "socket.io")); err != nil {
		t.Skip("testdata/node/node_modules missing: run npm ci --prefix testdata/node")
	}
	cmd := exec.Command(bin, script, "0", name)
	cmd.Dir = nodeDir
	stdin, _ := cmd.StdinPipe() // the script exits when stdin closes
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lines <- l
	}()
	select {
	case l := <-lines:
		port, ok := strings.CutPrefix(strings.TrimSpace(l), "listening ")
		if !ok {
			t.Fatalf("%s: unexpected first line %q", script, l)
		}
		return "127.0.0.1:" + port
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not start", script)
	}
	return ""
}

func TestSocketIO4PollingThenUpgrade(t *testing.T) {
	addr := startNode(t, "sio-server.js", "node-a")
	cfg := quickCfg(ModeSocketIO, "http://"+addr)
	cfg.Duration = time.Second
	res := runOK(t, cfg)
	if res.Connected != 4 || res.Upgraded != 4 || res.Messages == 0 || res.SessionUnknown != 0 {
		t.Fatalf("connected %d upgraded %d acks %d sid unknown %d", res.Connected, res.Upgraded, res.Messages, res.SessionUnknown)
	}
	if res.Nodes["node-a"] != res.Messages {
		t.Errorf("nodes %v for %d acks", res.Nodes, res.Messages)
	}
	var b strings.Builder
	res.WriteText(&b)
	if !strings.Contains(b.String(), "upgraded 4") || !strings.Contains(b.String(), "node-a") {
		t.Errorf("summary:\n%s", b.String())
	}
}

func TestSocketIO4WebSocketOnlyWithRate(t *testing.T) {
	addr := startNode(t, "sio-server.js", "node-b")
	cfg := quickCfg(ModeSocketIO, "ws://"+addr+"/socket.io/")
	cfg.Transport, cfg.Rate, cfg.Duration, cfg.Size = "websocket", 200, time.Second, 1000
	res := runOK(t, cfg)
	if res.Connected != 4 || res.Upgraded != 0 || res.Messages < 20 || res.Nodes["node-b"] != res.Messages {
		t.Fatalf("connected %d upgraded %d acks %d nodes %v", res.Connected, res.Upgraded, res.Messages, res.Nodes)
	}
}

func TestSocketIO2EngineIO3(t *testing.T) {
	addr := startNode(t, "sio2-server.js", "node-v2")
	for _, tr := range []string{"polling", "websocket"} {
		cfg := quickCfg(ModeSocketIO, "http://"+addr)
		cfg.EIO, cfg.Transport = 3, tr
		res := runOK(t, cfg)
		if res.Connected != 4 || res.Messages == 0 || res.Nodes["node-v2"] != res.Messages {
			t.Fatalf("%s: connected %d acks %d nodes %v", tr, res.Connected, res.Messages, res.Nodes)
		}
	}
}

// Two nodes behind a round-robin proxy with no stickiness: polling requests
// of one session land on the node that did not issue its sid, and wsbench
// counts the "Session ID unknown" answers.
func TestSocketIOCountsSessionIDUnknown(t *testing.T) {
	a := startNode(t, "sio-server.js", "node-a")
	b := startNode(t, "sio-server.js", "node-b")
	var n atomic.Int64
	targets := []*url.URL{{Scheme: "http", Host: a}, {Scheme: "http", Host: b}}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(targets[n.Add(1)%2])
	}}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	defer srv.Close()

	cfg := quickCfg(ModeSocketIO, "http://"+ln.Addr().String())
	cfg.Conns, cfg.Duration = 6, 300*time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.SessionUnknown == 0 || res.ErrorKinds["socket.io: Session ID unknown"] != res.SessionUnknown {
		t.Fatalf("sid unknown %d, errors %v", res.SessionUnknown, res.ErrorKinds)
	}
	var b2 strings.Builder
	res.WriteText(&b2)
	if !strings.Contains(b2.String(), fmt.Sprintf("\"Session ID unknown\" %d", res.SessionUnknown)) {
		t.Errorf("summary:\n%s", b2.String())
	}
}
