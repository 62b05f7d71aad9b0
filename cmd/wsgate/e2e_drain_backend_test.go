package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A backend removed by a reload keeps its tunnels until --drain-timeout;
// then wsgate closes them. The tunnels of the backends that stay are not
// touched.
func TestRemovedBackendTunnelsClosedAtDrainTimeout(t *testing.T) {
	a, b := startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil)
	file := filepath.Join(t.TempDir(), "backends")
	if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, "--backends-file", file, "--health-path", "", "--drain-timeout", "2s")
	conns, names := openTunnels(t, g.addr, 40, 10)
	before := countNames(names)
	if before["a"] == 0 || before["b"] == 0 {
		t.Fatalf("tunnels not spread: %v", before)
	}
	if err := os.WriteFile(file, []byte(b.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	g.waitState(t, a.addr, 10*time.Second, "draining")
	// a's tunnels are closed by the proxy once the drain timeout passes.
	for i, ws := range conns {
		if names[i] != "a" {
			continue
		}
		ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, _, err := ws.ReadMessage(); err == nil {
			t.Fatal("a tunnel of the removed backend got a message instead of a close")
		} else if isTimeoutErr(err) {
			t.Fatal("a tunnel of the removed backend was not closed after the drain timeout")
		}
	}
	// b's tunnels still echo.
	for i, ws := range conns {
		if names[i] != "b" {
			continue
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "still here" {
			t.Fatalf("tunnel to the kept backend: %q, %v", m, err)
		}
	}
	g.waitMetricEq(t, mTunnelsOpen, float64(before["b"]), 10*time.Second)
}
