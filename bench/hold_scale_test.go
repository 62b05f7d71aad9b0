package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// holdServerProcess is the test binary as a WebSocket server in a process of
// its own (WSBENCH_HOLD_SERVER=1): it prints its address, then reads
// commands on stdin, one a line: "count" answers how many connections it
// holds; "close CODE" ends every connection with
// that close code ("close 0": TCP close, no frame), answering "closed N".
// It exits when stdin ends.
func holdServerProcess() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	conns := map[*websocket.Conn]bool{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
		mu.Lock()
		delete(conns, c)
		mu.Unlock()
		c.Close()
	})}
	go srv.Serve(ln)
	fmt.Println(ln.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "count" {
			mu.Lock()
			fmt.Printf("%d\n", len(conns))
			mu.Unlock()
			continue
		}
		code, _ := strconv.Atoi(strings.TrimPrefix(in.Text(), "close "))
		mu.Lock()
		var all []*websocket.Conn
		for c := range conns {
			all = append(all, c)
		}
		mu.Unlock()
		for _, c := range all {
			if code == 0 {
				c.UnderlyingConn().Close()
			} else {
				c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
			}
		}
		fmt.Printf("closed %d\n", len(all))
	}
	os.Exit(0)
}

// startHoldServerProcess starts holdServerProcess and returns its ws:// URL
// and a function that sends it a command and waits for its answer.
func startHoldServerProcess(t testing.TB) (string, func(cmd string) string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WSBENCH_HOLD_SERVER=1")
	stdin, _ := cmd.StdinPipe()
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
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	send := func(c string) string {
		io.WriteString(stdin, c+"\n")
		ans, _ := rd.ReadString('\n')
		return strings.TrimSpace(ans)
	}
	return "ws://" + strings.TrimSpace(line) + "/ws", send
}

// TestHoldScale holds WSBENCH_HOLD_SCALE connections (3000, 6000) against a
// server in another process, reports what they cost this process, then
// closes them all with 1012 and then with bare TCP closes, and checks that
// every one came back.
//
//	WSBENCH_HOLD_SCALE=3000 go test -run TestHoldScale -v ./bench/
//
// WSBENCH_HOLD_GOROUTINES=1 gives each connection a reading goroutine
// instead, as wss connections have.
func TestHoldScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WSBENCH_HOLD_SCALE"))
	if n <= 0 {
		t.Skip("set WSBENCH_HOLD_SCALE=3000 (needs 2 files per connection across the two processes)")
	}
	url, send := startHoldServerProcess(t)
	srcs, _ := ParseSourceIPs("127.0.0.1-127.0.0.8")
	// A run's fixed cost is mostly its two latency recorders: weigh them
	// alone, to leave them out of the per-connection figure.
	m0 := readMem()
	recs := []*recorder{newRecorder(), newRecorder()}
	fixed := readMem().goBytes - m0.goBytes
	runtime.KeepAlive(recs)
	recs = nil
	base := readMem()
	g0 := runtime.NumGoroutine()
	goroutines := os.Getenv("WSBENCH_HOLD_GOROUTINES") == "1"
	h, err := StartHold(context.Background(), HoldConfig{URL: url, Conns: n, SourceIPs: srcs, ProgressInterval: time.Second, noEpoll: goroutines})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := func(s HoldSnapshot) bool { return s.Open == int64(n) && s.RampDone && s.Connecting == 0 }
	if s, ok := h.WaitUntil(ctx, all); !ok {
		t.Fatalf("never all open: %+v", s)
	}
	time.Sleep(time.Second)
	m := readMem()
	g := runtime.NumGoroutine()
	if p := os.Getenv("WSBENCH_HOLD_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	t.Logf("%d held: %d goroutines (%d before); Go heap+stacks %.0f B per connection after %.1f MiB fixed (latency recorders); RSS %.0f B per connection, fixed cost included (%.1f MiB in all)",
		n, g, g0, (float64(m.goBytes-base.goBytes)-float64(fixed))/float64(n), float64(fixed)/(1<<20),
		float64(m.rss-base.rss)/float64(n), float64(m.rss)/(1<<20))

	for round, code := range []string{"close 1012", "close 0"} {
		for send("count") != strconv.Itoa(n) {
			time.Sleep(10 * time.Millisecond)
		}
		before := h.Snapshot()
		t.Logf("server: %s", send(code))
		back := func(s HoldSnapshot) bool { return s.Reconnects >= before.Reconnects+int64(n) && all(s) }
		s, ok := h.WaitUntil(ctx, back)
		if !ok {
			t.Fatalf("round %d: not all back: %+v", round, s)
		}
	}
	h.Stop()
	r := h.Wait()
	t.Logf("storms %d, longest %+v; reconnect latency p50 %s p99 %s max %s; handshake p50 %s p99 %s; closes %v, no close frame %v; failures %v; CPU %.2fs",
		r.StormCount, r.LongestStorm, fmtMS(r.ReconnectLatency.P50MS), fmtMS(r.ReconnectLatency.P99MS), fmtMS(r.ReconnectLatency.MaxMS),
		fmtMS(r.HandshakeLatency.P50MS), fmtMS(r.HandshakeLatency.P99MS), r.ClosesByCode, r.NoCloseFrameKinds, r.Reconnects.Failures, r.CPUSeconds)
	if r.ClosesByCode[1012] != int64(n) || r.NoCloseFrame != int64(n) || r.Reconnects.OK != int64(2*n) || (r.HeldByGoroutine != 0) != goroutines {
		t.Errorf("closes %v, no close frame %d, reconnects %+v, held by goroutine %d", r.ClosesByCode, r.NoCloseFrame, r.Reconnects, r.HeldByGoroutine)
	}
}
