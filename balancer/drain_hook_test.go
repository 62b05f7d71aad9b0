package balancer

import (
	"testing"
	"time"
)

// A removed backend still holding a tunnel when --drain-timeout passes is
// handed to OnDrainTimeout (to close its tunnels), once.
func TestOnDrainTimeoutGetsTheBackend(t *testing.T) {
	got := make(chan *Backend, 4)
	bl, clk, _ := testBalancer(t, Config{DrainTimeout: 10 * time.Second, OnDrainTimeout: func(b *Backend) { got <- b }}, "a:1", "b:1")
	bl.Start()
	a := bl.Backend("", "a:1")
	if bl.Pool(DefaultPool).Pick(func(b *Backend) bool { return b != a }) != a {
		t.Fatal("could not pick a")
	}
	a.TunnelStarted()
	if err := bl.Update(mustBackends(t, "b:1")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(9 * time.Second)
	select {
	case b := <-got:
		t.Fatalf("OnDrainTimeout(%s) before the drain timeout", b)
	case <-time.After(50 * time.Millisecond):
	}
	clk.Advance(2 * time.Second)
	select {
	case b := <-got:
		if b != a {
			t.Fatalf("OnDrainTimeout(%s), want a", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnDrainTimeout not called after the drain timeout")
	}
	clk.Advance(5 * time.Second)
	select {
	case b := <-got:
		t.Fatalf("OnDrainTimeout(%s) called twice", b)
	case <-time.After(50 * time.Millisecond):
	}
}
