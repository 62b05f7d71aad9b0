package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const manyTunnels = 1000

// TestLeastConnSpreadsTunnels: with least-connections, a live tunnel counts
// as a connection, so 1,000 long-lived WebSockets split evenly over two
// backends, and the per-backend counts go back to zero when they close.
func TestLeastConnSpreadsTunnels(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 WebSocket connections")
	}
	a := startBackend(t, "a", 0, nil)
	b := startBackend(t, "b", 0, nil)
	g := startGate(t, "-b", a.addr, "-b", b.addr)

	conns, names := openTunnels(t, g.addr, manyTunnels, 50)
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	t.Logf("spread over backends: a=%d b=%d (others: %v)", count["a"], count["b"], count)
	const lo, hi = manyTunnels/2 - manyTunnels/40, manyTunnels/2 + manyTunnels/40 // 500±25
	for _, n := range []string{"a", "b"} {
		if c := count[n]; c < lo || c > hi {
			t.Errorf("backend %s got %d of %d tunnels, want %d..%d", n, c, manyTunnels, lo, hi)
		}
	}
	if len(count) != 2 {
		t.Errorf("tunnels went to %v, want only a and b", count)
	}

	// While all are open, the live counts are exactly what the clients saw.
	g.waitMetricEq(t, mTunnelsOpen, manyTunnels, 20*time.Second)
	m, err := g.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range []*testBackend{a, b} {
		v, ok := m[activeMetric(be.addr)]
		t.Logf("%s = %v", activeMetric(be.addr), v)
		if !ok {
			t.Errorf("metric %s missing", activeMetric(be.addr))
			continue
		}
		if v < lo || v > hi {
			t.Errorf("%s = %v while %d tunnels are open, want %d..%d", activeMetric(be.addr), v, manyTunnels, lo, hi)
		}
		if int(v) != count[be.name] {
			t.Errorf("%s = %v, but %d clients got hello from %s", activeMetric(be.addr), v, count[be.name], be.name)
		}
	}
	// Client connections handed to the tunnel engine are no longer counted
	// as open client connections.
	g.waitMetricEq(t, mConnsOpen, 0, 10*time.Second)

	for _, c := range conns {
		c.Close()
	}
	for _, be := range []*testBackend{a, b} {
		g.waitMetricEq(t, activeMetric(be.addr), 0, 20*time.Second)
	}
	g.waitMetricEq(t, mTunnelsOpen, 0, 20*time.Second)
}

// TestThousandTunnelsEcho: 1,000 concurrent tunnels each carry 10 messages
// each way at the same time, and every echo comes back intact and in order.
func TestThousandTunnelsEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 WebSocket connections")
	}
	a := startBackend(t, "a", 0, nil)
	b := startBackend(t, "b", 0, nil)
	g := startGate(t, "-b", a.addr, "-b", b.addr)

	conns, _ := openTunnels(t, g.addr, manyTunnels, 50)
	const msgs = 10
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range conns {
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			<-start
			for j := range msgs {
				mt := websocket.TextMessage
				if j%2 == 1 {
					mt = websocket.BinaryMessage
				}
				c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := c.WriteMessage(mt, fmt.Appendf(nil, "conn %d message %d %s", i, j, make([]byte, j*100))); err != nil {
					errs[i] = fmt.Errorf("write %d: %w", j, err)
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			<-start
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			for j := range msgs {
				mt, p, err := c.ReadMessage()
				if err != nil {
					errs[i] = fmt.Errorf("read echo %d: %w", j, err)
					return
				}
				want := fmt.Appendf(nil, "conn %d message %d %s", i, j, make([]byte, j*100))
				wantType := websocket.TextMessage
				if j%2 == 1 {
					wantType = websocket.BinaryMessage
				}
				if string(p) != string(want) || mt != wantType {
					errs[i] = fmt.Errorf("echo %d: got %d bytes of type %d (%.40q), want %d bytes of type %d (%.40q)", j, len(p), mt, p, len(want), wantType, want)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
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
		t.Fatalf("%d of %d tunnels did not echo all %d messages", failed, len(conns), msgs)
	}
	for _, c := range conns {
		c.Close()
	}
	g.waitMetricEq(t, mTunnelsOpen, 0, 20*time.Second)
}

// TestBackendKilledMidTunnel: when the backend dies under an open tunnel the
// client sees its connection end, and the backend's live count is released:
// once the client closes in turn, or at once when the client writes (the
// dead backend's kernel answers with a reset).
func TestBackendKilledMidTunnel(t *testing.T) {
	for _, after := range []string{"client closes", "client writes"} {
		t.Run(after, func(t *testing.T) {
			be := startBackend(t, "doomed", 0, nil)
			g := startGate(t, "-b", be.addr)

			c, err := dialWS(g.addr, "/ws")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := readHello(c); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, p, err := c.ReadMessage(); err != nil || string(p) != "ping" {
				t.Fatalf("echo before the kill: %q, %v", p, err)
			}
			g.waitMetricEq(t, activeMetric(be.addr), 1, 10*time.Second)
			g.waitMetricEq(t, mTunnelsOpen, 1, 10*time.Second)

			be.kill()
			killed := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, p, err := c.ReadMessage()
			switch {
			case err == nil:
				t.Fatalf("after the backend was killed the client read a message %q, want the connection to end", p)
			case isTimeoutErr(err):
				t.Fatalf("client connection still open 10 s after the backend was killed (read: %v)", err)
			}
			t.Logf("client read ended %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
			if v, err := g.metrics(); err == nil {
				t.Logf("when the client saw the end: %s=%v %s=%v", activeMetric(be.addr), v[activeMetric(be.addr)], mTunnelsOpen, v[mTunnelsOpen])
			}
			if after == "client closes" {
				c.Close()
			} else {
				// The client has not noticed (or ignores the EOF) and sends:
				// the proxy's write to the dead backend is reset.
				c.WriteMessage(websocket.TextMessage, []byte("anyone there?"))
			}
			g.waitMetricEq(t, activeMetric(be.addr), 0, 10*time.Second)
			g.waitMetricEq(t, mTunnelsOpen, 0, 10*time.Second)
		})
	}
}

// TestIdleTunnelTimeout: --tunnel-idle-timeout closes a tunnel that carries
// no bytes, and only such a tunnel.
func TestIdleTunnelTimeout(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--tunnel-idle-timeout", "1s")

	idle, err := dialWS(g.addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := dialWS(g.addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := readHello(idle); err != nil {
		t.Fatal(err)
	}
	if _, err := readHello(busy); err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// The silent one: the proxy must close it, long before the default
	// idle timeout (300 s) and the 5 s read deadline here.
	type ended struct {
		err   error
		after time.Duration
	}
	idleDone := make(chan ended, 1)
	go func() {
		idle.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := idle.ReadMessage()
		if err == nil {
			err = fmt.Errorf("unexpected message %q", p)
		}
		idleDone <- ended{err, time.Since(start)}
	}()

	// The busy one: a message every 300 ms, each echoed, for 3.5 s.
	for i := 0; time.Since(start) < 3500*time.Millisecond; i++ {
		msg := fmt.Sprintf("keepalive %d", i)
		busy.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := busy.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("busy tunnel, %v after start: write: %v", time.Since(start).Round(time.Millisecond), err)
		}
		busy.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := busy.ReadMessage()
		if err != nil || string(p) != msg {
			t.Fatalf("busy tunnel, %v after start: echo %q, %v; want %q", time.Since(start).Round(time.Millisecond), p, err, msg)
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Logf("busy tunnel still echoing %v after start", time.Since(start).Round(time.Millisecond))
	e := <-idleDone
	if isTimeoutErr(e.err) {
		t.Fatalf("silent tunnel still open 5 s after its last byte, with --tunnel-idle-timeout 1s (read: %v)", e.err)
	}
	t.Logf("silent tunnel closed %v after the hello: %v", e.after.Round(time.Millisecond), e.err)
}
