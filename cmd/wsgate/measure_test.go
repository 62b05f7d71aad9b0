package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestMeasureIdleTunnels reports wsgate's user-space memory (RSS) and open
// files per idle WebSocket tunnel. It is a measurement, not a check of
// speed: `make bench` runs it (WSGATE_MEASURE=1); WSGATE_TUNNELS sets the
// count (default 5,000; each costs the test process 2 fds and wsgate 2).
// It asserts only what must hold whatever the machine: exactly 2 fds per
// tunnel.
func TestMeasureIdleTunnels(t *testing.T) {
	if os.Getenv("WSGATE_MEASURE") == "" {
		t.Skip("measurement: run with WSGATE_MEASURE=1 (make bench)")
	}
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("WSGATE_TUNNELS")); err == nil && v > 0 {
		n = v
	}
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr)
	// One tunnel first, so that lazily built state (pools, epoll loops) is
	// in the baseline.
	warm, _ := openTunnels(t, g.addr, 1, 1)
	warm[0].Close()
	g.waitMetricEq(t, mTunnelsOpen, 0, 10*time.Second)
	time.Sleep(2 * time.Second)
	rss0, _ := rssKiB(g.pid())
	fd0 := countFds(t, g.pid())

	start := time.Now()
	conns, _ := openTunnels(t, g.addr, n, 100)
	opened := time.Since(start)
	g.waitMetricEq(t, mTunnelsOpen, float64(n), 30*time.Second)
	rssPeak, _ := rssKiB(g.pid())
	time.Sleep(10 * time.Second) // let the opening burst settle (GC, scavenger)
	rss1, _ := rssKiB(g.pid())
	fd1 := countFds(t, g.pid())

	perTunnel := float64(rss1-rss0) * 1024 / float64(n)
	fdsPer := float64(fd1-fd0) / float64(n)
	t.Logf("%d idle tunnels opened in %v", n, opened.Round(time.Millisecond))
	t.Logf("wsgate RSS: %d KiB before, %d KiB right after opening, %d KiB settled", rss0, rssPeak, rss1)
	t.Logf("user-space memory per idle tunnel: %.0f B (%.2f KiB); open files per tunnel: %.2f", perTunnel, perTunnel/1024, fdsPer)
	fmt.Printf("idle-tunnels n=%d rss_per_tunnel_bytes=%.0f fds_per_tunnel=%.2f\n", n, perTunnel, fdsPer)
	if fd1-fd0 != 2*n {
		t.Errorf("%d fds for %d tunnels, want exactly 2 each", fd1-fd0, n)
	}
	for _, c := range conns {
		c.Close()
	}
	g.waitMetricEq(t, mTunnelsOpen, 0, 30*time.Second)
	if fd := countFds(t, g.pid()); fd != fd0 {
		t.Errorf("%d fds open after all tunnels closed, %d before", fd, fd0)
	}
}

func countFds(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
