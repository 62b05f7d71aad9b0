package balancer

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestSticky(t testing.TB, cfg StickyConfig) *Sticky {
	t.Helper()
	s, err := NewSticky(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestBalancer(t testing.TB, specs ...string) *Balancer {
	t.Helper()
	bl, err := New(Config{Backends: mustBackends(t, specs...)})
	if err != nil {
		t.Fatal(err)
	}
	return bl
}

// tokensOf returns addr → token for the pool.
func tokensOf(s *Sticky, p *Pool) map[string]string {
	out := map[string]string{}
	for _, b := range p.Backends() {
		out[b.Addr()] = string(s.AppendToken(nil, p, b))
	}
	return out
}

func TestParseStickyMode(t *testing.T) {
	for _, name := range []string{"auto", "sid", "cookie", "ip", "none"} {
		m, err := ParseStickyMode(name)
		if err != nil || m.String() != name {
			t.Errorf("ParseStickyMode(%q) = %v, %v", name, m, err)
		}
	}
	for _, bad := range []string{"", "AUTO", "sticky", "cookie,ip"} {
		if _, err := ParseStickyMode(bad); err == nil {
			t.Errorf("ParseStickyMode(%q) accepted", bad)
		}
	}
	var zero StickyConfig
	if m, _ := ParseStickyMode("auto"); m != StickyAuto || zero.Mode != StickyAuto {
		t.Error("the zero StickyMode is not auto")
	}
}

func TestStickySecretTooShort(t *testing.T) {
	if _, err := NewSticky(StickyConfig{Secret: []byte("short")}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
	if _, err := NewSticky(StickyConfig{Secret: []byte(strings.Repeat("k", MinStickySecret))}); err != nil {
		t.Fatal(err)
	}
}

// Two wsgate instances given the same backends, in any order and with any
// weights, and a restarted one, agree on every token without a secret.
func TestTokensDerivedKeyAgreeAcrossInstances(t *testing.T) {
	a := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000")
	b := newTestBalancer(t, "10.0.0.3:3000,weight=5", "10.0.0.1:3000", "10.0.0.2:3000")
	ta := tokensOf(newTestSticky(t, StickyConfig{}), a.Pool(""))
	tb := tokensOf(newTestSticky(t, StickyConfig{}), b.Pool(""))
	if len(ta) != 3 || fmt.Sprint(ta) != fmt.Sprint(tb) {
		t.Fatalf("instances disagree:\n%v\n%v", ta, tb)
	}
	seen := map[string]bool{}
	for addr, tok := range ta {
		if len(tok) != TokenLen || seen[tok] {
			t.Errorf("%s: token %q (len %d, duplicate %v)", addr, tok, len(tok), seen[tok])
		}
		seen[tok] = true
		for _, c := range []byte(tok) {
			if !isB64URL(c) {
				t.Errorf("%s: token %q has %q", addr, tok, c)
			}
		}
	}
	// Another backend set is another key: every token changes.
	c := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000", "10.0.0.4:3000")
	tc := tokensOf(newTestSticky(t, StickyConfig{}), c.Pool(""))
	for addr, tok := range ta {
		if tc[addr] == tok {
			t.Errorf("%s: same token %q under a different backend set", addr, tok)
		}
	}
}

// With a secret a node's token depends only on the node: adding a backend
// leaves the others' tokens alone; another secret gives other tokens.
func TestTokensSecretStableAcrossBackendSets(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	a := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000")
	b := newTestBalancer(t, "10.0.0.2:3000", "10.0.0.1:3000", "10.0.0.9:3000")
	ta := tokensOf(newTestSticky(t, StickyConfig{Secret: secret}), a.Pool(""))
	tb := tokensOf(newTestSticky(t, StickyConfig{Secret: secret}), b.Pool(""))
	for addr, tok := range ta {
		if tb[addr] != tok {
			t.Errorf("%s: token %q became %q when a backend was added", addr, tok, tb[addr])
		}
	}
	other := tokensOf(newTestSticky(t, StickyConfig{Secret: []byte("another secret, 16+")}), a.Pool(""))
	for addr, tok := range ta {
		if other[addr] == tok {
			t.Errorf("%s: same token under another secret", addr)
		}
	}
}

// Tokens name the node in its pool: the same address in two pools gets two
// tokens, and a token of one pool resolves to nothing in the other.
func TestTokensPerPool(t *testing.T) {
	bl := newTestBalancer(t, "a=10.0.0.1:3000", "b=10.0.0.1:3000", "a=10.0.0.2:3000", "10.0.0.5:3000")
	s := newTestSticky(t, StickyConfig{Secret: []byte("0123456789abcdef")})
	pa, pb := bl.Pool("a"), bl.Pool("b")
	ta := s.AppendToken(nil, pa, pa.Lookup("10.0.0.1:3000"))
	tb := s.AppendToken(nil, pb, pb.Lookup("10.0.0.1:3000"))
	if bytes.Equal(ta, tb) {
		t.Fatalf("same token %q in two pools", ta)
	}
	if got := s.Lookup(pa, ta); got != pa.Lookup("10.0.0.1:3000") {
		t.Fatalf("Lookup(a, its token) = %v", got)
	}
	if got := s.Lookup(pb, ta); got != nil {
		t.Fatalf("pool a's token resolved in pool b to %v", got)
	}
}

// A token resolves only to a backend that exists: random, truncated,
// malformed tokens and tokens of a removed node resolve to nothing.
func TestLookupOnlyExistingNodes(t *testing.T) {
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000")
	p := bl.Pool("")
	s := newTestSticky(t, StickyConfig{Secret: []byte("0123456789abcdef")})
	for _, b := range p.Backends() {
		tok := s.AppendToken(nil, p, b)
		if got := s.Lookup(p, tok); got != b {
			t.Fatalf("Lookup(token of %v) = %v", b, got)
		}
		if strings.Contains(string(tok), "10") && strings.Contains(string(tok), "3000") {
			t.Errorf("token %q looks like it carries the address", tok)
		}
	}
	for _, bad := range []string{"", "AAAAAAAAAAAA", "////////////", "AAAAAAAAAAA", "AAAAAAAAAAAAA", "AAAAAAAA.AAA", "AAAAAAAAAAA="} {
		if got := s.Lookup(p, []byte(bad)); got != nil {
			t.Errorf("Lookup(%q) = %v", bad, got)
		}
	}
	// 100,000 random well-formed tokens: none resolves.
	var x uint64 = 1
	tok := make([]byte, TokenLen)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for range 100000 {
		for i := range tok {
			x = x*6364136223846793005 + 1442695040888963407
			tok[i] = alphabet[x>>58]
		}
		if got := s.Lookup(p, tok); got != nil {
			t.Fatalf("random token %q resolved to %v", tok, got)
		}
	}
	// A node removed by a reload: its token no longer resolves.
	gone := p.Lookup("10.0.0.3:3000")
	goneTok := s.AppendToken(nil, p, gone)
	if err := bl.Update(mustBackends(t, "10.0.0.1:3000", "10.0.0.2:3000")); err != nil {
		t.Fatal(err)
	}
	if got := s.Lookup(p, goneTok); got != nil {
		t.Fatalf("token of a removed node resolved to %v", got)
	}
	if got := s.Lookup(p, s.AppendToken(nil, p, p.Lookup("10.0.0.1:3000"))); got == nil || got.Addr() != "10.0.0.1:3000" {
		t.Fatalf("after reload, a kept node's token resolves to %v", got)
	}
}

func TestCutToken(t *testing.T) {
	for _, tc := range []struct {
		in, sid, tok string
		ok           bool
	}{
		{"lv_VI97HAXpY6yYWAAAC.AbCdEfGh-_01", "lv_VI97HAXpY6yYWAAAC", "AbCdEfGh-_01", true},
		{"x.AbCdEfGh-_01", "x", "AbCdEfGh-_01", true},
		{".AbCdEfGh-_01", ".AbCdEfGh-_01", "", false}, // nothing before the separator
		{"lv_VI97HAXpY6yYWAAAC", "lv_VI97HAXpY6yYWAAAC", "", false},
		{"abc.AbCdEfGh-_0", "abc.AbCdEfGh-_0", "", false},   // token too short
		{"abc.AbCdEfGh-_0=", "abc.AbCdEfGh-_0=", "", false}, // not base64url
		{"abc~AbCdEfGh-_01", "abc~AbCdEfGh-_01", "", false}, // other separator
		{"abc.AbCdEfGh%201", "abc.AbCdEfGh%201", "", false}, // escaped
		{"a.b.AbCdEfGh-_01", "a.b", "AbCdEfGh-_01", true},   // the last separator counts
		{"", "", "", false},
	} {
		sid, tok, ok := CutToken([]byte(tc.in))
		if string(sid) != tc.sid || string(tok) != tc.tok || ok != tc.ok {
			t.Errorf("CutToken(%q) = %q, %q, %v; want %q, %q, %v", tc.in, sid, tok, ok, tc.sid, tc.tok, tc.ok)
		}
	}
}

// Pin takes the named node unless it is down or skipped.
func TestPinHealthAndSkip(t *testing.T) {
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000")
	p := bl.Pool("")
	s := newTestSticky(t, StickyConfig{})
	b := p.Backends()[0]
	if !s.Pin(b, nil) || b.Active() != 1 {
		t.Fatalf("Pin of a healthy node: active %d", b.Active())
	}
	b.Release()
	if s.Pin(b, func(x *Backend) bool { return x == b }) || b.Active() != 0 {
		t.Fatal("Pin took a skipped node")
	}
	b.setFlag(fDown)
	if s.Pin(b, nil) || b.Active() != 0 {
		t.Fatal("Pin took a node that is down")
	}
	if s.Pin(nil, nil) {
		t.Fatal("Pin(nil)")
	}
}

func addrKey(i int) []byte {
	return fmt.Appendf(nil, "198.51.%d.%d", i/250, i%250+1)
}

// Rendezvous hashing: the same client always gets the same node, clients
// spread by weight, and adding a node moves only clients to that node, about
// 1/n of them.
func TestPickHashConsistent(t *testing.T) {
	const clients = 30000
	before := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000,weight=2")
	after := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000,weight=2", "10.0.0.4:3000,weight=2")
	s := newTestSticky(t, StickyConfig{Mode: StickyIP})
	pick := func(bl *Balancer, key []byte) string {
		b := s.PickHash(bl.Pool(""), key, nil)
		b.Release()
		return b.Addr()
	}
	share := map[string]int{}
	moved, movedElsewhere := 0, 0
	for i := range clients {
		k := addrKey(i)
		a := pick(before, k)
		if again := pick(before, k); again != a {
			t.Fatalf("client %s: %s then %s", k, a, again)
		}
		share[a]++
		if n := pick(after, k); n != a {
			moved++
			if n != "10.0.0.4:3000" {
				movedElsewhere++
			}
		}
	}
	for addr, want := range map[string]float64{"10.0.0.1:3000": 0.25, "10.0.0.2:3000": 0.25, "10.0.0.3:3000": 0.5} {
		if got := float64(share[addr]) / clients; math.Abs(got-want) > 0.03 {
			t.Errorf("%s got %.3f of the clients, want %.2f", addr, got, want)
		}
	}
	if movedElsewhere != 0 {
		t.Errorf("%d clients moved between old nodes when a node was added", movedElsewhere)
	}
	// The new node has weight 2 of 6: a third should move.
	if got := float64(moved) / clients; math.Abs(got-1.0/3) > 0.03 {
		t.Errorf("%.3f of the clients moved to the added node, want about 0.333", got)
	}
	// A down node's clients go elsewhere; the others stay.
	down := before.Pool("").Lookup("10.0.0.1:3000")
	down.setFlag(fDown)
	for i := range 3000 {
		k := addrKey(i)
		b := s.PickHash(before.Pool(""), k, nil)
		b.Release()
		if b == down {
			t.Fatalf("client %s hashed to a node that is down", k)
		}
	}
}

// A fake clock for the polling-session table.
type stickyClock struct{ ns atomic.Int64 }

func newStickyClock() *stickyClock {
	c := &stickyClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *stickyClock) Now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *stickyClock) Advance(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *stickyClock) nowFunc() func() time.Time { return c.Now }

// A session in its polling phase counts against its node from the handshake
// until it upgrades, or until it has been silent for its ttl.
func TestPollingSessionsCount(t *testing.T) {
	clk := newStickyClock()
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000")
	p := bl.Pool("")
	a, b := p.Backends()[0], p.Backends()[1]
	s := newTestSticky(t, StickyConfig{Now: clk.nowFunc()})

	s.SessionStarted([]byte("s1"), a, 45*time.Second)
	s.SessionStarted([]byte("s2"), a, 45*time.Second)
	s.SessionStarted([]byte("s3"), b, 10*time.Second)
	if a.Active() != 2 || b.Active() != 1 || s.PollingSessions() != 3 {
		t.Fatalf("after 3 handshakes: a %d b %d sessions %d", a.Active(), b.Active(), s.PollingSessions())
	}
	// Least-conn sees them: the next pick goes to b.
	if got := p.Pick(nil); got != b {
		t.Fatalf("Pick chose %v with a carrying 2 polling sessions and b 1", got)
	} else {
		got.Release()
	}

	s.SessionUpgraded([]byte("s1"))
	s.SessionUpgraded([]byte("s1")) // twice: nothing more
	s.SessionUpgraded([]byte("nope"))
	if a.Active() != 1 {
		t.Fatalf("after upgrade: a %d", a.Active())
	}

	clk.Advance(9 * time.Second)
	s.Sweep()
	if b.Active() != 1 {
		t.Fatalf("s3 expired early: b %d", b.Active())
	}
	s.SessionSeen([]byte("s3")) // a polling request: 10 s more from now
	clk.Advance(2 * time.Second)
	s.Sweep()
	if b.Active() != 1 {
		t.Fatalf("s3 expired although seen 2 s ago: b %d", b.Active())
	}
	clk.Advance(8*time.Second + time.Millisecond)
	s.Sweep()
	if b.Active() != 0 {
		t.Fatalf("s3 still counted 10 s after it was last seen: b %d", b.Active())
	}
	clk.Advance(45 * time.Second)
	s.Sweep()
	if a.Active() != 0 || s.PollingSessions() != 0 {
		t.Fatalf("s2 still counted after its ttl: a %d sessions %d", a.Active(), s.PollingSessions())
	}
	if a.Underflows()+b.Underflows() != 0 {
		t.Fatalf("underflows: %d %d", a.Underflows(), b.Underflows())
	}
}

// The table is bounded: at the bound the session due first stops counting. A
// sid started again moves to its new node.
func TestPollingSessionsBound(t *testing.T) {
	clk := newStickyClock()
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000")
	a, b := bl.Pool("").Backends()[0], bl.Pool("").Backends()[1]
	s := newTestSticky(t, StickyConfig{Now: clk.nowFunc(), MaxPollingSessions: 100})
	for i := range 250 {
		s.SessionStarted(fmt.Appendf(nil, "sid-%d", i), a, 0)
	}
	if s.PollingSessions() != 100 || a.Active() != 100 {
		t.Fatalf("bounded table holds %d sessions, a %d", s.PollingSessions(), a.Active())
	}
	s.SessionUpgraded([]byte("sid-149")) // evicted: nothing happens
	s.SessionUpgraded([]byte("sid-150")) // the oldest kept
	if a.Active() != 99 {
		t.Fatalf("a %d after upgrading a kept session", a.Active())
	}
	s.SessionStarted([]byte("sid-200"), b, 0)
	if a.Active() != 98 || b.Active() != 1 || s.PollingSessions() != 99 {
		t.Fatalf("moved sid: a %d b %d sessions %d", a.Active(), b.Active(), s.PollingSessions())
	}
	clk.Advance(DefaultPollingTTL)
	s.Sweep()
	if a.Active() != 0 || b.Active() != 0 || s.PollingSessions() != 0 {
		t.Fatalf("after the default ttl: a %d b %d sessions %d", a.Active(), b.Active(), s.PollingSessions())
	}
}

// Many sessions seen over and over stay counted; those never seen again
// expire, and the queue does not grow without bound.
func TestPollingSessionsRequeue(t *testing.T) {
	clk := newStickyClock()
	bl := newTestBalancer(t, "10.0.0.1:3000")
	a := bl.Pool("").Backends()[0]
	s := newTestSticky(t, StickyConfig{Now: clk.nowFunc()})
	for i := range 1000 {
		s.SessionStarted(fmt.Appendf(nil, "sid-%d", i), a, 10*time.Second)
	}
	for range 100 {
		clk.Advance(time.Second)
		for i := range 500 { // the first half keeps polling
			s.SessionSeen(fmt.Appendf(nil, "sid-%d", i))
		}
		s.Sweep()
	}
	if a.Active() != 500 || s.PollingSessions() != 500 {
		t.Fatalf("a %d sessions %d, want 500", a.Active(), s.PollingSessions())
	}
	if q := len(s.polling.h); q != 500 {
		t.Fatalf("heap holds %d items for 500 sessions", q)
	}
}

// A request of a counted session shares the session's unit: the session
// weighs one whether a request of it is in flight, it is mid-upgrade, or it
// is a tunnel; nothing is ever released twice, also when the session expires
// while a request of it is in flight.
func TestPollingSessionJoin(t *testing.T) {
	clk := newStickyClock()
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000")
	p := bl.Pool("")
	a, other := p.Backends()[0], p.Backends()[1]
	s := newTestSticky(t, StickyConfig{Now: clk.nowFunc()})
	sid := []byte("s1")
	s.SessionStarted(sid, a, 10*time.Second)

	// A long-poll GET and a POST of the session, in flight together.
	if !s.Pin(a, nil) {
		t.Fatal("Pin")
	}
	get := s.Join(sid, a)
	s.Pin(a, nil)
	post := s.Join(sid, a)
	if get == nil || post == nil || a.Active() != 1 {
		t.Fatalf("two joined requests: active %d, want 1", a.Active())
	}
	if s.Join(sid, other) != nil || s.Join([]byte("nope"), a) != nil {
		t.Fatal("Join of another backend's or an unknown session")
	}
	a.Release() // the POST ends: the exchange releases, then leaves
	s.Leave(post)
	if a.Active() != 1 {
		t.Fatalf("after the POST: active %d, want 1", a.Active())
	}
	// The upgrade, joined, becomes a tunnel; the GET ends after it.
	s.Pin(a, nil)
	up := s.Join(sid, a)
	s.Upgraded(up)
	if a.Active() != 1 || s.PollingSessions() != 0 {
		t.Fatalf("upgraded: active %d sessions %d, want 1 and 0", a.Active(), s.PollingSessions())
	}
	a.Release()
	s.Leave(get)
	if a.Active() != 1 {
		t.Fatalf("tunnel alone: active %d, want 1", a.Active())
	}
	a.Release() // the tunnel ends
	if a.Active() != 0 || a.Underflows() != 0 {
		t.Fatalf("all over: active %d underflows %d", a.Active(), a.Underflows())
	}

	// A session that expires while a request of it is in flight: the last
	// Leave releases its unit.
	s.SessionStarted([]byte("s2"), a, 10*time.Second)
	s.Pin(a, nil)
	r := s.Join([]byte("s2"), a)
	clk.Advance(11 * time.Second)
	s.Sweep()
	if s.PollingSessions() != 0 || a.Active() != 1 {
		t.Fatalf("expired while joined: sessions %d active %d, want 0 and 1", s.PollingSessions(), a.Active())
	}
	a.Release()
	s.Leave(r)
	if a.Active() != 0 || a.Underflows() != 0 {
		t.Fatalf("after the last Leave: active %d underflows %d", a.Active(), a.Underflows())
	}

	// Upgraded after the session was replaced: the tunnel still counts one.
	s.SessionStarted([]byte("s3"), a, 10*time.Second)
	s.Pin(a, nil)
	r = s.Join([]byte("s3"), a)
	s.SessionStarted([]byte("s3"), other, 10*time.Second) // replaced (orphaned: r is joined)
	s.Upgraded(r)
	if a.Active() != 1 || other.Active() != 1 {
		t.Fatalf("upgrade of a replaced session: a %d other %d, want 1 and 1", a.Active(), other.Active())
	}
	a.Release()
	s.SessionUpgraded([]byte("s3"))
	if a.Active() != 0 || other.Active() != 0 || a.Underflows()+other.Underflows() != 0 {
		t.Fatalf("end: a %d other %d underflows %d", a.Active(), other.Active(), a.Underflows()+other.Underflows())
	}
}
