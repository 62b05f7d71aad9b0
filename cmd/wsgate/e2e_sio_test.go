package main

// Issue 5's proof: a real Socket.IO fleet (Node.js servers and clients from
// testdata/node, installed by `npm ci --prefix testdata/node`) through the
// wsgate binary, with clients that keep no cookies and all come from
// 127.0.0.1.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const nodeDir = "../../testdata/node"

// needNode skips the test when Node.js or the npm packages are missing (a
// development machine without `npm ci --prefix testdata/node`); CI installs
// them (.ci/run).
func needNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("Socket.IO fleet tests are long; skipped with -short")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found in PATH: the Socket.IO fleet tests need Node.js")
	}
	for _, m := range []string{"socket.io", "socket.io-client", "socket.io-v2", "socket.io-client-v2"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", m, "package.json")); err != nil {
			t.Skipf("testdata/node/node_modules/%s missing: run `npm ci --prefix testdata/node` (CI does)", m)
		}
	}
}

// sioNode is a fleet-server.js process.
type sioNode struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

func startSIONode(t *testing.T, name string, v2 bool) *sioNode {
	t.Helper()
	// The port is reserved for the whole test (reserveAddr; Node's listener
	// sets SO_REUSEADDR and binds it), so a node killed by the test keeps
	// refusing connections and its port goes to no one else.
	addr := reserveAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"fleet-server.js", "--name", name, "--port", port}
	if v2 {
		args = append(args, "--v2")
	}
	cmd, _, out := startNode(t, name+" stderr", false, args...)
	n := &sioNode{name: name, addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(n.done) }()
	t.Cleanup(func() { n.kill() })
	waitListening(t, name, out, addr)
	return n
}

// kill ends the node as a crash would (SIGKILL) and waits for it.
func (n *sioNode) kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// fleetSummary is a JSON line of fleet-clients.js.
type fleetSummary struct {
	Phase     string
	N         int
	Connected int
	Upgraded  int
	Acked     int
	Nodes     map[string]int
	Errors    []string
	Ms        int
	// round: [node0, node, disconnects, upgraded] per client
	Clients [][4]any
}

// fleetClients is a fleet-clients.js process.
type fleetClients struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startFleetClients(t *testing.T, url string, n int, v2 bool) *fleetClients {
	t.Helper()
	args := []string{"fleet-clients.js", "--url", url, "--n", fmt.Sprint(n)}
	if v2 {
		args = append(args, "--v2")
	}
	cmd, stdin, out := startNode(t, "clients stderr", true, args...)
	fc := &fleetClients{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			fc.lines <- sc.Text()
		}
		close(fc.lines)
	}()
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
	return fc
}

// next waits for the next summary line.
func (fc *fleetClients) next(phase string) fleetSummary {
	fc.t.Helper()
	select {
	case l, ok := <-fc.lines:
		if !ok {
			fc.t.Fatalf("fleet-clients.js exited before its %s summary", phase)
		}
		var s fleetSummary
		if err := json.Unmarshal([]byte(l), &s); err != nil || s.Phase != phase {
			fc.t.Fatalf("fleet-clients.js: want a %s summary, got %.300q (%v)", phase, l, err)
		}
		for _, e := range s.Errors {
			fc.t.Logf("clients: %s", e)
		}
		return s
	case <-time.After(150 * time.Second):
		fc.t.Fatalf("no %s summary from fleet-clients.js after 150 s", phase)
	}
	return fleetSummary{}
}

func (fc *fleetClients) send(cmd string) {
	if _, err := io.WriteString(fc.stdin, cmd+"\n"); err != nil {
		fc.t.Fatalf("writing to fleet-clients.js: %v", err)
	}
}

// checkFleet asserts issue 5's figures: 100% connect, >= 99% upgrade, every
// ack, each node's share within ±15% of an even split.
func checkFleet(t *testing.T, s fleetSummary, nodes []*sioNode) {
	t.Helper()
	t.Logf("%d clients in %d ms: connected %d, upgraded %d, acked %d, per node %v",
		s.N, s.Ms, s.Connected, s.Upgraded, s.Acked, s.Nodes)
	if s.Connected != s.N {
		t.Errorf("connected %d of %d, want all", s.Connected, s.N)
	}
	if float64(s.Upgraded) < 0.99*float64(s.N) {
		t.Errorf("upgraded %d of %d, want at least 99%%", s.Upgraded, s.N)
	}
	if s.Acked != s.N {
		t.Errorf("acks %d of %d, want all", s.Acked, s.N)
	}
	even := float64(s.N) / float64(len(nodes))
	for _, n := range nodes {
		if got := float64(s.Nodes[n.name]); math.Abs(got-even) > 0.15*even {
			t.Errorf("node %s has %v clients, want %.0f ±15%% (%v)", n.name, got, even, s.Nodes)
		}
	}
}

func startSIOFleet(t *testing.T, v2 bool) []*sioNode {
	var nodes []*sioNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, startSIONode(t, name, v2))
	}
	return nodes
}

func backendArgs(nodes []*sioNode) []string {
	var args []string
	for _, n := range nodes {
		args = append(args, "-b", n.addr)
	}
	return args
}

// checkNoMisses reads the sticky miss counters of g: a healthy fleet has none.
func checkNoMisses(t *testing.T, g *gate) {
	t.Helper()
	m, err := g.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if strings.HasPrefix(k, "wsgate_sticky_misses_total") && v != 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	if m[`wsgate_sticky_handshakes_total{result="tagged"}`] == 0 {
		t.Errorf("no handshake tagged")
	}
}

const fleetClientsN = 500

func TestSIOFleetThroughWsgate(t *testing.T) {
	needNode(t)
	nodes := startSIOFleet(t, false)
	g := startGate(t, backendArgs(nodes)...)
	fc := startFleetClients(t, "http://"+g.addr, fleetClientsN, false)
	checkFleet(t, fc.next("connect"), nodes)
	checkNoMisses(t, g)
	dumpBalance(t, g)
	fc.send("quit")
}

// dumpBalance logs, after a failure, g's counters that explain a skewed
// split: per-backend picks and health, upstream errors, sticky results.
func dumpBalance(t *testing.T, gs ...*gate) {
	t.Helper()
	if !t.Failed() {
		return
	}
	for _, g := range gs {
		m, err := g.metrics()
		if err != nil {
			t.Logf("metrics: %v", err)
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			for _, w := range []string{"backend", "health", "upstream", "sticky", "polling"} {
				if strings.Contains(k, w) {
					keys = append(keys, k)
					break
				}
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.Logf("%s %s = %v", g.addr, k, m[k])
		}
	}
}

// Two wsgate instances with the same flags behind a TCP splitter that sends
// each new connection to the other one: every polling request of a session
// may land on either instance.
func TestSIOFleetThroughTwoInstances(t *testing.T) {
	needNode(t)
	nodes := startSIOFleet(t, false)
	g1 := startGate(t, backendArgs(nodes)...)
	g2 := startGate(t, backendArgs(nodes)...)
	sp := startSplitter(t, g1.addr, g2.addr)
	fc := startFleetClients(t, "http://"+sp.addr, fleetClientsN, false)
	checkFleet(t, fc.next("connect"), nodes)
	dumpBalance(t, g1, g2)
	fc.send("quit")
	for i, g := range []*gate{g1, g2} {
		tagged := g.metric(t, `wsgate_sticky_handshakes_total{result="tagged"}`)
		hits := g.metric(t, `wsgate_sticky_hits_total`)
		t.Logf("instance %d: %v handshakes tagged, %v sticky requests", i+1, tagged, hits)
		if tagged == 0 || hits == 0 {
			t.Errorf("instance %d took no Socket.IO work: the splitter did not alternate", i+1)
		}
		checkNoMisses(t, g)
	}
	if n := sp.conns.Load(); n < 2*fleetClientsN {
		t.Errorf("the splitter saw only %d connections", n)
	}
}

// A node killed during the run: its clients reconnect through wsgate to the
// other nodes; no other client is disturbed.
func TestSIOFleetNodeKilled(t *testing.T) {
	needNode(t)
	nodes := startSIOFleet(t, false)
	g := startGate(t, backendArgs(nodes)...)
	fc := startFleetClients(t, "http://"+g.addr, fleetClientsN, false)
	checkFleet(t, fc.next("connect"), nodes)
	dumpBalance(t, g)

	victim := nodes[0]
	victim.kill()
	t.Logf("killed %s", victim.name)
	// Its tunnels close at once; the clients see it and reconnect.
	g.waitMetricEq(t, activeMetric(victim.addr), 0, 30*time.Second)
	fc.send("round")
	r := fc.next("round")
	t.Logf("after the kill: %d acks, per node %v", r.Acked, r.Nodes)
	if r.Acked != fleetClientsN {
		t.Errorf("acks %d of %d after the kill", r.Acked, fleetClientsN)
	}
	moved, disturbed := 0, 0
	for i, c := range r.Clients {
		node0, _ := c[0].(string)
		node, _ := c[1].(string)
		disc, _ := c[2].(float64)
		if node0 == victim.name {
			moved++
			if node == "" || node == victim.name {
				t.Errorf("client %d of the killed node: ack from %q", i, node)
			}
			continue
		}
		if node != node0 || disc != 0 {
			disturbed++
			if disturbed <= 5 {
				t.Errorf("client %d on %s: now on %q after %v disconnects", i, node0, node, disc)
			}
		}
	}
	t.Logf("%d clients moved off %s; %d others disturbed", moved, victim.name, disturbed)
	if moved == 0 {
		t.Errorf("no client was on %s", victim.name)
	}
	if disturbed > 0 {
		t.Errorf("%d clients of live nodes were disturbed", disturbed)
	}
	fc.send("quit")
}

// Socket.IO 2 (Engine.IO 3) servers and clients: connect, upgrade, acks.
func TestSIOFleetEngineIO3(t *testing.T) {
	needNode(t)
	nodes := startSIOFleet(t, true)
	g := startGate(t, backendArgs(nodes)...)
	fc := startFleetClients(t, "http://"+g.addr, 150, true)
	s := fc.next("connect")
	t.Logf("%d clients in %d ms: connected %d, upgraded %d, acked %d, per node %v",
		s.N, s.Ms, s.Connected, s.Upgraded, s.Acked, s.Nodes)
	if s.Connected != s.N || s.Upgraded != s.N || s.Acked != s.N {
		t.Errorf("Engine.IO 3: connected %d, upgraded %d, acked %d of %d; want all", s.Connected, s.Upgraded, s.Acked, s.N)
	}
	if len(s.Nodes) != len(nodes) {
		t.Errorf("Engine.IO 3 clients reached %v, want all three nodes", s.Nodes)
	}
	checkNoMisses(t, g)
	fc.send("quit")
}

// splitter is a round-robin TCP relay: each new connection goes to the next
// target, as an L4 balancer or a Kubernetes Service in front of several
// wsgate instances would send it.
type splitter struct {
	addr  string
	conns atomic.Int64
}

func startSplitter(t *testing.T, targets ...string) *splitter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &splitter{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards open
	open := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			open[c] = struct{}{}
		} else {
			delete(open, c)
		}
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sp.conns.Add(1)
			target := targets[i%len(targets)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					c.Close()
					return
				}
				track(c, true)
				track(u, true)
				done := make(chan struct{}, 2)
				pipe := func(dst, src net.Conn) {
					io.Copy(dst, src)
					dst.(*net.TCPConn).CloseWrite()
					done <- struct{}{}
				}
				go pipe(u, c)
				go pipe(c, u)
				<-done
				<-done
				c.Close()
				u.Close()
				track(c, false)
				track(u, false)
			}()
		}
	}()
	return sp
}

// startNode runs a script of testdata/node (args: the script and its
// arguments), its stderr logged under prefix; stdin is nil unless
// withStdin. The caller waits for it.
func startNode(t *testing.T, prefix string, withStdin bool, args ...string) (cmd *exec.Cmd, stdin io.WriteCloser, out io.ReadCloser) {
	t.Helper()
	cmd = exec.Command("node", args...)
	cmd.Dir = nodeDir
	cmd.Stderr = &logWriter{t: t, prefix: prefix}
	var err error
	if withStdin {
		if stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if out, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdin, out
}

// waitListening reads a node server's first line, {"listening": PORT},
// checks that it listens on want (the reserved address it was given), and
// discards the rest of its output.
func waitListening(t *testing.T, name string, out io.Reader, want string) {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		var msg struct{ Listening int }
		if !ok || json.Unmarshal([]byte(l), &msg) != nil || fmt.Sprintf("127.0.0.1:%d", msg.Listening) != want {
			t.Fatalf("node %s: first line %q, want {\"listening\": PORT} for %s", name, l, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s: not listening after 20 s", name)
	}
}
