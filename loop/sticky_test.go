package loop_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// eioNode is a minimal Engine.IO server that behaves like engine.io where
// stickiness matters: a polling handshake (EIO=, no sid) creates a session
// and answers the open packet; any request with a sid it did not issue gets
// 400 "Session ID unknown"; a known sid gets 200 (polling) or a WebSocket
// whose first message names the node; a WebSocket without sid is a
// websocket-only session. Every response carries X-Node.
type eioNode struct {
	name string
	addr string
	v3   bool // answer handshakes in Engine.IO 3's length-prefixed form
	srv  *httptest.Server

	mu   sync.Mutex // guards the fields below
	sids map[string]bool
	seen []string // every sid= received, as received
	n    int
}

func startEIONode(t testing.TB, name string, v3 bool) *eioNode {
	t.Helper()
	n := &eioNode{name: name, v3: v3, sids: map[string]bool{}}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	n.addr = strings.TrimPrefix(n.srv.URL, "http://")
	return n
}

func (n *eioNode) serve(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("X-Node", n.name)
	q := r.URL.Query()
	if q.Get("EIO") == "" {
		fmt.Fprintf(w, "plain %s", n.name)
		return
	}
	sid, hasSID := q["sid"]
	if !hasSID {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			c.WriteMessage(websocket.TextMessage, []byte("hello from "+n.name))
			c.ReadMessage()
			return
		}
		n.mu.Lock()
		n.n++
		id := fmt.Sprintf("%s%05dAAAAAAAAAAAAAAAA", n.name, n.n)[:20]
		n.sids[id] = true
		n.mu.Unlock()
		open := `0{"sid":"` + id + `","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
		if n.v3 {
			open = fmt.Sprintf("%d:%s2:40", len(open), open)
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.Header().Set("Content-Length", fmt.Sprint(len(open)))
		io.WriteString(w, open)
		return
	}
	n.mu.Lock()
	n.seen = append(n.seen, sid...)
	known := len(sid) == 1 && n.sids[sid[0]]
	n.mu.Unlock()
	if !known {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"code":1,"message":"Session ID unknown"}`)
		return
	}
	if websocket.IsWebSocketUpgrade(r) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte("hello from "+n.name))
		c.ReadMessage()
		return
	}
	fmt.Fprintf(w, "ok %s", n.name)
}

// seenSIDs returns every sid the node received.
func (n *eioNode) seenSIDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.seen...)
}

// freshClient opens a new TCP connection for every request and keeps no
// cookies: what stickiness must cope with.
var freshClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

type eioReply struct {
	status int
	node   string
	body   string
}

func eioGet(t testing.TB, url string) eioReply {
	t.Helper()
	resp, err := freshClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
		t.Fatalf("GET %s: Content-Length %d, body %d bytes", url, resp.ContentLength, len(b))
	}
	return eioReply{resp.StatusCode, resp.Header.Get("X-Node"), string(b)}
}

func eioPost(t testing.TB, url, body string) eioReply {
	t.Helper()
	resp, err := freshClient.Post(url, "text/plain;charset=UTF-8", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return eioReply{resp.StatusCode, resp.Header.Get("X-Node"), string(b)}
}

var taggedSID = regexp.MustCompile(`"sid":"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{12})"`)

// eioHandshake does the polling handshake at base (".../?EIO=4") and returns
// the tagged sid and the node that answered.
func eioHandshake(t testing.TB, base string) (sid, node string) {
	t.Helper()
	r := eioGet(t, base+"&transport=polling&t=abc")
	if r.status != 200 {
		t.Fatalf("handshake: %d %q", r.status, r.body)
	}
	m := taggedSID.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("handshake body has no tagged sid: %q", r.body)
	}
	if !strings.HasPrefix(m[1], r.node) {
		t.Fatalf("sid %q not issued by %s", m[1], r.node)
	}
	return m[1] + "." + m[2], r.node
}

func startEIOProxy(t testing.TB, nodes []*eioNode, mod func(*loop.Config)) *proxy {
	t.Helper()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	return startProxy(t, addrs, func(lc *loop.Config, _ *tunnel.Config) {
		if mod != nil {
			mod(lc)
		}
	})
}

// counter reads one of p's counters.
func (p *proxy) counter(name string) uint64 { return p.srv.Metrics().GetOrCreateCounter(name).Get() }

// Issue 5: a polling session's every request and its upgrade reach the node
// that issued the sid, each on a fresh connection without cookies; the
// backend never sees the token; least-conn counts sessions in polling phase,
// so sequential handshakes spread exactly evenly.
func TestStickySIDPollingThenUpgrade(t *testing.T) {
	for _, v3 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v3=%v", v3), func(t *testing.T) {
			nodes := []*eioNode{startEIONode(t, "nodea", v3), startEIONode(t, "nodeb", v3), startEIONode(t, "nodec", v3)}
			p := startEIOProxy(t, nodes, nil)
			eio := "4"
			if v3 {
				eio = "3"
			}
			base := p.url("/socket.io/?EIO=" + eio)
			const sessions = 30
			sids, owner := make([]string, sessions), make([]string, sessions)
			perNode := map[string]int{}
			for i := range sessions {
				sids[i], owner[i] = eioHandshake(t, base)
				perNode[owner[i]]++
			}
			for _, n := range nodes {
				if perNode[n.name] != sessions/3 {
					t.Errorf("handshakes per node %v: polling sessions are not counted by least-conn", perNode)
					break
				}
			}
			if got := p.srv.PollingSessions(); got != sessions {
				t.Errorf("PollingSessions = %d, want %d", got, sessions)
			}
			for i := range sessions {
				for k := range 4 {
					r := eioGet(t, fmt.Sprintf("%s&transport=polling&t=x%d&sid=%s", base, k, sids[i]))
					if r.status != 200 || r.node != owner[i] {
						t.Fatalf("session %d poll %d: %d from %s (%q), want 200 from %s", i, k, r.status, r.node, r.body, owner[i])
					}
				}
				r := eioPost(t, base+"&transport=polling&sid="+sids[i], "40")
				if r.status != 200 || r.node != owner[i] {
					t.Fatalf("session %d POST: %d from %s, want 200 from %s", i, r.status, r.node, owner[i])
				}
			}
			conns := make([]*websocket.Conn, sessions)
			for i := range sessions {
				c, _, err := websocket.DefaultDialer.Dial(p.wsURL("/socket.io/?EIO="+eio+"&transport=websocket&sid="+sids[i]), nil)
				if err != nil {
					t.Fatalf("session %d upgrade: %v", i, err)
				}
				conns[i] = c
				_, msg, err := c.ReadMessage()
				if err != nil || string(msg) != "hello from "+owner[i] {
					t.Fatalf("session %d upgrade reached %q (%v), want %s", i, msg, err, owner[i])
				}
			}
			if got := p.srv.PollingSessions(); got != 0 {
				t.Errorf("PollingSessions after every upgrade = %d, want 0", got)
			}
			for _, n := range nodes {
				if got := p.backendActive(n.addr); got != sessions/3 {
					t.Errorf("%s: active %d with %d tunnels open", n.name, got, sessions/3)
				}
				for _, s := range n.seenSIDs() {
					if strings.Contains(s, ".") || !strings.HasPrefix(s, n.name) {
						t.Fatalf("%s received sid %q", n.name, s)
					}
				}
			}
			for _, c := range conns {
				c.Close()
			}
		})
	}
}

// Several wsgate instances with the same backends (listed in another order)
// and a restarted one agree: a session begun on one continues on any other.
func TestStickySIDAcrossInstancesAndRestart(t *testing.T) {
	nodes := []*eioNode{startEIONode(t, "nodea", false), startEIONode(t, "nodeb", false), startEIONode(t, "nodec", false)}
	a := startEIOProxy(t, nodes, nil)
	b := startEIOProxy(t, []*eioNode{nodes[2], nodes[0], nodes[1]}, nil)
	type sess struct{ sid, node string }
	var ss []sess
	for i := range 12 {
		gw := a
		if i%2 == 1 {
			gw = b
		}
		sid, node := eioHandshake(t, gw.url("/socket.io/?EIO=4"))
		ss = append(ss, sess{sid, node})
	}
	c := startEIOProxy(t, nodes, nil) // "restarted": a new instance, no state
	for i, s := range ss {
		for j, gw := range []*proxy{a, b, c} {
			r := eioGet(t, gw.url("/socket.io/?EIO=4&transport=polling&sid="+s.sid))
			if r.status != 200 || r.node != s.node {
				t.Fatalf("session %d via instance %d: %d from %s, want 200 from %s", i, j, r.status, r.node, s.node)
			}
		}
	}
}

// With a secret, an instance whose pool lists another node as well still
// honours the tokens of the nodes it shares.
func TestStickySecretAcrossBackendSets(t *testing.T) {
	nodes := []*eioNode{startEIONode(t, "nodea", false), startEIONode(t, "nodeb", false), startEIONode(t, "nodec", false)}
	secret := []byte("correct horse battery staple")
	withSecret := func(lc *loop.Config) { lc.Sticky.Secret = secret }
	a := startEIOProxy(t, nodes[:2], withSecret)
	b := startEIOProxy(t, nodes, withSecret)
	for range 6 {
		sid, node := eioHandshake(t, a.url("/socket.io/?EIO=4"))
		if r := eioGet(t, b.url("/socket.io/?EIO=4&transport=polling&sid="+sid)); r.status != 200 || r.node != node {
			t.Fatalf("via the instance with one more node: %d from %s, want 200 from %s", r.status, r.node, node)
		}
	}
}

// A sid whose node is gone goes by least-conn (the app answers "Session ID
// unknown" and the client reconnects), counted as a miss; a forged or
// foreign token never reaches a node it names, and untagged sids are
// forwarded as they are.
func TestStickySIDMisses(t *testing.T) {
	nodes := []*eioNode{startEIONode(t, "nodea", false), startEIONode(t, "nodeb", false)}
	p := startEIOProxy(t, nodes, nil)
	base := p.url("/socket.io/?EIO=4")

	sid, node := eioHandshake(t, base)
	unknown0 := p.counter(`wsgate_sticky_misses_total{reason="unknown"}`)
	untagged0 := p.counter(`wsgate_sticky_misses_total{reason="untagged"}`)
	unreach0 := p.counter(`wsgate_sticky_misses_total{reason="unreachable"}`)

	bare, _, _ := strings.Cut(sid, ".")
	forged := bare + ".AAAAAAAAAAAA"
	for _, s := range []string{forged, bare} {
		r := eioGet(t, base+"&transport=polling&sid="+s)
		if r.status != 200 && r.status != 400 {
			t.Fatalf("sid %s: status %d", s, r.status)
		}
	}
	if d := p.counter(`wsgate_sticky_misses_total{reason="unknown"}`) - unknown0; d != 1 {
		t.Errorf("unknown misses +%d, want +1", d)
	}
	if d := p.counter(`wsgate_sticky_misses_total{reason="untagged"}`) - untagged0; d != 1 {
		t.Errorf("untagged misses +%d, want +1", d)
	}
	// The forged token was removed, the untagged sid forwarded as it came.
	var all []string
	for _, n := range nodes {
		all = append(all, n.seenSIDs()...)
	}
	if strings.Count(strings.Join(all, " "), bare) != 2 || strings.Contains(strings.Join(all, " "), ".") {
		t.Fatalf("backends received %q", all)
	}

	// The node dies: the session's next request is a miss and lands on the
	// other node, which does not know it.
	var dead, alive *eioNode
	for _, n := range nodes {
		if n.name == node {
			dead = n
		} else {
			alive = n
		}
	}
	dead.srv.Close()
	r := eioGet(t, base+"&transport=polling&sid="+sid)
	if r.status != 400 || r.node != alive.name || !strings.Contains(r.body, "Session ID unknown") {
		t.Fatalf("after its node died: %d from %s %q, want 400 Session ID unknown from %s", r.status, r.node, r.body, alive.name)
	}
	if d := p.counter(`wsgate_sticky_misses_total{reason="unreachable"}`) - unreach0; d != 1 {
		t.Errorf("unreachable misses +%d, want +1", d)
	}
	// The client reconnects: a new handshake lands on the live node.
	if _, n := eioHandshake(t, base); n != alive.name {
		t.Fatalf("reconnect handshake went to %s", n)
	}
}

// A custom Socket.IO path routed to its own pool is detected by EIO=, and a
// websocket-only client (no sid) needs nothing: it gets a tunnel, and no
// polling session is counted.
func TestStickyCustomPathAndWebSocketOnly(t *testing.T) {
	rt := []*eioNode{startEIONode(t, "rta", false), startEIONode(t, "rtb", false)}
	plain := startEIONode(t, "plain", false)
	p := startEIOProxy(t, []*eioNode{plain}, func(lc *loop.Config) {
		bc := balancer.Config{Backends: []balancer.BackendConfig{
			{Addr: plain.addr}, {Pool: "rt", Addr: rt[0].addr}, {Pool: "rt", Addr: rt[1].addr},
		}}
		r, err := balancer.ParseRoute("/realtime=rt")
		if err != nil {
			t.Fatal(err)
		}
		bc.Routes = append(bc.Routes, r)
		bal, err := balancer.New(bc)
		if err != nil {
			t.Fatal(err)
		}
		lc.Balancer = bal
	})
	base := p.url("/realtime/?EIO=4")
	for range 6 {
		sid, node := eioHandshake(t, base)
		for range 3 {
			if r := eioGet(t, base+"&transport=polling&sid="+sid); r.status != 200 || r.node != node {
				t.Fatalf("custom path: %d from %s, want %s", r.status, r.node, node)
			}
		}
	}
	// A plain request with a sid-like query on a non-Engine.IO path is not touched.
	if r := eioGet(t, p.url("/other?sid=abc.AAAAAAAAAAAA")); r.node != "plain" || r.status != 200 {
		t.Fatalf("plain request: %d from %s", r.status, r.node)
	}
	before := p.srv.PollingSessions()
	c, _, err := websocket.DefaultDialer.Dial(p.wsURL("/realtime/?EIO=4&transport=websocket"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, msg, err := c.ReadMessage(); err != nil || !strings.HasPrefix(string(msg), "hello from rt") {
		t.Fatalf("websocket-only: %q %v", msg, err)
	}
	if got := p.srv.PollingSessions(); got != before {
		t.Fatalf("websocket-only session changed PollingSessions %d → %d", before, got)
	}
}

// --sticky none: nothing is tagged.
func TestStickyNoneLeavesHandshake(t *testing.T) {
	n := startEIONode(t, "nodea", false)
	p := startEIOProxy(t, []*eioNode{n}, func(lc *loop.Config) { lc.Sticky.Mode = balancer.StickyNone })
	r := eioGet(t, p.url("/socket.io/?EIO=4&transport=polling"))
	if r.status != 200 || !strings.HasPrefix(r.body, `0{"sid":"nodea00001AAAAAAAAAA","upgrades"`) {
		t.Fatalf("handshake changed under --sticky none: %q", r.body)
	}
}

// --sticky cookie: the first response sets an HttpOnly, SameSite=Lax cookie
// naming the node; requests carrying it reach that node; a stale cookie is
// replaced.
func TestStickyCookie(t *testing.T) {
	nodes := []*eioNode{startEIONode(t, "nodea", false), startEIONode(t, "nodeb", false), startEIONode(t, "nodec", false)}
	p := startEIOProxy(t, nodes, func(lc *loop.Config) { lc.Sticky.Mode = balancer.StickyCookie })
	get := func(cookie string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", p.url("/app"), nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := freshClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, resp.Header.Get("X-Node")
	}
	resp, node := get("")
	sc := resp.Header.Get("Set-Cookie")
	m := regexp.MustCompile(`^wsgate_default=([A-Za-z0-9_-]{12}); Path=/; HttpOnly; SameSite=Lax$`).FindStringSubmatch(sc)
	if m == nil {
		t.Fatalf("Set-Cookie %q", sc)
	}
	for _, n := range nodes {
		if strings.Contains(sc, n.addr) || strings.Contains(sc, strings.Split(n.addr, ":")[1]) {
			t.Fatalf("cookie %q reveals %s", sc, n.addr)
		}
	}
	for range 20 {
		resp, got := get("a=b; wsgate_default=" + m[1])
		if got != node {
			t.Fatalf("with the cookie: %s, want %s", got, node)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("cookie set again although it named the node: %q", resp.Header.Get("Set-Cookie"))
		}
	}
	resp, _ = get("wsgate_default=AAAAAAAAAAAA")
	if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "wsgate_default=") {
		t.Fatalf("a stale cookie was not replaced: %q", resp.Header.Get("Set-Cookie"))
	}
	// A WebSocket handshake with the cookie lands on the node too.
	h := http.Header{"Cookie": {"wsgate_default=" + m[1]}}
	c, _, err := websocket.DefaultDialer.Dial(p.wsURL("/socket.io/?EIO=4&transport=websocket"), h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, msg, _ := c.ReadMessage(); string(msg) != "hello from "+node {
		t.Fatalf("WebSocket with the cookie: %q, want %s", msg, node)
	}
}

// --sticky ip: the client address decides, consistently; X-Forwarded-For
// counts only from a trusted proxy.
func TestStickyIP(t *testing.T) {
	nodes := []*eioNode{startEIONode(t, "nodea", false), startEIONode(t, "nodeb", false), startEIONode(t, "nodec", false)}
	get := func(p *proxy, xff string) string {
		req, _ := http.NewRequest("GET", p.url("/app"), nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := freshClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Node")
	}
	untrusted := startEIOProxy(t, nodes, func(lc *loop.Config) { lc.Sticky.Mode = balancer.StickyIP })
	first := get(untrusted, "")
	for i := range 30 {
		if got := get(untrusted, fmt.Sprintf("203.0.113.%d", i)); got != first {
			t.Fatalf("untrusted peer: X-Forwarded-For moved the client from %s to %s", first, got)
		}
	}
	trusted := startEIOProxy(t, nodes, func(lc *loop.Config) {
		lc.Sticky.Mode = balancer.StickyIP
		lc.TrustedProxies = mustPrefixes(t, "127.0.0.0/8", "10.0.0.0/8")
	})
	other := startEIOProxy(t, []*eioNode{nodes[1], nodes[2], nodes[0]}, func(lc *loop.Config) {
		lc.Sticky.Mode = balancer.StickyIP
		lc.TrustedProxies = mustPrefixes(t, "127.0.0.0/8", "10.0.0.0/8")
	})
	spread := map[string]int{}
	for i := range 60 {
		client := fmt.Sprintf("203.0.113.%d", i)
		n := get(trusted, client)
		spread[n]++
		// Again, through a trusted hop chain, and through another instance.
		if again := get(trusted, client+", 10.1.2.3"); again != n {
			t.Fatalf("client %s: %s, then %s behind another trusted hop", client, n, again)
		}
		if again := get(other, client); again != n {
			t.Fatalf("client %s: %s on one instance, %s on another", client, n, again)
		}
	}
	if len(spread) != 3 {
		t.Fatalf("60 clients spread over %v", spread)
	}
}
