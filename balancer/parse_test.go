package balancer

import (
	"strings"
	"testing"
)

func TestParseBackend(t *testing.T) {
	good := []struct {
		in   string
		want BackendConfig
	}{
		{"127.0.0.1:3001", BackendConfig{"default", "127.0.0.1:3001", 1, 0}},
		{"localhost:80", BackendConfig{"default", "localhost:80", 1, 0}},
		{"node-a.internal:8080,weight=3", BackendConfig{"default", "node-a.internal:8080", 3, 0}},
		{"api=10.0.0.2:9000", BackendConfig{"api", "10.0.0.2:9000", 1, 0}},
		{"api=10.0.0.2:9000,weight=256", BackendConfig{"api", "10.0.0.2:9000", 256, 0}},
		{"ws_pool.v2=[::1]:3001", BackendConfig{"ws_pool.v2", "[::1]:3001", 1, 0}},
		{"[2001:db8::1]:443,weight=1", BackendConfig{"default", "[2001:db8::1]:443", 1, 0}},
		{"[fe80::1%eth0]:80", BackendConfig{"default", "[fe80::1%eth0]:80", 1, 0}},
		{"my_host:65535", BackendConfig{"default", "my_host:65535", 1, 0}},
		{"a:1,max-conns=100", BackendConfig{"default", "a:1", 1, 100}},
		{"p=a:1,max-conns=1,weight=4", BackendConfig{"p", "a:1", 4, 1}},
		{"a:1,weight=2,max-conns=1000000", BackendConfig{"default", "a:1", 2, 1000000}},
	}
	for _, tc := range good {
		got, err := ParseBackend(tc.in)
		if err != nil {
			t.Errorf("ParseBackend(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseBackend(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}

	bad := []struct{ in, wantErr string }{
		{"", "missing address"},
		{"localhost", "missing port"},
		{"localhost:", "missing port"},
		{"api=localhost", "missing port"},
		{"[::1]", "missing port"},
		{"[::1]:", "missing port"},
		{":3001", "missing host"},
		{"=localhost:80", "empty pool name"},
		{"a b=localhost:80", "not allowed"},
		{"::1:80", "IPv6 address must be in brackets"},
		{"[::1:80", "missing ']'"},
		{"[::1]x:80", "after ']'"},
		{"[10.0.0.1]:80", "invalid IPv6"},
		{"[zz]:80", "invalid IPv6"},
		{"localhost:0", "port must be a number 1..65535"},
		{"localhost:65536", "port must be a number 1..65535"},
		{"localhost:http", "port must be a number 1..65535"},
		{"localhost:+80", "port must be a number 1..65535"},
		{"local host:80", "not allowed"},
		{"a..b:80", "empty label"},
		{"localhost:80,weight=0", "weight must be 1..256"},
		{"localhost:80,weight=257", "weight must be 1..256"},
		{"localhost:80,weight=-1", "weight must be 1..256"},
		{"localhost:80,weight=x", "weight must be 1..256"},
		{"localhost:80,weight=", "weight must be 1..256"},
		{"localhost:80,weight=2,weight=3", "weight given twice"},
		{"localhost:80,", "empty option"},
		{"localhost:80,max-conns=0", "max-conns must be 1..1000000"},
		{"localhost:80,max-conns=1000001", "max-conns must be 1..1000000"},
		{"localhost:80,max-conns=-3", "max-conns must be 1..1000000"},
		{"localhost:80,max-conns=", "max-conns must be 1..1000000"},
		{"localhost:80,max-conns=1e3", "max-conns must be 1..1000000"},
		{"localhost:80,max-conns=5,max-conns=6", "max-conns given twice"},
		{"localhost:80,max-conns=5,weight=2,max-conns=5", "max-conns given twice"},
		{"localhost:80,maxconns=5", `unknown option "maxconns"`},
		{"localhost:80,backup", `unknown option "backup"`},
	}
	for _, tc := range bad {
		got, err := ParseBackend(tc.in)
		if err == nil {
			t.Errorf("ParseBackend(%q) = %+v, want error containing %q", tc.in, got, tc.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "balancer: backend ") {
			t.Errorf("ParseBackend(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{LeastConn, RoundRobin} {
		got, err := ParsePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePolicy("random"); err == nil {
		t.Error("ParsePolicy(random): want error")
	}
	var zero Policy
	if zero != LeastConn {
		t.Error("zero Policy must be LeastConn")
	}
}

func TestParseRoute(t *testing.T) {
	good := []struct {
		in   string
		want RouteConfig
	}{
		{"/=default", RouteConfig{"", "/", "default", false}},
		{"/api=api", RouteConfig{"", "/api", "api", false}},
		{"/api/=api,strip", RouteConfig{"", "/api", "api", true}},
		{"/socket.io/=rt", RouteConfig{"", "/socket.io", "rt", false}},
		{"//=x", RouteConfig{"", "/", "x", false}},
		{"Example.COM/=web", RouteConfig{"example.com", "/", "web", false}},
		{"example.com./x=web", RouteConfig{"example.com", "/x", "web", false}},
		{"*.example.com/ws=ws", RouteConfig{"*.example.com", "/ws", "ws", false}},
		{"[::1]/=local", RouteConfig{"[::1]", "/", "local", false}},
		{"/a.b/c~d_e-f=c,strip", RouteConfig{"", "/a.b/c~d_e-f", "c", true}},
	}
	for _, tc := range good {
		got, err := ParseRoute(tc.in)
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseRoute(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}

	bad := []struct{ in, wantErr string }{
		{"", "missing /PREFIX"},
		{"api=api", "missing /PREFIX"},
		{"/api", "missing =POOL"},
		{"/api=", "empty pool name"},
		{"/api=a b", "not allowed"},
		{"/api=api,", "empty option"},
		{"/api=api,rewrite", `unknown option "rewrite"`},
		{"example.com:8080/=web", "must not include a port"},
		{"*/=web", "wildcard"},
		{"*./=web", "wildcard"},
		{"a.*.com/=web", "wildcard"},
		{"[::1/=web", "IPv6"},
		{"[zz]/=web", "IPv6"},
		{"exa mple.com/=web", "not allowed"},
		{"/a b=web", "not allowed"},
		// A reserved character stays percent-encoded in a normalized path,
		// where a decoding backend sees it decoded: refused in a prefix.
		{"/a=b=c", "character '=' not allowed"},
		{"/a,b=c,strip", "character ',' not allowed"},
		{"/a;b=c", "character ';' not allowed"},
		{"/%61pi=c", "character '%' not allowed"},
		{"/api/../admin=c", `".." segments`},
		{"/./api=c", `"." segments`},
		{"/a?b=web", "not allowed"},
		{"/a#b=web", "not allowed"},
	}
	for _, tc := range bad {
		got, err := ParseRoute(tc.in)
		if err == nil {
			t.Errorf("ParseRoute(%q) = %+v, want error containing %q", tc.in, got, tc.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "balancer: route ") {
			t.Errorf("ParseRoute(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestRouteConfigStringRoundTrip(t *testing.T) {
	for _, s := range []string{"/=default", "/api=api,strip", "*.example.com/ws=ws", "example.com/=web"} {
		rc, err := ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		if rc.String() != s {
			t.Errorf("ParseRoute(%q).String() = %q", s, rc.String())
		}
	}
}
