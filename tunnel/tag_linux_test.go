package tunnel

import (
	"testing"
	"time"
)

// CloseTagged closes exactly the tunnels added with that tag.
func TestCloseTagged(t *testing.T) {
	e := newEngine(t, Config{Tick: 20 * time.Millisecond, CloseFinWait: 50 * time.Millisecond})
	r := newRig(t)
	add := func(tag uint64) *pair {
		p, cfd, bfd := r.conns(t)
		if err := e.AddTagged(tag, cfd, bfd, nil, nil, p.done); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.close)
		return p
	}
	var seven, other []*pair
	for range 3 {
		seven = append(seven, add(7))
	}
	other = append(other, add(8), add(8), r.newPair(t, e, nil, nil))
	eventually(t, 5*time.Second, "tunnels added", func() bool { return e.Len() == 6 })
	if n := e.CloseTagged(7); n != 3 {
		t.Fatalf("CloseTagged(7) closed %d, want 3", n)
	}
	for _, p := range seven {
		if st := p.wait(t, time.Second); st.Reason != Shutdown {
			t.Fatalf("tagged tunnel: %+v, want shutdown", st)
		}
	}
	for _, p := range other {
		p.notClosed(t)
	}
	if n := e.Len(); n != 3 {
		t.Fatalf("Len = %d after closing the tagged ones, want 3", n)
	}
	if n := e.CloseTagged(7); n != 0 {
		t.Fatalf("second CloseTagged(7) closed %d", n)
	}
}
