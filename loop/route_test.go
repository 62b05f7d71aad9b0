package loop

import "testing"

func TestStripTarget(t *testing.T) {
	for _, tc := range []struct {
		target string
		strip  int
		want   string
	}{
		{"/ws/chat?room=1", 3, "/chat?room=1"},
		{"/ws", 3, "/"},
		{"/ws?x=1", 3, "/?x=1"},
		{"/api/v1/users", 4, "/v1/users"},
		{"http://example.com/ws/chat?q", 3, "/chat?q"},
		{"http://example.com/ws", 3, "/"},
	} {
		if got := string(stripTarget(nil, []byte(tc.target), tc.strip)); got != tc.want {
			t.Errorf("stripTarget(%q, %d) = %q, want %q", tc.target, tc.strip, got, tc.want)
		}
	}
}
