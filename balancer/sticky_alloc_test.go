//go:build !race

package balancer

import "testing"

// The per-request sticky work allocates nothing once a pool's table is built.
func TestStickyZeroAllocs(t *testing.T) {
	bl := newTestBalancer(t, "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000")
	p := bl.Pool("")
	s := newTestSticky(t, StickyConfig{})
	b := p.Backends()[1]
	tagged := append([]byte("lv_VI97HAXpY6yYWAAAC."), s.AppendToken(nil, p, b)...)
	s.SessionStarted([]byte("lv_VI97HAXpY6yYWAAAC"), b, 0)
	dst := make([]byte, 0, 64)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"CutToken+Lookup", func() {
			_, tok, _ := CutToken(tagged)
			if s.Lookup(p, tok) != b {
				panic("lookup")
			}
		}},
		{"AppendToken", func() { s.AppendToken(dst[:0], p, b) }},
		{"PickHash", func() { s.PickHash(p, []byte("203.0.113.9"), nil).Release() }},
		{"Pin", func() { s.Pin(b, nil); b.Release() }},
		{"SessionSeen", func() { s.SessionSeen([]byte("lv_VI97HAXpY6yYWAAAC")) }},
		{"Sweep", func() { s.Sweep() }},
	} {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tc.name, n)
		}
	}
}
