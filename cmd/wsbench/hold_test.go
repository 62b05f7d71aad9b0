package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/bench"
)

// startRestarting starts a backend that names itself in X-Backend and ends
// each of its first `closes` connections with a 1012 close frame after
// `after`; later connections stay. With refuse set it answers 503.
func startRestarting(t *testing.T, closes int64, after time.Duration, refuse bool) string {
	t.Helper()
	var n atomic.Int64
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		c, err := up.Upgrade(w, r, http.Header{"X-Backend": {"node-1"}})
		if err != nil {
			return
		}
		defer c.Close()
		if n.Add(1) <= closes {
			time.AfterFunc(after, func() {
				c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1012, "restart"), time.Now().Add(time.Second))
			})
		}
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "ws://" + ln.Addr().String() + "/ws"
}

func TestHoldJSONAndReport(t *testing.T) {
	url := startRestarting(t, 5, 100*time.Millisecond, false)
	report := filepath.Join(t.TempDir(), "hold.html")
	code, stdout, stderr := wsbench(t, "hold", "-c", "5", "-d", "800ms", "--ramp", "100/s", "--reconnect-delay", "10ms-30ms",
		"--count-header", "X-Backend", "--source-ips", "127.0.0.1-127.0.0.2", "--json", "--report", report, url)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r bench.HoldReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if r.Mode != "hold" || r.Conns != 5 || r.ClosesByCode[1012] != 5 || r.Reconnects.OK != 5 || r.OpenAtEnd != 5 ||
		r.ServedBy["node-1"] != 10 || r.OpenByHeaderAtEnd["node-1"] != 5 || r.ReconnectLatency.Count != 5 ||
		r.ReconnectDelayMinMS != 10 || r.ReconnectDelayMaxMS != 30 {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(stderr, "wsbench hold ") || !strings.Contains(stderr, "report written") {
		t.Errorf("stderr:\n%s", stderr)
	}
	page, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(page), `<svg id="events-over-time"`) || !strings.Contains(string(page), "close frame 1012") {
		t.Errorf("report: %v", err)
	}
}

func TestHoldText(t *testing.T) {
	url := startRestarting(t, 2, 50*time.Millisecond, false)
	code, stdout, stderr := wsbench(t, "hold", "-c", "3", "-d", "500ms", "--reconnect-delay", "20ms", "-q", url)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"wsbench hold ws://", "conns 3: open at end 3, peak 3", "reconnect delay 20.00ms, ping off",
		"close frame 1012 (service restart)", "reconnects 2 attempted: 2 ok, 0 failed", "storms 1: longest recovered in"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text lacks %q:\n%s", want, stdout)
		}
	}
}

func TestHoldNothingConnectedExits1(t *testing.T) {
	url := startRestarting(t, 0, 0, true)
	code, stdout, _ := wsbench(t, "hold", "-c", "2", "-d", "100ms", "--reconnect-delay", "20ms", "-q", url)
	if code != exitProblem || !strings.Contains(stdout, "handshake: status 503") || !strings.Contains(stdout, "first connects") {
		t.Errorf("exit %d\n%s", code, stdout)
	}
	code, stdout, _ = wsbench(t, "hold", "-c", "2", "-d", "100ms", "--reconnect-delay", "20ms", "-q", "ws://"+refusingAddr(t)+"/ws")
	if code != exitProblem || !strings.Contains(stdout, "connection refused") {
		t.Errorf("refused: exit %d\n%s", code, stdout)
	}
}

func TestHoldBadFlagsExit2WithTheFlagNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reconnect-delay", "1s-100ms"}, "--reconnect-delay"},
		{[]string{"--reconnect-delay", "soon"}, "--reconnect-delay"},
		{[]string{"--count-header", "X Backend"}, "--count-header"},
		{[]string{"-c", "0"}, "-c/--conns"},
		{[]string{"-d", "-1s"}, "-d/--duration"},
		{[]string{"--ping", "-1s"}, "--ping"},
		{[]string{"--ramp", "fast"}, "--ramp"},
		{[]string{"--source-ips", "127.0.0.9-127.0.0.1"}, "--source-ips"},
		{[]string{"-H", "nocolon"}, "-H/--header"},
		{[]string{"--handshake-timeout", "0s"}, "--handshake-timeout"},
		{[]string{"--dial-concurrency", "0"}, "--dial-concurrency"},
		{[]string{"--size", "64"}, "unknown flag: --size"},
	} {
		code, _, stderr := wsbench(t, append(append([]string{"hold"}, tc.args...), "ws://127.0.0.1:1/")...)
		first, _, _ := strings.Cut(stderr, "\n")
		if code != exitUsage || !strings.HasPrefix(first, "wsbench hold: ") || !strings.Contains(first, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q on the first line", tc.args, code, stderr, tc.want)
		}
	}
	for _, args := range [][]string{{"hold"}, {"hold", "ftp://x/"}, {"hold", "ws://a/", "ws://b/"}} {
		if code, _, stderr := wsbench(t, args...); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestHoldHelp(t *testing.T) {
	code, stdout, _ := wsbench(t, "--help")
	if code != 0 || !strings.Contains(stdout, "hold ") {
		t.Errorf("help lacks hold:\n%s", stdout)
	}
	code, _, stderr := wsbench(t, "hold", "--help")
	for _, fl := range []string{"--conns", "--duration", "--ramp", "--reconnect-delay", "--ping", "--count-header", "--source-ips",
		"--json", "--report", "--header", "--handshake-timeout", "recovery time is from"} {
		if code != 0 || !strings.Contains(stderr, fl) {
			t.Errorf("hold --help lacks %s", fl)
		}
	}
}

func TestHoldFlagsToConfig(t *testing.T) {
	var f holdFlags
	fs := newHoldFlagSet(&f, &strings.Builder{})
	if err := fs.Parse([]string{"-c", "3000", "-d", "0", "--ramp", "500/s", "--reconnect-delay", "0", "--ping", "25s",
		"--count-header", "X-Backend", "-H", "Origin: http://a", "ws://127.0.0.1:1/"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := holdConfig(&f, fs.Arg(0))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Conns != 3000 || cfg.Duration != 0 || cfg.Ramp != 500 || cfg.ReconnectDelayMin != 0 || cfg.ReconnectDelayMax != time.Nanosecond ||
		cfg.Ping != 25*time.Second || cfg.CountHeader != "X-Backend" || len(cfg.Headers) != 1 {
		t.Errorf("config %+v", cfg)
	}
}
