package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench"
)

func startEcho(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, p)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func wsbench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLoadFlagsToConfig(t *testing.T) {
	var f loadFlags
	fs := newLoadFlagSet(bench.ModeSocketIO, &f, &bytes.Buffer{})
	err := fs.Parse([]string{"-c", "9000", "-d", "5m", "--ramp", "500/s", "-s", "16KiB", "--rate", "2000/s",
		"--source-ips", "127.0.0.1-127.0.0.8", "-H", "Origin: http://a, http://b", "-H", "Cookie: x=1",
		"--transport", "websocket", "--eio", "3", "ws://127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(bench.ModeSocketIO, &f, fs.Arg(0))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Conns != 9000 || cfg.Duration != 5*time.Minute || cfg.Ramp != 500 || cfg.Size != 16384 || cfg.Rate != 2000 ||
		len(cfg.SourceIPs) != 8 || cfg.Transport != "websocket" || cfg.EIO != 3 {
		t.Errorf("config %+v", cfg)
	}
	// -H keeps a value with commas whole.
	if len(cfg.Headers) != 2 || cfg.Headers[0] != (bench.Header{Name: "Origin", Value: "http://a, http://b"}) {
		t.Errorf("headers %+v", cfg.Headers)
	}
}

func TestBadFlagsExit2WithTheFlagNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"echo", "--ramp", "fast", "ws://127.0.0.1:1/"}, "--ramp"},
		{[]string{"echo", "-s", "12XB", "ws://127.0.0.1:1/"}, "-s/--size"},
		{[]string{"echo", "--source-ips", "127.0.0.9-127.0.0.1", "ws://127.0.0.1:1/"}, "--source-ips"},
		{[]string{"echo", "-H", "nocolon", "ws://127.0.0.1:1/"}, "-H/--header"},
		{[]string{"echo", "-c", "0", "ws://127.0.0.1:1/"}, "-c/--conns"},
		{[]string{"echo"}, "URL is required"},
		{[]string{"echo", "ftp://x/"}, "scheme"},
		{[]string{"socketio", "--transport", "smoke", "ws://127.0.0.1:1/"}, "transport"},
		{[]string{"frobnicate"}, "unknown subcommand"},
		{[]string{"probe"}, "URL is required"},
		{[]string{"echo", "--no-such-flag", "ws://x/"}, "unknown flag"},
	} {
		code, _, stderr := wsbench(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestEchoJSONAndReport(t *testing.T) {
	addr := startEcho(t)
	report := filepath.Join(t.TempDir(), "r.html")
	code, stdout, stderr := wsbench(t, "echo", "-c", "3", "-d", "1500ms", "-s", "100", "--json", "--report", report, "ws://"+addr+"/ws")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if res.Mode != "echo" || res.Connected != 3 || res.Messages == 0 || res.Latency.P99MS <= 0 || res.Size != 100 {
		t.Errorf("result %+v", res)
	}
	// One progress line per second on stderr. The open count in a line is a
	// sample (on a loaded machine the first may come after the run ended);
	// the result's MaxOpen is exact.
	if n := strings.Count(stderr, "wsbench echo "); n < 1 || !strings.Contains(stderr, "p99") || !strings.Contains(stderr, "open ") || res.MaxOpen != 3 {
		t.Errorf("progress lines (%d):\n%s", n, stderr)
	}
	page, err := os.ReadFile(report)
	if err != nil || !bytes.Contains(page, []byte(`<svg id="latency-over-time"`)) {
		t.Errorf("report: %v", err)
	}
}

func TestConnectAndHandshakeText(t *testing.T) {
	addr := startEcho(t)
	code, stdout, stderr := wsbench(t, "connect", "-c", "20", "--ramp", "200/s", "-d", "300ms", "-q", "--source-ips", "127.0.0.1-127.0.0.2", "ws://"+addr+"/ws")
	if code != 0 || !strings.Contains(stdout, "connected 20, failed 0") || !strings.Contains(stdout, "handshake") || stderr != "" {
		t.Errorf("connect: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = wsbench(t, "handshake", "-c", "2", "-d", "300ms", "-q", "ws://"+addr+"/ws")
	if code != 0 || !strings.Contains(stdout, "handshakes") || !strings.Contains(stdout, " ok, 0 failed") {
		t.Errorf("handshake: exit %d\n%s", code, stdout)
	}
}

// refusingAddr returns an address that refuses connections: a socket bound
// to it and not listening, kept until the test ends, so that no one else
// can take the port meanwhile.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

func TestNothingConnectedExits1(t *testing.T) {
	addr := refusingAddr(t)
	code, stdout, _ := wsbench(t, "connect", "-c", "2", "-d", "100ms", "-q", "ws://"+addr+"/ws")
	if code != exitProblem || !strings.Contains(stdout, "connection refused") {
		t.Errorf("exit %d\n%s", code, stdout)
	}
}

func TestProbeCommand(t *testing.T) {
	addr := startEcho(t)
	code, stdout, _ := wsbench(t, "probe", "--backend", addr, "ws://"+addr+"/ws")
	if code != 0 || !strings.Contains(stdout, "result: works") {
		t.Errorf("probe: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = wsbench(t, "probe", "--json", "ws://"+addr+"/nope")
	var pr bench.ProbeResult
	if code != exitProblem || json.Unmarshal([]byte(stdout), &pr) != nil || pr.Works || len(pr.Diagnosis) == 0 {
		t.Errorf("probe of a 404: exit %d\n%s", code, stdout)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := wsbench(t, "--help")
	for _, sub := range []string{"connect", "echo", "handshake", "socketio", "probe"} {
		if code != 0 || !strings.Contains(stdout, sub) {
			t.Errorf("help lacks %s", sub)
		}
	}
	code, _, stderr := wsbench(t, "echo", "--help")
	for _, fl := range []string{"--conns", "--duration", "--ramp", "--size", "--rate", "--source-ips", "--json", "--report", "--header"} {
		if code != 0 || !strings.Contains(stderr, fl) {
			t.Errorf("echo --help lacks %s", fl)
		}
	}
}
