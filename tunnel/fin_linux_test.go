package tunnel

import (
	"io"
	"testing"
	"time"
)

// A half-closed tunnel whose other side stays silent is closed after
// FinTimeout (not the much longer IdleTimeout), with the reason of the side
// that finished first; one whose other side keeps talking stays open.
func TestFinTimeoutFakeClock(t *testing.T) {
	clk := newFakeClock()
	e := newEngine(t, Config{IdleTimeout: 100 * time.Second, FinTimeout: 5 * time.Second, Tick: time.Second, Now: clk.Now})
	r := newRig(t)
	silent := r.newPair(t, e, nil, nil)
	talking := r.newPair(t, e, nil, nil)
	e.tick()
	for _, p := range []*pair{silent, talking} {
		p.client.CloseWrite()
		p.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(p.backend); err != nil { // the FIN was passed on
			t.Fatal(err)
		}
	}
	e.tick()
	for i := 0; i < 5; i++ {
		clk.Advance(time.Second)
		talking.backend.Write([]byte("more")) // the backend goes on answering
		io.ReadFull(talking.client, make([]byte, 4))
		e.tick()
	}
	silent.notClosed(t) // 5 s of silence: not over yet
	clk.Advance(time.Second)
	talking.backend.Write([]byte("more"))
	io.ReadFull(talking.client, make([]byte, 4))
	e.tick()
	st := silent.wait(t, time.Second)
	if st.Reason != ClientClosed || st.Duration != 6*time.Second {
		t.Fatalf("silent: %+v, want client_closed after 6s", st)
	}
	talking.notClosed(t)
}
