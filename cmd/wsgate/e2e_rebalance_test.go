package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/bench"
)

// TestRebalanceAfterScaleOut is issue 17's measurement, end to end: 3,000
// idle WebSocket clients (bench.Hold: each reconnects 0.2–1 s after its
// connection ends) on 2 backends; a third joins by SIGHUP with
// --backends-file, and --rebalance 200/s moves tunnels to it. Within 30 s
// every backend holds 1,000 ± 15%, at least 90% of the tunnels moved were
// closed with a 1012 close frame the clients read, and no reconnect failed.
func TestRebalanceAfterScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 clients; not with -short")
	}
	const n = 3000
	a, b, c := startBackend(t, "a", 0, nil), startBackend(t, "b", 0, nil), startBackend(t, "c", 0, nil)
	file := filepath.Join(t.TempDir(), "backends")
	if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, "--backends-file", file, "--rebalance", "200/s", "--health-interval", "500ms", "--health-rise", "1")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := bench.StartHold(ctx, bench.HoldConfig{URL: "ws://" + g.addr + "/ws", Conns: n, ReconnectDelayMin: 200 * time.Millisecond, ReconnectDelayMax: time.Second, HandshakeTimeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	snap, ok := h.WaitUntil(wctx, func(s bench.HoldSnapshot) bool { return s.RampDone && s.Open == n })
	wcancel()
	if !ok {
		t.Fatalf("the clients did not all connect: %+v", snap)
	}
	g.waitMetricEq(t, mTunnelsOpen, n, 15*time.Second)

	// Scale out.
	if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"+c.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hupAt := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	within := func(v int64) bool { return v >= n/3*85/100 && v <= n/3*115/100 }
	var counts map[string]int64
	balanced := false
	for time.Since(hupAt) < 30*time.Second {
		time.Sleep(250 * time.Millisecond)
		counts = map[string]int64{}
		for _, p := range g.status(t) {
			for _, bs := range p.Backends {
				counts[bs.Addr] = bs.Tunnels
			}
		}
		if len(counts) == 3 && within(counts[a.addr]) && within(counts[b.addr]) && within(counts[c.addr]) {
			balanced = true
			break
		}
	}
	took := time.Since(hupAt)
	if !balanced {
		t.Fatalf("not within 1000 ± 15%% 30 s after the new backend joined: a %d, b %d, c %d", counts[a.addr], counts[b.addr], counts[c.addr])
	}
	// Let the moves in flight land, then read what the clients saw.
	time.Sleep(3 * time.Second)
	snap = h.Snapshot()
	final := map[string]int64{}
	statusMoved := uint64(0)
	for _, p := range g.status(t) {
		for _, bs := range p.Backends {
			final[bs.Addr] = bs.Tunnels
			statusMoved += bs.Moved
			if bs.Fair < n/3-1 || bs.Fair > n/3+1 {
				t.Errorf("/status.json: backend %s fair share %.1f, want %d (3 equal backends, %d tunnels)", bs.Addr, bs.Fair, n/3, n)
			}
		}
	}
	t.Logf("3 s later: a %d, b %d, c %d", final[a.addr], final[b.addr], final[c.addr])
	for _, addr := range []string{a.addr, b.addr, c.addr} {
		if !within(final[addr]) {
			t.Errorf("3 s after balance, backend %s holds %d tunnels: outside 1000 ± 15%%", addr, final[addr])
		}
	}
	moved := 0.0
	for _, addr := range []string{a.addr, b.addr, c.addr} {
		moved += g.metric(t, fmt.Sprintf(`wsgate_rebalance_moved_total{pool="default",backend=%q}`, addr))
	}
	got1012 := snap.ClosesByCode[1012]
	t.Logf("balanced %v after the SIGHUP: a %d, b %d, c %d; moved %.0f; clients saw %d closes (%v by code, %d without a close frame); reconnects %d, failed %d %v; open %d",
		took.Round(100*time.Millisecond), counts[a.addr], counts[b.addr], counts[c.addr], moved, snap.Closes, snap.ClosesByCode, snap.NoCloseFrame,
		snap.Reconnects, snap.ReconnectFailed, snap.ReconnectFailures, snap.Open)
	if float64(statusMoved) != moved {
		t.Errorf("/status.json says %d moved, the metrics %.0f", statusMoved, moved)
	}
	if moved == 0 {
		t.Fatal("nothing was moved, yet the pool balanced?")
	}
	if float64(got1012) < 0.9*moved {
		t.Errorf("%d of %.0f moved tunnels closed with 1012 (want ≥ 90%%)", got1012, moved)
	}
	if snap.ReconnectFailed != 0 {
		t.Errorf("%d reconnects failed: %v", snap.ReconnectFailed, snap.ReconnectFailures)
	}
	// Never more than needed: the moves are at most what the two old
	// backends held above the fair share, plus the pass's few of slack.
	if moved > float64(n)/3+10 {
		t.Errorf("moved %.0f tunnels; the excess was %d", moved, n/3)
	}
	if fb := g.metric(t, `wsgate_tunnel_close_fallbacks_total`); fb > 0.1*moved {
		t.Errorf("%v plain-close fallbacks", fb)
	}
	if !strings.Contains(g.stderr.String(), "rebalancing pass started") {
		t.Errorf("no log line for the pass")
	}
}
