package balancer

import "testing"

// The one matcher behind routes, rate limits and origin rules: index of
// the most specific rule, exact host before wildcard before any host,
// longest prefix on a segment boundary.
func TestMatcher(t *testing.T) {
	var rules []Rule
	for _, s := range []string{"/", "/api", "/api/v1", "app.test/", "app.test/ws", "*.test/ws", "*.a.test/ws"} {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		rules = append(rules, r)
	}
	m := NewMatcher(rules)
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"x", "/", 0},
		{"x", "/apix", 0},
		{"x", "/api", 1},
		{"x", "/api/v2", 1},
		{"x", "/api/v1/u", 2},
		{"APP.test:8080", "/other", 3},
		{"app.test.", "/ws/chat", 4},
		{"b.test", "/ws", 5},
		{"b.a.test", "/ws", 6},
		{"a.test", "/ws", 5}, // "*.a.test" does not match "a.test" itself
		{"b.test", "/api", 1},
	} {
		if got := m.Match([]byte(tc.host), []byte(tc.path)); got != tc.want {
			t.Errorf("Match(%q, %q) = %d, want %d", tc.host, tc.path, got, tc.want)
		}
	}
	if got := NewMatcher(nil).Match([]byte("x"), []byte("/")); got != -1 {
		t.Errorf("empty matcher: %d, want -1", got)
	}
	for _, bad := range []string{"", "api", "/a;b", "/a/../b", "h:80/x", "*/x"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}
