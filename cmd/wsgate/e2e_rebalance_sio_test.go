package main

// Issue 17 with a real Socket.IO fleet: 3,000 socket.io-client clients
// (testdata/node/rebalance-clients.js, one Node process) through wsgate to
// Socket.IO 4 nodes (testdata/node/rebalance-server.js), a third node
// joining by SIGHUP with --backends-file and --rebalance 200/s. The
// balance is read on the server side: each node's connected Socket.IO
// sessions.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rbsioClientsN is the fleet's size: 3,000 clients, as issue 17 asks.
// WSGATE_SIO_REBALANCE_N overrides it (for measuring what the machine can
// carry).
func rbsioClientsN(t *testing.T) int {
	if v := os.Getenv("WSGATE_SIO_REBALANCE_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 30 {
			t.Fatalf("WSGATE_SIO_REBALANCE_N=%q: want a number ≥ 30", v)
		}
		return n
	}
	return 3000
}

// TestRebalanceSIOWebSocket: clients with transports ["websocket"];
// wsgate with a standing --rebalance 200/s.
func TestRebalanceSIOWebSocket(t *testing.T) { testRebalanceSIO(t, "websocket", true) }

// TestRebalanceSIOPollingUpgrade: socket.io-client's default transports,
// long-polling first, then the upgrade to WebSocket; a moved client comes
// back by polling (sticky to the node that gave it its sid) and upgrades.
// The pass is a one-off POST /rebalance?rate=200/s once node c is healthy,
// not a standing --rebalance: with a standing rate, a pass may start while
// the clients first connect (a few upgraded tunnels on one backend, none
// on the other, is an imbalance) and close Engine.IO upgrade probes, which
// wedges socket.io-client for a ping timeout (see
// TestRebalanceSIOPollingUpgradeStanding).
func TestRebalanceSIOPollingUpgrade(t *testing.T) { testRebalanceSIO(t, "default", false) }

// TestRebalanceSIOPollingUpgradeStanding is TestRebalanceSIOPollingUpgrade
// with a standing --rebalance 200/s, as issue 17 has it. Before 736c26e (a
// pass starts only once the imbalance has lasted 2 s) it failed about 1
// run in 4 with 300 clients: a pass started while the clients first
// connected and closed Engine.IO upgrade probes 75-105 ms old; a probe
// closed after the client got "3probe" (it has paused polling) and before
// it sent "5" leaves engine.io-client's polling transport paused for good,
// so the session is dead until the 45 s ping timeout and what the client
// emits meanwhile is lost. Since then it passed 4 of 4; the rebalancer
// still may close a tunnel of any age, so it stays opt-in:
// WSGATE_SIO_REBALANCE_STANDING_POLLING=1 runs it.
func TestRebalanceSIOPollingUpgradeStanding(t *testing.T) {
	if os.Getenv("WSGATE_SIO_REBALANCE_STANDING_POLLING") == "" {
		t.Skip("rebalancing may close Engine.IO upgrade probes (wedging socket.io-client); WSGATE_SIO_REBALANCE_STANDING_POLLING=1 runs it")
	}
	testRebalanceSIO(t, "default", true)
}

// testRebalanceSIO: n clients on nodes a and b, each emitting once a second
// with an ack. Node c joins (SIGHUP, --backends-file) and a rebalancing
// pass at 200/s runs (standing: --rebalance 200/s; otherwise POST
// /rebalance). Within 30 s every node has n/3 ± 15% connected sessions
// (counted by the nodes), and stays so once every client is back. Moved
// clients reconnected with new sids, on another node. Every emit a client
// saw acked was received by a node; the only unacked emits are those in
// flight at a close (counted: lost beyond the reconnect itself, or their
// ack was); every close the clients saw was a "transport close" with the
// code 1012; no reconnect failed.
func testRebalanceSIO(t *testing.T, transports string, standing bool) {
	needNode(t)
	n := rbsioClientsN(t)
	a, b, c := startRBSIONode(t, "a"), startRBSIONode(t, "b"), startRBSIONode(t, "c")
	nodes := []*rbsioNode{a, b, c}
	file := filepath.Join(t.TempDir(), "backends")
	if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	accessLog := filepath.Join(t.TempDir(), "access.log")
	args := []string{"--backends-file", file, "--health-interval", "500ms", "--health-rise", "1", "--access-log", accessLog}
	if standing {
		args = append(args, "--rebalance", "200/s")
	}
	g := startGate(t, args...)
	defer logRBSIOTunnelCloses(t, accessLog)
	cl := startRBSIOClients(t, "http://"+g.addr, n, transports)

	all := func(tk rbsioTick) bool { return tk.Connected == n && tk.Websocket == n }
	tk, ok := cl.waitTick(180*time.Second, all)
	if !ok {
		cl.logOdd()
		t.Fatalf("the clients did not all connect (on websocket) in 180 s: %+v", tk)
	}
	t.Logf("%d clients connected after %d ms: per node (clients' view) %v; connect errors %d", n, tk.T, tk.Nodes, tk.ConnectErrors)
	st := rbsioStats(t, nodes)
	t.Logf("sessions on the nodes before the scale-out: a %d, b %d, c %d", st[0].Connected, st[1].Connected, st[2].Connected)
	if st[0].Connected+st[1].Connected != n || st[2].Connected != 0 {
		t.Fatalf("before the scale-out: a %d + b %d sessions, c %d; want %d on a and b", st[0].Connected, st[1].Connected, st[2].Connected, n)
	}
	// Let a few emits go by before the move.
	time.Sleep(2 * time.Second)

	// Scale out.
	if err := os.WriteFile(file, []byte(a.addr+"\n"+b.addr+"\n"+c.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hupAt := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !standing {
		g.waitState(t, c.addr, 30*time.Second, "healthy")
		if code, body := postRebalance(t, g, "rate=200/s"); code != http.StatusAccepted {
			t.Fatalf("POST /rebalance?rate=200/s: %d %q", code, body)
		}
	}
	fair := n / 3
	within := func(v int) bool { return v*100 >= fair*85 && v*100 <= fair*115 }
	balanced := func(st []rbsioNodeStats) bool {
		return within(st[0].Connected) && within(st[1].Connected) && within(st[2].Connected)
	}
	var series []string
	var took time.Duration
	lastLog := time.Duration(-1)
	for {
		time.Sleep(250 * time.Millisecond)
		st = rbsioStats(t, nodes)
		since := time.Since(hupAt)
		if since-lastLog >= time.Second || balanced(st) {
			lastLog = since
			series = append(series, fmt.Sprintf("%4.1fs %d/%d/%d", since.Seconds(), st[0].Connected, st[1].Connected, st[2].Connected))
		}
		if balanced(st) {
			took = since
			break
		}
		if since > 30*time.Second {
			t.Logf("sessions a/b/c after the SIGHUP: %s", strings.Join(series, ", "))
			t.Fatalf("not within %d ± 15%% 30 s after node c joined: a %d, b %d, c %d", fair, st[0].Connected, st[1].Connected, st[2].Connected)
		}
	}
	t.Logf("balanced %v after the SIGHUP; sessions a/b/c: %s", took.Round(100*time.Millisecond), strings.Join(series, ", "))

	// Every client back (on websocket), then the balance again.
	tk, ok = cl.waitTick(60*time.Second, all)
	if !ok {
		cl.logOdd()
		t.Fatalf("the clients were not all connected again 60 s after the balance: %+v", tk)
	}
	// Reconnecting clients are routed by least connections on counts that
	// are off while they come back (a client mid-upgrade holds a long-poll
	// and a WebSocket on its node). Where some went back to the old nodes,
	// the one-off pass's follow-up (balancer.RebalanceFollowUps) moves them
	// after RebalanceCooldown and RebalanceSettle: seen once in CI with the
	// machine loaded, 1,081/1,079/840 after the pass. So: balanced with
	// every session on a node within 30 s of every client being back, and
	// still so 3 s later.
	backAt := time.Now()
	settled := func() bool {
		st = rbsioStats(t, nodes)
		return st[0].Connected+st[1].Connected+st[2].Connected == n && balanced(st)
	}
	for !settled() && time.Since(backAt) < 30*time.Second {
		time.Sleep(250 * time.Millisecond)
	}
	if time.Since(backAt) > time.Second {
		t.Logf("balanced again %v after every client was back (a follow-up pass: %v)", time.Since(backAt).Round(100*time.Millisecond), g.metric(t, `wsgate_rebalance_passes_total{pool="default"}`) > 1)
	}
	time.Sleep(3 * time.Second)
	st = rbsioStats(t, nodes)
	t.Logf("all %d back %v after the SIGHUP; 3 s later sessions a %d, b %d, c %d", n, time.Since(hupAt).Round(100*time.Millisecond), st[0].Connected, st[1].Connected, st[2].Connected)
	if sum := st[0].Connected + st[1].Connected + st[2].Connected; sum != n {
		t.Errorf("%d sessions on the nodes, want %d", sum, n)
	}
	if !balanced(st) {
		t.Errorf("once every client was back: a %d, b %d, c %d sessions, want each %d ± 15%%", st[0].Connected, st[1].Connected, st[2].Connected, fair)
	}
	if tk, ok = cl.waitTick(60*time.Second, all); !ok {
		cl.logOdd()
		t.Fatalf("the clients were not all connected at the end: %+v", tk)
	}

	fin := cl.stop()
	defer cl.quit()
	moved := 0.0
	for _, nd := range nodes {
		moved += g.metric(t, fmt.Sprintf(`wsgate_rebalance_moved_total{pool="default",backend=%q}`, nd.addr))
	}
	frames1012 := g.metric(t, `wsgate_tunnel_close_frames_total{to="client",code="1012"}`)
	passes := g.metric(t, `wsgate_rebalance_passes_total{pool="default"}`)
	st = rbsioStats(t, nodes)
	serverReasons := map[string]int{}
	for _, s := range st {
		for k, v := range s.Disconnects {
			serverReasons[k] += v
		}
	}
	t.Logf("clients: %d disconnects, reasons %v, close codes %v; reconnect errors %d; wsgate: %d passes, moved %.0f (excess was %d), 1012 frames to clients %.0f; nodes saw disconnects %v",
		fin.Disconnects, fin.Reasons, fin.Codes, fin.ConnectErrors, int(passes), moved, n-2*fair, frames1012, serverReasons)
	for _, e := range fin.Errors {
		t.Logf("clients: %s", e)
	}
	for _, o := range fin.Odd {
		t.Logf("client that saw more than clean moves: %s", o)
	}
	for _, s := range st {
		for _, e := range s.Errors {
			t.Logf("node %s: %s", s.Name, e)
		}
	}

	// Close reasons and codes as the clients saw them.
	if fin.Disconnects == 0 || moved == 0 {
		t.Fatalf("no client was moved (disconnects %d, moved %.0f)", fin.Disconnects, moved)
	}
	if fin.Reasons["transport close"] != fin.Disconnects {
		t.Errorf("disconnect reasons %v: want every one \"transport close\"", fin.Reasons)
	}
	if fin.Codes["1012"] != fin.Disconnects {
		t.Errorf("close codes seen by the clients %v: want 1012 for all %d disconnects", fin.Codes, fin.Disconnects)
	}
	if float64(fin.Codes["1012"]) < moved {
		t.Errorf("clients saw %d closes with 1012, wsgate moved %.0f", fin.Codes["1012"], moved)
	}
	// Closes beyond the excess are clients moved for nothing: a pass that
	// ends at its budget while moved clients are between their close and
	// their reconnect sees the pool's total low, and a standing rate starts
	// another. Measured: none with 3,000 clients; before 736c26e, up to 87%
	// more with 300.
	if excess := float64(n - 2*fair); moved > 2*excess {
		t.Errorf("moved %.0f tunnels; the excess was %.0f", moved, excess)
	}
	if fin.ConnectErrors != 0 {
		t.Errorf("%d reconnects failed", fin.ConnectErrors)
	}
	// A node sees wsgate's 1001 as a "transport close", or as a "transport
	// error" (write error) where it was sending (an ack) as the close came.
	if got := serverReasons["transport close"] + serverReasons["transport error"]; got < fin.Codes["1012"] {
		t.Errorf("the nodes saw disconnects %v, want at least %d transport closes (wsgate's 1001 to the backend)", serverReasons, fin.Codes["1012"])
	}

	checkRBSIOSessions(t, nodes, fin, n)
	checkRBSIOEmits(t, nodes, fin)
	dumpBalance(t, g)
}

// logRBSIOTunnelCloses logs, after a failure, how wsgate's tunnels ended
// (from its access log): per reason, and those that lasted under 2 s
// (Engine.IO upgrade probes among them), with their first few paths.
func logRBSIOTunnelCloses(t *testing.T, path string) {
	if !t.Failed() {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.Logf("access log: %v", err)
		return
	}
	defer f.Close()
	reasons := map[string]int{}
	var short []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Time, Type, Path, Backend, Reason string
			DurationMs                        float64 `json:"duration_ms"`
			BytesIn                           int64   `json:"bytes_in"`
			BytesOut                          int64   `json:"bytes_out"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Type != "tunnel" {
			continue
		}
		k := e.Reason
		if e.DurationMs < 2000 {
			k += " (under 2 s)"
			if len(short) < 20 {
				short = append(short, fmt.Sprintf("%s %s %s %.0f ms, %d B in, %d B out, %s", e.Time, e.Backend, e.Path, e.DurationMs, e.BytesIn, e.BytesOut, e.Reason))
			}
		}
		reasons[k]++
	}
	t.Logf("tunnel closes in wsgate's access log: %v", reasons)
	for _, s := range short {
		t.Logf("short tunnel: %s", s)
	}
}

// checkRBSIOSessions: every client has exactly one session connected now,
// on the node its last sid came from; a sid belongs to one node and one
// client; every moved client got a new sid on another node; every session
// on c belongs to a client that was on a or b before.
func checkRBSIOSessions(t *testing.T, nodes []*rbsioNode, fin rbsioFinal, n int) {
	t.Helper()
	type sess struct {
		node string
		c    int
		now  bool
	}
	bySid := map[string]sess{}
	connectedNow := map[int][]string{} // client → nodes where it is connected now
	for _, nd := range nodes {
		ss := nd.sessions(t)
		for _, s := range ss.Sessions {
			var c int
			var sid string
			var now bool
			if len(s) != 3 || json.Unmarshal(s[0], &c) != nil || json.Unmarshal(s[1], &sid) != nil || json.Unmarshal(s[2], &now) != nil {
				t.Fatalf("%s: bad session %s", nd.name, s)
			}
			if prev, dup := bySid[sid]; dup {
				t.Errorf("sid %s on %s (client %d) and on %s (client %d)", sid, prev.node, prev.c, nd.name, c)
			}
			bySid[sid] = sess{nd.name, c, now}
			if now {
				connectedNow[c] = append(connectedNow[c], nd.name)
			}
		}
	}
	bad, movedClients, onC := 0, 0, 0
	report := func(f string, args ...any) {
		if bad < 10 {
			t.Errorf(f, args...)
		}
		bad++
	}
	for _, cl := range fin.Clients {
		if len(connectedNow[cl.I]) != 1 {
			report("client %d is connected on %v now, want one node", cl.I, connectedNow[cl.I])
			continue
		}
		if len(cl.Sids) == 0 {
			report("client %d has no session", cl.I)
			continue
		}
		seen := map[string]bool{}
		for _, x := range cl.Sids {
			s, ok := bySid[x.Sid]
			if !ok || s.node != x.Node || s.c != cl.I {
				report("client %d: sid %s from %s; the nodes have %+v", cl.I, x.Sid, x.Node, s)
			}
			if seen[x.Sid] {
				report("client %d got sid %s twice", cl.I, x.Sid)
			}
			seen[x.Sid] = true
		}
		last := cl.Sids[len(cl.Sids)-1]
		if now := connectedNow[cl.I][0]; now != last.Node || !bySid[last.Sid].now {
			report("client %d: its last sid %s is from %s, but it is connected on %s", cl.I, last.Sid, last.Node, now)
		}
		if first := cl.Sids[0]; first.Node == "c" {
			report("client %d started on c, before c joined", cl.I)
		}
		if len(cl.Sids) > 1 {
			movedClients++
		}
		if last.Node == "c" {
			onC++
		}
	}
	if len(fin.Clients) != n {
		t.Errorf("final report has %d clients, want %d", len(fin.Clients), n)
	}
	t.Logf("%d clients have more than one sid (moved); %d are on c now, each with a new sid issued by c; %d sessions in all on the nodes", movedClients, onC, len(bySid))
	if movedClients < onC {
		t.Errorf("%d clients on c, only %d moved", onC, movedClients)
	}
}

// checkRBSIOEmits: every acked emit was received by a node; no emit was
// received twice; none is still unacked but for those in flight at a
// close, whose fate is counted.
func checkRBSIOEmits(t *testing.T, nodes []*rbsioNode, fin rbsioFinal) {
	t.Helper()
	recv := map[int][][2]int{} // client → ranges, from every node
	dupRanges := 0
	received := 0
	for _, nd := range nodes {
		ss := nd.sessions(t)
		for k, rs := range ss.Received {
			c, err := strconv.Atoi(k)
			if err != nil {
				t.Fatalf("%s: received key %q", nd.name, k)
			}
			recv[c] = append(recv[c], rs...)
			for _, r := range rs {
				received += r[1] - r[0] + 1
			}
		}
	}
	has := func(rs [][2]int, seq int) int {
		k := 0
		for _, r := range rs {
			if seq >= r[0] && seq <= r[1] {
				k++
			}
		}
		return k
	}
	emitted, acked, ackedMissing, inflight, inflightRecv, pending := 0, 0, 0, 0, 0, 0
	for _, cl := range fin.Clients {
		rs := recv[cl.I]
		for i, r := range rs {
			for _, r2 := range rs[i+1:] {
				if r[0] <= r2[1] && r2[0] <= r[1] {
					dupRanges++
				}
			}
		}
		unacked := map[int]bool{}
		for _, s := range cl.Pending {
			unacked[s] = true
		}
		for _, s := range cl.Inflight {
			unacked[s] = true
			inflight++
			if has(rs, s) > 0 {
				inflightRecv++
			}
		}
		pending += len(cl.Pending)
		emitted += cl.Emitted
		for s := 0; s < cl.Emitted; s++ {
			if unacked[s] {
				continue
			}
			acked++
			switch has(rs, s) {
			case 1:
			case 0:
				if ackedMissing < 10 {
					t.Errorf("client %d: emit %d was acked, but no node received it", cl.I, s)
				}
				ackedMissing++
			default:
				t.Errorf("client %d: emit %d received by more than one node", cl.I, s)
			}
		}
	}
	dups := 0
	for _, nd := range nodes {
		dups += nd.stats(t).Dups
	}
	t.Logf("emits: %d made (%d while disconnected, sent after the reconnect), %d acked, all of those received by a node (%d missing); received by the nodes %d; in flight at a close %d (%d of them received by a node: the ack was lost; %d lost with the connection); unacked otherwise %d",
		emitted, fin.Buffered, acked, ackedMissing, received, inflight, inflightRecv, inflight-inflightRecv, pending)
	if acked != fin.Acked {
		t.Errorf("the clients counted %d acks, their lists give %d", fin.Acked, acked)
	}
	if ackedMissing > 0 {
		t.Errorf("%d acked emits were received by no node", ackedMissing)
	}
	if pending > 0 {
		t.Errorf("%d emits neither acked nor in flight at a close", pending)
	}
	if dups > 0 || dupRanges > 0 {
		t.Errorf("emits received twice: %d on one node, %d across nodes", dups, dupRanges)
	}
	if inflight > fin.Disconnects*2 {
		t.Errorf("%d emits in flight at %d closes", inflight, fin.Disconnects)
	}
}

// ---------------------------------------------------------------------------
// rebalance-server.js

type rbsioNode struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

type rbsioNodeStats struct {
	Name        string
	Connected   int
	Engine      int
	Transports  map[string]int
	Connects    int
	Disconnects map[string]int
	Received    int
	Dups        int
	Errors      []string
}

type rbsioSessions struct {
	Name     string
	Sessions [][]json.RawMessage // [c, sid, connectedNow]
	Received map[string][][2]int // client → seq ranges
}

func startRBSIONode(t *testing.T, name string) *rbsioNode {
	t.Helper()
	addr := reserveAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd, _, out := startNode(t, "node "+name+" stderr", false, "rebalance-server.js", "--name", name, "--port", port)
	nd := &rbsioNode{name: name, addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(nd.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-nd.done
	})
	waitListening(t, name, out, addr)
	return nd
}

func (nd *rbsioNode) get(t *testing.T, path string, v any) {
	t.Helper()
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + nd.addr + path)
	if err != nil {
		t.Fatalf("node %s: GET %s: %v", nd.name, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("node %s: GET %s: %v", nd.name, path, err)
	}
}

func (nd *rbsioNode) stats(t *testing.T) rbsioNodeStats {
	var s rbsioNodeStats
	nd.get(t, "/stats", &s)
	return s
}

func (nd *rbsioNode) sessions(t *testing.T) rbsioSessions {
	var s rbsioSessions
	nd.get(t, "/sessions", &s)
	return s
}

func rbsioStats(t *testing.T, nodes []*rbsioNode) []rbsioNodeStats {
	t.Helper()
	out := make([]rbsioNodeStats, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.stats(t)
	}
	return out
}

// ---------------------------------------------------------------------------
// rebalance-clients.js

type rbsioTick struct {
	Phase         string
	T             int
	N             int
	Connected     int
	Websocket     int
	Nodes         map[string]int
	Emitted       int
	Acked         int
	Pending       int
	Inflight      int
	Buffered      int
	Disconnects   int
	Reasons       map[string]int
	Codes         map[string]int
	ConnectErrors int
	Errors        []string
}

type rbsioSid struct {
	Sid, Node string
}

// UnmarshalJSON reads [sid, node]. A sid the client got in a polling
// handshake through wsgate carries wsgate's node token after a dot
// (--sticky auto); the node knows it without.
func (s *rbsioSid) UnmarshalJSON(b []byte) error {
	var x [2]string
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	s.Sid, _, _ = strings.Cut(x[0], ".")
	s.Node = x[1]
	return nil
}

// rbsioClient is one entry of the final report: [i, emitted, [pending
// seqs], [seqs in flight at a close], [[sid, node], ...]].
type rbsioClient struct {
	I        int
	Emitted  int
	Pending  []int
	Inflight []int
	Sids     []rbsioSid
}

func (c *rbsioClient) UnmarshalJSON(b []byte) error {
	var x []json.RawMessage
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	if len(x) != 5 {
		return fmt.Errorf("client entry %s: want 5 fields", b)
	}
	for i, p := range []any{&c.I, &c.Emitted, &c.Pending, &c.Inflight, &c.Sids} {
		if err := json.Unmarshal(x[i], p); err != nil {
			return err
		}
	}
	return nil
}

type rbsioFinal struct {
	rbsioTick
	Clients []rbsioClient
	Odd     []json.RawMessage // event logs of clients that saw more than clean moves
}

type rbsioClients struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	mu    sync.Mutex // guards last
	last  rbsioTick
	final chan rbsioFinal
	odds  chan []json.RawMessage
}

func startRBSIOClients(t *testing.T, url string, n int, transports string) *rbsioClients {
	t.Helper()
	cmd, stdin, out := startNode(t, "clients stderr", true, "rebalance-clients.js", "--url", url, "--n", fmt.Sprint(n), "--transports", transports, "--ramp", "500")
	cl := &rbsioClients{t: t, cmd: cmd, stdin: stdin, done: make(chan struct{}), final: make(chan rbsioFinal, 1), odds: make(chan []json.RawMessage, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var f rbsioFinal
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Logf("rebalance-clients.js: %v: %.300q", err, sc.Text())
				continue
			}
			switch f.Phase {
			case "final":
				cl.final <- f
				continue
			case "odd":
				cl.odds <- f.Odd
				continue
			}
			cl.mu.Lock()
			cl.last = f.rbsioTick
			cl.mu.Unlock()
		}
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); close(cl.done) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-cl.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-cl.done
		}
	})
	return cl
}

// waitTick waits up to d for a tick for which ok holds, and returns the
// last tick seen.
func (cl *rbsioClients) waitTick(d time.Duration, ok func(rbsioTick) bool) (rbsioTick, bool) {
	deadline := time.Now().Add(d)
	for {
		cl.mu.Lock()
		tk := cl.last
		cl.mu.Unlock()
		if tk.Phase != "" && ok(tk) {
			return tk, true
		}
		select {
		case <-cl.done:
			cl.t.Fatalf("rebalance-clients.js exited; last tick %+v", tk)
		default:
		}
		if time.Now().After(deadline) {
			return tk, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop stops the emits and returns the final report.
func (cl *rbsioClients) stop() rbsioFinal {
	cl.t.Helper()
	if _, err := io.WriteString(cl.stdin, "stop\n"); err != nil {
		cl.t.Fatalf("writing to rebalance-clients.js: %v", err)
	}
	select {
	case f := <-cl.final:
		return f
	case <-cl.done:
		cl.t.Fatal("rebalance-clients.js exited before its final report")
	case <-time.After(60 * time.Second):
		cl.t.Fatal("no final report from rebalance-clients.js after 60 s")
	}
	return rbsioFinal{}
}

func (cl *rbsioClients) quit() { io.WriteString(cl.stdin, "quit\n") }

// logOdd logs the event logs of up to 10 clients that saw more than clean
// moves (after a failure: what they went through).
func (cl *rbsioClients) logOdd() {
	io.WriteString(cl.stdin, "odd\n")
	select {
	case odd := <-cl.odds:
		for _, o := range odd {
			cl.t.Logf("client: %s", o)
		}
	case <-time.After(10 * time.Second):
	}
}
