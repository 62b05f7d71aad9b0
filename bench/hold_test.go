package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// holdServer is a WebSocket backend whose connections a test can end: with
// a close frame of a given code, or by closing the TCP connection. It can
// refuse upgrades (503), hang them, name itself in a 101 header, and stop
// reading (so pings go unanswered).
type holdServer struct {
	URL string
	srv *http.Server
	ln  net.Listener

	refuse   atomic.Bool   // answer 503
	hang     atomic.Bool   // never answer
	deaf     atomic.Bool   // upgrade, then never read (no pongs, no close replies)
	name     atomic.Value  // string: X-Backend of the 101s; "" for none
	upgrades atomic.Int64  // 101s sent
	pongs    atomic.Int64  // pongs received for our pings
	pings    atomic.Int64  // pings received (and answered)
	release  chan struct{} // closed at cleanup: hung handlers return

	mu    sync.Mutex
	conns map[*websocket.Conn]string // open, with the X-Backend they got; mu must be held
	times []time.Time                // upgrade request arrivals; mu must be held
	ips   map[string]int             // remote addresses seen; mu must be held
}

func startHoldServer(t testing.TB) *holdServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &holdServer{URL: "ws://" + ln.Addr().String() + "/ws", ln: ln, release: make(chan struct{}),
		conns: map[*websocket.Conn]string{}, ips: map[string]int{}}
	s.name.Store("")
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(ln)
	t.Cleanup(func() {
		close(s.release)
		s.srv.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *holdServer) serve(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	s.ips[host]++
	s.mu.Unlock()
	if s.hang.Load() {
		<-s.release
		return
	}
	if s.refuse.Load() {
		http.Error(w, "no backend", http.StatusServiceUnavailable)
		return
	}
	name := s.name.Load().(string)
	var hdr http.Header
	if name != "" {
		hdr = http.Header{"X-Backend": {name}}
	}
	c, err := upgrader.Upgrade(w, r, hdr)
	if err != nil {
		return
	}
	s.upgrades.Add(1)
	c.SetPongHandler(func(string) error { s.pongs.Add(1); return nil })
	c.SetPingHandler(func(p string) error {
		s.pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
	})
	s.mu.Lock()
	s.conns[c] = name
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	// Pushed data and a ping: the client must skip the one and answer the other.
	c.WriteMessage(websocket.TextMessage, []byte("welcome"))
	c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
	if s.deaf.Load() {
		<-s.release
		return
	}
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

// open returns how many connections are open on the server.
func (s *holdServer) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// end ends up to n open connections (those named name, or any when name is
// "*"): with a close frame of code, or with a bare TCP close when code is 0.
func (s *holdServer) end(n int, code int, name string) int {
	s.mu.Lock()
	var victims []*websocket.Conn
	for c, nm := range s.conns {
		if len(victims) < n && (name == "*" || nm == name) {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		if code == 0 {
			c.UnderlyingConn().Close()
		} else {
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, "bye"), time.Now().Add(time.Second))
		}
	}
	return len(victims)
}

func (s *holdServer) arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSnap waits until cond holds for the holder's snapshot.
func waitSnap(t *testing.T, h *Holder, what string, cond func(HoldSnapshot) bool) HoldSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, ok := h.WaitUntil(ctx, cond)
	if !ok {
		t.Fatalf("timed out waiting for %s; last snapshot %+v", what, s)
	}
	return s
}

// waitOpen waits until n connections are open on both ends.
func waitOpen(t *testing.T, h *Holder, s *holdServer, n int) HoldSnapshot {
	t.Helper()
	waitFor(t, "the server to hold them", func() bool { return s.open() == n })
	return waitSnap(t, h, "all open", func(s HoldSnapshot) bool { return s.Open == int64(n) })
}

func holdCfg(url string, n int) HoldConfig {
	return HoldConfig{URL: url, Conns: n, ReconnectDelayMin: 20 * time.Millisecond, ReconnectDelayMax: 60 * time.Millisecond,
		ProgressInterval: 50 * time.Millisecond}
}

func TestHoldReconnectsByCloseKind(t *testing.T) {
	s := startHoldServer(t)
	var progress bytes.Buffer
	cfg := holdCfg(s.URL, 20)
	cfg.Progress = &syncWriter{w: &progress}
	h, err := StartHold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitSnap(t, h, "ramp", func(s HoldSnapshot) bool { return s.RampDone })
	waitOpen(t, h, s, 20)
	// Every client answered the server's ping.
	waitFor(t, "20 pongs", func() bool { return s.pongs.Load() >= 20 })

	if n := s.end(8, 1012, "*"); n != 8 {
		t.Fatalf("ended %d", n)
	}
	waitSnap(t, h, "8 reconnects", func(s HoldSnapshot) bool { return s.Reconnects == 8 })
	waitOpen(t, h, s, 20)
	s.end(3, 1001, "*")
	waitSnap(t, h, "11 reconnects", func(s HoldSnapshot) bool { return s.Reconnects == 11 })
	waitOpen(t, h, s, 20)
	s.end(2, 0, "*") // no close frame
	snap := waitSnap(t, h, "13 reconnects", func(s HoldSnapshot) bool { return s.Reconnects == 13 && s.Open == 20 })
	if snap.ClosesByCode[1012] != 8 || snap.ClosesByCode[1001] != 3 || snap.NoCloseFrame != 2 || snap.Closes != 13 {
		t.Errorf("snapshot closes %d by code %v, no close frame %d", snap.Closes, snap.ClosesByCode, snap.NoCloseFrame)
	}
	h.Stop()
	r := h.Wait()

	if r.OpenAtEnd != 20 || r.Peak != 20 || r.Initial.OK != 20 || r.Initial.Failed != 0 {
		t.Errorf("open at end %d peak %d initial %+v", r.OpenAtEnd, r.Peak, r.Initial)
	}
	if r.ClosesByCode[1012] != 8 || r.ClosesByCode[1001] != 3 || r.NoCloseFrame != 2 || r.NoCloseFrameKinds["TCP close (EOF)"]+r.NoCloseFrameKinds["TCP reset"] != 2 {
		t.Errorf("closes %v, no close frame %d %v", r.ClosesByCode, r.NoCloseFrame, r.NoCloseFrameKinds)
	}
	if r.Reconnects.Attempted != 13 || r.Reconnects.OK != 13 || r.Reconnects.Failed != 0 {
		t.Errorf("reconnects %+v", r.Reconnects)
	}
	// Reconnect latency includes the delay, which is at least 20ms.
	if r.ReconnectHandshakeLatency.Count != r.ReconnectLatency.Count || r.ReconnectHandshakeLatency.MaxMS > r.ReconnectLatency.MaxMS {
		t.Errorf("reconnect handshakes %+v against reconnects %+v: one per reconnect, each inside its reconnect", r.ReconnectHandshakeLatency, r.ReconnectLatency)
	}
	if r.ReconnectLatency.Count != 13 || r.ReconnectLatency.MinMS < 20 || r.HandshakeLatency.Count != 33 {
		t.Errorf("reconnect latency %+v, handshakes %d", r.ReconnectLatency, r.HandshakeLatency.Count)
	}
	// Three storms (one per burst), each recovered, none with more closes than its burst.
	if r.StormCount != 3 || len(r.Storms) != 3 || r.LongestStorm == nil || !r.LongestStorm.Recovered {
		t.Fatalf("storms %d %+v longest %+v", r.StormCount, r.Storms, r.LongestStorm)
	}
	if r.Storms[0].Closes != 8 || r.Storms[1].Closes != 3 || r.Storms[2].Closes != 2 || r.Storms[0].MinOpen < 12 || r.Storms[0].MinOpen > 19 {
		t.Errorf("storms %+v", r.Storms)
	}
	if r.MinAfterRamp < 12 || r.MinAfterRamp > 19 {
		t.Errorf("min after ramp %d", r.MinAfterRamp)
	}
	if r.HeldByEpoll != 33 || r.HeldByGoroutine != 0 {
		t.Errorf("held by epoll %d, by goroutine %d", r.HeldByEpoll, r.HeldByGoroutine)
	}
	// wsbench closed everything politely at the end.
	waitFor(t, "the server to see every connection closed", func() bool { return s.open() == 0 })

	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"close frame 1012 (service restart)", "       8  close frame 1012", "close frame 1001 (going away)",
		"no close frame: ", "reconnects 13 attempted: 13 ok, 0 failed", "storms 3: longest recovered in", "close seen → new 101"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if !strings.Contains(progress.String(), "wsbench hold ") || !strings.Contains(progress.String(), "open 20/20") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

// syncWriter lets the sampler write while the test reads at the end.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestHoldRetriesRefusedAndHungReconnects(t *testing.T) {
	s := startHoldServer(t)
	cfg := holdCfg(s.URL, 10)
	cfg.HandshakeTimeout = 300 * time.Millisecond
	h, err := StartHold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitOpen(t, h, s, 10)
	s.refuse.Store(true)
	s.end(10, 1012, "*")
	waitSnap(t, h, "20 refusals", func(s HoldSnapshot) bool { return s.ReconnectFailed >= 20 })
	s.refuse.Store(false)
	s.hang.Store(true)
	waitSnap(t, h, "timeouts", func(s HoldSnapshot) bool { return s.ReconnectFailures["timeout"] >= 5 })
	s.hang.Store(false)
	snap := waitSnap(t, h, "10 open again", func(s HoldSnapshot) bool { return s.Open == 10 })
	if snap.InStorm || snap.Storms != 1 {
		t.Errorf("snapshot %+v", snap)
	}
	h.Stop()
	r := h.Wait()
	f := r.Reconnects
	if f.OK != 10 || f.Failures["handshake: status 503"] < 20 || f.Failures["timeout"] < 5 || f.Attempted != f.OK+f.Failed {
		t.Errorf("reconnects %+v", f)
	}
	if r.ReconnectLatency.Count != 10 || r.StormCount != 1 || !r.LongestStorm.Recovered || r.LongestStorm.Closes != 10 || r.LongestStorm.MinOpen != 0 {
		t.Errorf("latency %+v storms %d longest %+v", r.ReconnectLatency, r.StormCount, r.LongestStorm)
	}
	// The storm lasted at least through the hung attempts' timeouts.
	if r.LongestStorm.RecoveryS < 0.3 || r.ReconnectLatency.MaxMS < 300 {
		t.Errorf("recovery %.3fs, reconnect max %.0fms", r.LongestStorm.RecoveryS, r.ReconnectLatency.MaxMS)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "handshake: status 503") || !strings.Contains(text.String(), "  timeout") {
		t.Errorf("text:\n%s", text.String())
	}
}

func TestHoldFirstConnectsRetryUntilTheServerAnswers(t *testing.T) {
	s := startHoldServer(t)
	s.refuse.Store(true)
	h, err := StartHold(context.Background(), holdCfg(s.URL, 5))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitSnap(t, h, "refusals", func(s HoldSnapshot) bool { return s.InitialFailed >= 10 && s.RampDone })
	s.refuse.Store(false)
	waitSnap(t, h, "5 open", func(s HoldSnapshot) bool { return s.Open == 5 })
	h.Stop()
	r := h.Wait()
	if r.Initial.OK != 5 || r.Initial.Failures["handshake: status 503"] < 10 || r.Reconnects.Attempted != 0 || r.StormCount != 0 {
		t.Errorf("initial %+v reconnects %+v storms %d", r.Initial, r.Reconnects, r.StormCount)
	}
	// The ramp ended with the first attempts, all refused.
	if r.MinAfterRamp != 0 {
		t.Errorf("min after ramp %d", r.MinAfterRamp)
	}
}

func TestHoldRampAndDuration(t *testing.T) {
	s := startHoldServer(t)
	cfg := holdCfg(s.URL, 10)
	cfg.Ramp = 50
	cfg.Duration = 300 * time.Millisecond
	cfg.SourceIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	t0 := time.Now()
	r, err := Hold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	if r.Initial.OK != 10 || r.OpenAtEnd != 10 || r.Closes != 0 || r.MinAfterRamp != 10 {
		t.Fatalf("initial %+v open at end %d closes %d min %d", r.Initial, r.OpenAtEnd, r.Closes, r.MinAfterRamp)
	}
	// The ramp paced the handshakes: the 10th was not due before 9/50 s.
	ts := s.arrivals()
	if len(ts) != 10 || ts[9].Sub(t0) < 180*time.Millisecond || r.RampS < 0.18 {
		t.Errorf("%d arrivals, the last %v after the start, ramp %.3fs", len(ts), ts[len(ts)-1].Sub(t0), r.RampS)
	}
	// The duration counts after the ramp.
	if r.ElapsedS-r.RampS < 0.3 || el < 480*time.Millisecond {
		t.Errorf("elapsed %.3fs, ramp %.3fs, took %v", r.ElapsedS, r.RampS, el)
	}
	s.mu.Lock()
	if s.ips["127.0.0.1"] != 5 || s.ips["127.0.0.2"] != 5 {
		t.Errorf("source addresses %v", s.ips)
	}
	s.mu.Unlock()
	if len(r.Timeline) < 2 {
		t.Errorf("timeline %d", len(r.Timeline))
	}
	waitFor(t, "the server to see every connection closed", func() bool { return s.open() == 0 })
	js, _ := json.Marshal(r)
	var back HoldReport
	if err := json.Unmarshal(js, &back); err != nil || back.Initial.OK != 10 || back.Mode != "hold" {
		t.Errorf("JSON round trip: %v %+v", err, back.Initial)
	}
	var page bytes.Buffer
	if err := r.WriteHTML(&page); err != nil || !strings.Contains(page.String(), `<svg id="connections-over-time"`) {
		t.Errorf("html: %v", err)
	}
}

// After a rebalance (every connection on node a closed with 1012 and only
// b answering), the per-node counts of open connections follow.
func TestHoldCountHeaderFollowsTheMove(t *testing.T) {
	s := startHoldServer(t)
	s.name.Store("a")
	cfg := holdCfg(s.URL, 12)
	cfg.CountHeader = "X-Backend"
	h, err := StartHold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	snap := waitOpen(t, h, s, 12)
	if snap.OpenByHeader["a"] != 12 {
		t.Errorf("open by header %v", snap.OpenByHeader)
	}
	s.name.Store("b")
	s.end(5, 1012, "a")
	waitSnap(t, h, "5 moved", func(s HoldSnapshot) bool { return s.OpenByHeader["b"] == 5 })
	snap = waitOpen(t, h, s, 12)
	if snap.OpenByHeader["a"] != 7 {
		t.Errorf("open by header %v", snap.OpenByHeader)
	}
	s.name.Store("")
	s.end(7, 1012, "a")
	snap = waitSnap(t, h, "7 moved", func(s HoldSnapshot) bool { return s.OpenByHeader[NoHeader] == 7 && s.Open == 12 })
	if len(snap.OpenByHeader) != 2 || snap.OpenByHeader["b"] != 5 {
		t.Errorf("open by header %v", snap.OpenByHeader)
	}
	h.Stop()
	r := h.Wait()
	if r.ServedBy["a"] != 12 || r.ServedBy["b"] != 5 || r.ServedBy[NoHeader] != 7 || r.OpenByHeaderAtEnd["b"] != 5 || len(r.OpenByHeaderAtEnd) != 2 {
		t.Errorf("served by %v, open at end %v", r.ServedBy, r.OpenByHeaderAtEnd)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "X-Backend: handshakes (none) 7; a 12; b 5;  open at end (none) 7; b 5;") {
		t.Errorf("text:\n%s", text.String())
	}
}

// With --ping, a server that stops reading (a hung backend behind a proxy
// that keeps the TCP connection) is noticed and left.
func TestHoldPingDropsSilentConnections(t *testing.T) {
	s := startHoldServer(t)
	s.deaf.Store(true)
	cfg := holdCfg(s.URL, 4)
	cfg.Ping = 50 * time.Millisecond
	h, err := StartHold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitSnap(t, h, "4 open", func(s HoldSnapshot) bool { return s.Open == 4 })
	waitSnap(t, h, "no-pong drops", func(s HoldSnapshot) bool { return s.NoCloseFrame >= 4 })
	s.deaf.Store(false)
	waitSnap(t, h, "4 open", func(s HoldSnapshot) bool { return s.Open == 4 && s.Reconnects >= 4 })
	pings := s.pings.Load()
	waitFor(t, "pings", func() bool { return s.pings.Load() > pings+8 })
	h.Stop()
	r := h.Wait()
	if r.NoCloseFrameKinds["no pong"] < 4 || r.PingS != 0.05 {
		t.Errorf("no close frame %v", r.NoCloseFrameKinds)
	}
}

// wss connections have no fd of their own to poll: each gets a reader.
func TestHoldWSS(t *testing.T) {
	var mu sync.Mutex
	var conns []*websocket.Conn
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				c.Close()
				return
			}
		}
	}))
	srv.StartTLS()
	defer srv.Close()
	cfg := holdCfg("wss"+strings.TrimPrefix(srv.URL, "https")+"/", 3)
	cfg.InsecureTLS = true
	cfg.Ping = 20 * time.Millisecond
	h, err := StartHold(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitSnap(t, h, "3 open", func(s HoldSnapshot) bool { return s.Open == 3 })
	waitFor(t, "3 on the server", func() bool { mu.Lock(); defer mu.Unlock(); return len(conns) == 3 })
	mu.Lock()
	for _, c := range conns {
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1012, ""), time.Now().Add(time.Second))
	}
	mu.Unlock()
	waitSnap(t, h, "3 reconnects", func(s HoldSnapshot) bool { return s.Reconnects == 3 && s.Open == 3 })
	h.Stop()
	r := h.Wait()
	if r.ClosesByCode[1012] != 3 || r.HeldByGoroutine != 6 || r.HeldByEpoll != 0 {
		t.Errorf("closes %v, held by goroutine %d, epoll %d", r.ClosesByCode, r.HeldByGoroutine, r.HeldByEpoll)
	}
}

func TestHoldConfigAndDelays(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi time.Duration
		ok     bool
	}{
		{"200ms-1s", 200 * time.Millisecond, time.Second, true},
		{"500ms", 500 * time.Millisecond, 500 * time.Millisecond, true},
		{" 0 - 2s ", 0, 2 * time.Second, true},
		{"1s-200ms", 0, 0, false},
		{"fast", 0, 0, false},
		{"1s-", 0, 0, false},
	} {
		lo, hi, err := ParseDelayRange(tc.in)
		if (err == nil) != tc.ok || lo != tc.lo || hi != tc.hi {
			t.Errorf("%q: %v %v %v", tc.in, lo, hi, err)
		}
	}
	for _, cfg := range []HoldConfig{
		{URL: "ftp://x/"},
		{URL: "ws://x/", ReconnectDelayMin: time.Second, ReconnectDelayMax: time.Millisecond},
		{URL: "ws://x/", Conns: -1},
		{URL: "ws://x/", CountHeader: "X Backend"},
	} {
		if _, err := StartHold(context.Background(), cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// Stopping the caller's context ends the run like the duration does.
func TestHoldContextEnds(t *testing.T) {
	s := startHoldServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	h, err := StartHold(ctx, holdCfg(s.URL, 3))
	if err != nil {
		t.Fatal(err)
	}
	waitSnap(t, h, "3 open", func(s HoldSnapshot) bool { return s.Open == 3 })
	cancel()
	r := h.Wait()
	if r.OpenAtEnd != 3 || r.Closes != 0 {
		t.Errorf("open at end %d closes %d", r.OpenAtEnd, r.Closes)
	}
	waitFor(t, "the server to see every connection closed", func() bool { return s.open() == 0 })
}
