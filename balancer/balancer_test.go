package balancer

import (
	"strings"
	"testing"
)

func mustBackends(t testing.TB, specs ...string) []BackendConfig {
	t.Helper()
	var out []BackendConfig
	for _, s := range specs {
		bc, err := ParseBackend(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bc)
	}
	return out
}

func mustRoutes(t testing.TB, specs ...string) []RouteConfig {
	t.Helper()
	var out []RouteConfig
	for _, s := range specs {
		rc, err := ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rc)
	}
	return out
}

func TestNewDefaults(t *testing.T) {
	bl, err := New(Config{Backends: mustBackends(t, "127.0.0.1:3001", "127.0.0.1:3002")})
	if err != nil {
		t.Fatal(err)
	}
	if len(bl.Pools()) != 1 || bl.Pool("") != bl.Pool("default") || bl.Pool("default") == nil {
		t.Fatalf("pools %v", bl.Pools())
	}
	p := bl.Pool("default")
	if p.Name() != "default" || len(p.Backends()) != 2 || p.Policy() != LeastConn {
		t.Fatalf("pool %q with %d backends, policy %v", p.Name(), len(p.Backends()), p.Policy())
	}
	for _, b := range p.Backends() {
		if b.Weight() != 1 || b.Pool() != "default" || b.Active() != 0 {
			t.Errorf("%v: weight %d pool %q active %d", b, b.Weight(), b.Pool(), b.Active())
		}
	}
	if got, _ := bl.Route([]byte("anything"), []byte("/x/y?z")); got != p {
		t.Fatalf("default route gave %v", got)
	}
	if rs := bl.Routes(); len(rs) != 1 || rs[0].String() != "/=default" {
		t.Fatalf("Routes() = %v", rs)
	}
	if bl.Pool("nope") != nil {
		t.Fatal("Pool(nope) != nil")
	}
	// Weight 0 in a hand-built Config means 1.
	bl, err = New(Config{Backends: []BackendConfig{{Addr: "h:1"}}, Policy: RoundRobin})
	if err != nil {
		t.Fatal(err)
	}
	if b := bl.Pool("").Backends()[0]; b.Weight() != 1 || bl.Pool("").Policy() != RoundRobin {
		t.Fatalf("weight %d policy %v", b.Weight(), bl.Pool("").Policy())
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no backends", Config{}, "no backends"},
		{"duplicate in pool", Config{Backends: mustBackends(t, "a:1", "b:1", "A:1")}, "listed twice in pool \"default\""},
		{"route to missing pool", Config{Backends: mustBackends(t, "a:1"), Routes: mustRoutes(t, "/api=api")}, `no backend in pool "api"`},
		{"duplicate route", Config{Backends: mustBackends(t, "a:1"), Routes: mustRoutes(t, "/x=default", "/x/=default")}, "already routed"},
		{"no route at all", Config{Backends: mustBackends(t, "api=a:1")}, "no route"},
		{"bad weight", Config{Backends: []BackendConfig{{Addr: "a:1", Weight: 300}}}, "weight must be 1..256"},
		{"bad addr", Config{Backends: []BackendConfig{{Addr: "a"}}}, "missing port"},
		{"bad pool", Config{Backends: []BackendConfig{{Addr: "a:1", Pool: "x y"}}}, "not allowed"},
		{"bad route", Config{Backends: mustBackends(t, "a:1"), Routes: []RouteConfig{{Prefix: "api"}}}, "must start with /"},
		{"bad policy", Config{Backends: mustBackends(t, "a:1"), Policy: 7}, "unknown policy"},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// The same address in two pools, and a pool no route names, are fine.
	if _, err := New(Config{Backends: mustBackends(t, "a:1", "spare=a:1")}); err != nil {
		t.Errorf("same address in two pools: %v", err)
	}
}

func TestRoute(t *testing.T) {
	bl, err := New(Config{
		Backends: mustBackends(t, "web:1", "api=api:1", "ws=ws:1", "rt=rt:1", "admin=admin:1", "ex=ex:1", "wild=wild:1", "deep=deep:1", "exapi=exapi:1", "v6=v6:1"),
		Routes: mustRoutes(t,
			"/api=api,strip",
			"/api/v2/=ws",
			"/socket.io/=rt",
			"/ws=ws",
			"admin.example.com/=admin",
			"example.com/=ex",
			"example.com/api=exapi",
			"*.example.com/=wild",
			"*.deep.example.com/=deep",
			"[::1]/=v6",
		),
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, path string
		pool       string
		strip      int
	}{
		// Host-less routes, longest prefix on segment boundaries.
		{"", "/", "default", 0},
		{"", "/index.html", "default", 0},
		{"other.org", "/ws", "ws", 0},
		{"other.org", "/ws/", "ws", 0},
		{"other.org", "/ws/chat", "ws", 0},
		{"other.org", "/ws%3Fx", "default", 0}, // a decoding backend's segment is "ws?x"
		{"other.org", "/wsx", "default", 0},
		{"other.org", "/WS", "default", 0}, // paths are case-sensitive
		{"other.org", "/socket.io/", "rt", 0},
		{"other.org", "/socket.io", "rt", 0},
		{"other.org", "/api", "api", 4},
		{"other.org", "/api/users?id=1", "api", 4},
		{"other.org", "/api", "api", 4},
		{"other.org", "/apix", "default", 0},
		{"other.org", "/api/v2", "ws", 0},
		{"other.org", "/api/v2/x", "ws", 0},
		{"other.org", "/api/v22", "api", 4},
		{"other.org", "*", "default", 0},
		// Exact host, case-insensitive, port and trailing dot ignored.
		{"admin.example.com", "/ws", "admin", 0},
		{"ADMIN.Example.COM:8443", "/", "admin", 0},
		{"admin.example.com.", "/x", "admin", 0},
		{"example.com", "/", "ex", 0},
		{"example.com:80", "/api/x", "exapi", 0},
		// A host's own routes first, then wildcards, then host-less ones.
		{"example.com", "/ws", "ex", 0},
		{"admin.example.co", "/", "default", 0},
		{"xadmin.example.com", "/", "wild", 0},
		{"a.example.com", "/ws", "wild", 0},
		{"a.b.example.com", "/", "wild", 0},
		{"x.deep.example.com", "/", "deep", 0},
		{"deep.example.com", "/", "wild", 0},
		{"notexample.com", "/", "default", 0},
		{".example.com", "/", "default", 0},
		{"[::1]:8080", "/", "v6", 0},
		{"[::1]", "/ws", "v6", 0},
		{"[::2]:80", "/ws", "ws", 0},
	}
	for _, tc := range cases {
		p, strip := bl.Route([]byte(tc.host), []byte(tc.path))
		if p == nil || p.Name() != tc.pool || strip != tc.strip {
			name := "<nil>"
			if p != nil {
				name = p.Name()
			}
			t.Errorf("Route(%q, %q) = %s, %d; want %s, %d", tc.host, tc.path, name, strip, tc.pool, tc.strip)
		}
	}
}

func TestRouteNoMatch(t *testing.T) {
	bl, err := New(Config{Backends: mustBackends(t, "api=a:1"), Routes: mustRoutes(t, "/api=api", "example.com/=api")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2]string{{"other", "/"}, {"other", "/apix"}, {"", "/"}} {
		if p, n := bl.Route([]byte(tc[0]), []byte(tc[1])); p != nil || n != 0 {
			t.Errorf("Route(%q, %q) = %v, %d; want nil, 0", tc[0], tc[1], p, n)
		}
	}
}
