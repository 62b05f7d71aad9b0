package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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
	anon0 := statusKiB(t, g.pid(), "RssAnon:")
	fd0 := countFds(t, g.pid())

	start := time.Now()
	conns, _ := openTunnels(t, g.addr, n, 100)
	opened := time.Since(start)
	g.waitMetricEq(t, mTunnelsOpen, float64(n), 30*time.Second)
	rssPeak, _ := rssKiB(g.pid())
	// Let the opening burst settle: wsgate's memory trimmer runs every 5 s,
	// and the handshake state of the burst is released once the header
	// timeout (10 s) has passed since the connections were accepted.
	time.Sleep(15 * time.Second)
	rss1, _ := rssKiB(g.pid())
	anon1 := statusKiB(t, g.pid(), "RssAnon:")
	fd1 := countFds(t, g.pid())

	if dir := os.Getenv("WSGATE_PROFILE_DIR"); dir != "" {
		for _, name := range []string{"heap", "goroutine"} {
			resp, err := http.Get("http://" + g.admin + "/debug/pprof/" + name)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				os.WriteFile(dir+"/"+name+".pprof", b, 0o644)
			}
		}
		if m, err := g.metrics(); err == nil {
			for k, v := range m {
				if strings.HasPrefix(k, "go_memstats_") || strings.HasPrefix(k, "go_goroutines") || strings.HasPrefix(k, "process_resident") {
					t.Logf("%s %.0f", k, v)
				}
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", g.pid())); err == nil {
			t.Logf("smaps_rollup:\n%s", b)
		}
	}
	perTunnel := float64(anon1-anon0) * 1024 / float64(n)
	perTunnelRSS := float64(rss1-rss0) * 1024 / float64(n)
	fdsPer := float64(fd1-fd0) / float64(n)
	t.Logf("%d idle tunnels opened in %v", n, opened.Round(time.Millisecond))
	t.Logf("wsgate RSS: %d KiB before, %d KiB right after opening, %d KiB settled (anonymous: %d KiB before, %d KiB settled)", rss0, rssPeak, rss1, anon0, anon1)
	t.Logf("user-space memory per idle tunnel: %.0f B anonymous (%.0f B counting file-backed pages too); open files per tunnel: %.2f", perTunnel, perTunnelRSS, fdsPer)
	fmt.Printf("idle-tunnels n=%d anon_per_tunnel_bytes=%.0f rss_per_tunnel_bytes=%.0f fds_per_tunnel=%.2f\n", n, perTunnel, perTunnelRSS, fdsPer)
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

// statusKiB reads a "Name: N kB" line of /proc/<pid>/status.
func statusKiB(t *testing.T, pid int, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

func countFds(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestMeasureQueuedRequest reports what a request waiting in the max-conns
// queue costs wsgate, next to an idle keep-alive connection: n clients
// each send one GET to a pool whose only backend (max-conns=1) is held by
// a tunnel, and wait; then the same n connections idle between requests.
// It asserts only that the requests did queue, and that none was dialed
// to the backend.
func TestMeasureQueuedRequest(t *testing.T) {
	if os.Getenv("WSGATE_MEASURE") == "" {
		t.Skip("measurement: run with WSGATE_MEASURE=1 (make bench)")
	}
	const n = 2000
	be := startBackend(t, "a", 0, nil)
	free := startBackend(t, "free", 0, nil)
	// A fresh wsgate for each: memory a phase freed is not all given back
	// to the kernel at once, and would hide the next phase's.
	measure := func(path string, wantQueued bool) float64 {
		g := startGate(t, "-b", be.addr+",max-conns=1", "-b", "free="+free.addr, "--route", "/free=free", "--queue-timeout", "60s", "--health-path", "")
		defer g.stop()
		hold, _ := openTunnels(t, g.addr, 1, 1) // the one slot
		defer hold[0].Close()
		warm, _ := http.Get("http://" + g.addr + "/free")
		if warm != nil {
			warm.Body.Close()
		}
		time.Sleep(6 * time.Second)
		anon0 := statusKiB(t, g.pid(), "RssAnon:")
		var cs []net.Conn
		for range n {
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		}
		if wantQueued {
			g.waitMetricEq(t, `wsgate_queue_length{pool="default"}`, n, 30*time.Second)
		} else {
			for _, c := range cs { // read each response: the connection is then idle between requests
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				http.ReadResponse(bufio.NewReader(c), nil)
			}
		}
		time.Sleep(6 * time.Second) // the memory trimmer runs every 5 s
		anon1 := statusKiB(t, g.pid(), "RssAnon:")
		if a := g.metric(t, activeMetric(be.addr)); a != 1 {
			t.Errorf("the capped backend has %v requests and tunnels counted, want 1 (the held tunnel)", a)
		}
		for _, c := range cs {
			c.Close()
		}
		g.waitMetricEq(t, `wsgate_queue_length{pool="default"}`, 0, 60*time.Second)
		time.Sleep(2 * time.Second)
		return float64(anon1-anon0) * 1024 / n
	}
	queued := measure("/", true)
	idle := measure("/free", false)
	t.Logf("per queued request: %.0f B anonymous memory; per idle keep-alive connection: %.0f B", queued, idle)
	fmt.Printf("queued-request n=%d anon_per_queued_bytes=%.0f anon_per_idle_keepalive_bytes=%.0f\n", n, queued, idle)
}
