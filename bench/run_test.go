package bench

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func runOK(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Errorf("errors %d: %v", res.Errors, res.ErrorKinds)
	}
	return res
}

func TestEchoClosedLoopAgainstGorilla(t *testing.T) {
	e := startEcho(t)
	var progress bytes.Buffer
	cfg := quickCfg(ModeEcho, e.URL)
	cfg.Progress = &progress
	res := runOK(t, cfg)
	if res.Connected != 4 || res.Messages == 0 || res.Latency.Count != res.Messages {
		t.Fatalf("connected %d messages %d latency count %d", res.Connected, res.Messages, res.Latency.Count)
	}
	if res.Latency.P50MS <= 0 || res.Latency.P99MS < res.Latency.P50MS || res.Latency.MaxMS < res.Latency.P999MS {
		t.Errorf("latency summary out of order: %+v", res.Latency)
	}
	if res.Bytes != 2*64*res.Messages {
		t.Errorf("bytes %d for %d messages", res.Bytes, res.Messages)
	}
	if !strings.Contains(progress.String(), "wsbench echo") || !strings.Contains(progress.String(), "msgs/s") {
		t.Errorf("no progress lines: %q", progress.String())
	}
	if len(res.Timeline) < 2 || len(res.Distribution) == 0 {
		t.Errorf("timeline %d samples, distribution %d points", len(res.Timeline), len(res.Distribution))
	}
	var text bytes.Buffer
	res.WriteText(&text)
	for _, want := range []string{"round trips", "p50", "p99.9", "errors 0"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, text.String())
		}
	}
}

func TestEchoSizes(t *testing.T) {
	e := startEcho(t)
	for _, size := range []int{1, 125, 126, 65535, 65536, 300 << 10} {
		cfg := quickCfg(ModeEcho, e.URL)
		cfg.Size, cfg.Conns, cfg.Duration = size, 2, 200*time.Millisecond
		cfg.Text = size%2 == 0
		res := runOK(t, cfg)
		if res.Messages == 0 {
			t.Errorf("size %d: no round trips", size)
		}
	}
}

// A server that stalls once: the open model must show the stall in its
// percentiles (every message due during the stall waits), which a closed
// loop hides in a single sample.
func TestRateCorrectsCoordinatedOmission(t *testing.T) {
	const stall = 400 * time.Millisecond
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if n.Add(1) == 10 {
				time.Sleep(stall)
			}
			c.WriteMessage(mt, p)
		}
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	cfg := quickCfg(ModeEcho, "ws://"+ln.Addr().String()+"/ws")
	cfg.Conns, cfg.Rate, cfg.Duration = 1, 100, 1200*time.Millisecond
	res := runOK(t, cfg)
	if res.Latency.P90MS < 100 {
		t.Errorf("open model p90 %.1fms after a %s stall: the stall is hidden", res.Latency.P90MS, stall)
	}
	if res.Latency.MaxMS < float64(stall/time.Millisecond)*0.9 {
		t.Errorf("max %.1fms, want about %s", res.Latency.MaxMS, stall)
	}
}

func TestConnectHoldsConnections(t *testing.T) {
	e := startEcho(t)
	cfg := quickCfg(ModeConnect, e.URL)
	cfg.Conns, cfg.Ramp = 200, 2000
	res := runOK(t, cfg)
	if res.Connected != 200 || res.MaxOpen != 200 || res.OpenAtEnd != 200 || res.Dropped != 0 {
		t.Fatalf("connected %d max open %d open at end %d dropped %d", res.Connected, res.MaxOpen, res.OpenAtEnd, res.Dropped)
	}
	if res.HandshakeLatency.Count != 200 || res.Latency.Count != 200 {
		t.Errorf("handshake latency count %d", res.HandshakeLatency.Count)
	}
	if res.RampS < 0.05 {
		t.Errorf("200 connections at 2000/s took %.3fs: the ramp was not applied", res.RampS)
	}
}

func TestConnectCountsDropsAndRefusals(t *testing.T) {
	// Nothing listens here: every attempt is refused.
	addr := refusingAddr(t)
	cfg := quickCfg(ModeConnect, "ws://"+addr+"/ws")
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.ErrorKinds["connection refused"] != 4 {
		t.Fatalf("connected %d, errors %v", res.Connected, res.ErrorKinds)
	}

	// A server that upgrades, then closes after 100ms: drops are counted.
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
		c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"))
		c.Close()
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	cfg = quickCfg(ModeConnect, "ws://"+ln.Addr().String()+"/ws")
	res, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 4 || res.Dropped != 4 || res.ErrorKinds["closed by server (close frame)"] != 4 {
		t.Fatalf("connected %d dropped %d errors %v", res.Connected, res.Dropped, res.ErrorKinds)
	}
}

func TestHandshakeRejectedCountsStatus(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusForbidden)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	cfg := quickCfg(ModeHandshake, "ws://"+ln.Addr().String()+"/ws")
	cfg.Duration = 200 * time.Millisecond
	res, _ := Run(context.Background(), cfg)
	if res.Connected != 0 || res.ErrorKinds["handshake: status 403"] == 0 {
		t.Fatalf("connected %d errors %v", res.Connected, res.ErrorKinds)
	}
}

func TestHandshakeLoop(t *testing.T) {
	e := startEcho(t)
	cfg := quickCfg(ModeHandshake, e.URL)
	res := runOK(t, cfg)
	if res.Connected < 4 || res.HandshakesPerSec <= 0 || res.HandshakeLatency.Count != res.Connected {
		t.Fatalf("connected %d rate %.0f latency count %d", res.Connected, res.HandshakesPerSec, res.HandshakeLatency.Count)
	}
	// Open model: about Rate × Duration handshakes, never more than were due.
	cfg.Rate, cfg.Duration = 50, time.Second
	res = runOK(t, cfg)
	if res.Connected > 55 || res.Connected < 5 {
		t.Errorf("at 50/s for 1s: %d handshakes", res.Connected)
	}
}

func TestSourceIPsSpreadConnections(t *testing.T) {
	e := startEcho(t)
	ips, err := ParseSourceIPs("127.0.0.1-127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	cfg := quickCfg(ModeConnect, e.URL)
	cfg.Conns, cfg.SourceIPs, cfg.Duration = 40, ips, 100*time.Millisecond
	runOK(t, cfg)
	seen := e.remoteIPs()
	for _, ip := range ips {
		if seen[ip.String()] != 10 {
			t.Errorf("source %s: %d connections, want 10 (seen %v)", ip, seen[ip.String()], seen)
		}
	}
}

func TestContextCancelStopsEarly(t *testing.T) {
	e := startEcho(t)
	cfg := quickCfg(ModeEcho, e.URL)
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Progress = writerFunc(func(p []byte) (int, error) { cancel(); return len(p), nil })
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ElapsedS > 60 || len(res.Timeline) == 0 {
		t.Fatalf("elapsed %.1fs, %d samples", res.ElapsedS, len(res.Timeline))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestParsers(t *testing.T) {
	rates := map[string]float64{"500/s": 500, "500": 500, "30/m": 0.5, "2/ms": 2000, " 10 / s ": 10}
	for in, want := range rates {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x/s", "5/h", "-1/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q): no error", bad)
		}
	}
	sizes := map[string]int{"64": 64, "16KiB": 16384, "1MiB": 1 << 20, "1KB": 1000, "2k": 2048, "0": 0}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "KiB", "12XB", "-3"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): no error", bad)
		}
	}
	ips, err := ParseSourceIPs("127.0.0.1-127.0.0.8")
	if err != nil || len(ips) != 8 || ips[7] != netip.MustParseAddr("127.0.0.8") {
		t.Errorf("range: %v %v", ips, err)
	}
	ips, err = ParseSourceIPs("10.0.0.5,10.0.0.9-10.0.0.10")
	if err != nil || len(ips) != 3 {
		t.Errorf("list: %v %v", ips, err)
	}
	for _, bad := range []string{"", "127.0.0.8-127.0.0.1", "x", "127.0.0.1-::1"} {
		if _, err := ParseSourceIPs(bad); err == nil {
			t.Errorf("ParseSourceIPs(%q): no error", bad)
		}
	}
	h, err := ParseHeader("Origin:  http://x ")
	if err != nil || h != (Header{"Origin", "http://x"}) {
		t.Errorf("ParseHeader: %v %v", h, err)
	}
	for _, bad := range []string{"NoColon", ": v", "A B: v", "A: v\r\nB: w"} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q): no error", bad)
		}
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	c, err := Config{Mode: ModeEcho, URL: "ws://127.0.0.1:1/"}.withDefaults()
	if err != nil || c.Conns != DefaultConns || c.Size != DefaultSize || c.Duration != DefaultDuration || c.EIO != 4 {
		t.Errorf("defaults: %+v %v", c, err)
	}
	for _, bad := range []Config{
		{Mode: "x", URL: "ws://a/"},
		{Mode: ModeEcho, URL: "ftp://a/"},
		{Mode: ModeEcho, URL: "ws://a/", Conns: -1},
		{Mode: ModeSocketIO, URL: "ws://a/", Transport: "carrier-pigeon"},
		{Mode: ModeSocketIO, URL: "ws://a/", EIO: 2},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("no error for %+v", bad)
		}
	}
}

// Held connections (connect) still answer pings and skip pushed messages of
// any size, as a live client would.
func TestConnectHeldConnectionsAnswerPings(t *testing.T) {
	var pongs atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(string) error { pongs.Add(1); return nil })
		time.Sleep(50 * time.Millisecond) // held by now
		c.WriteMessage(websocket.BinaryMessage, make([]byte, 200<<10))
		c.WriteMessage(websocket.TextMessage, []byte("hello"))
		c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	cfg := quickCfg(ModeConnect, "ws://"+ln.Addr().String()+"/ws")
	res := runOK(t, cfg)
	if res.Connected != 4 || res.OpenAtEnd != 4 || pongs.Load() != 4 {
		t.Fatalf("connected %d open at end %d pongs %d", res.Connected, res.OpenAtEnd, pongs.Load())
	}
}
