package tunnel

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// Once both peers' close frames have passed, the backend's FIN ends the
// tunnel at once: the client, which may send nothing more, is closed
// without waiting for its FIN. With only the backend's close frame (the
// client's side of the closing handshake not done) or with a frame cut
// short, the FIN is passed on and the tunnel stays half-open for the
// client's FIN, as before.
func TestClosingHandshakeEndsAtFirstFIN(t *testing.T) {
	e := newEngine(t, Config{IdleTimeout: time.Hour, FinTimeout: time.Hour})
	r := newRig(t)
	closeFrame := func(masked bool) []byte { return wsFrame(true, 0x8, []byte{0x03, 0xe8}, masked) }
	text := wsFrame(true, 0x1, []byte("hello"), true)
	for _, tc := range []struct {
		name       string
		fromClient []byte
		fromBack   []byte
		ends       bool
	}{
		{"both close frames", append(append([]byte{}, text...), closeFrame(true)...), closeFrame(false), true},
		{"backend's close frame only", text, closeFrame(false), false},
		{"client's close frame cut short", closeFrame(true)[:3], closeFrame(false), false},
		{"client's close frame header split across reads", closeFrame(true), closeFrame(false), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := r.newPair(t, e, nil, nil)
			p.client.SetDeadline(time.Now().Add(5 * time.Second))
			p.backend.SetDeadline(time.Now().Add(5 * time.Second))
			if strings.Contains(tc.name, "split") {
				p.client.Write(tc.fromClient[:1]) // the first header byte alone
				if _, err := io.ReadFull(p.backend, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				p.client.Write(tc.fromClient[1:])
				if _, err := io.ReadFull(p.backend, make([]byte, len(tc.fromClient)-1)); err != nil {
					t.Fatal(err)
				}
			} else {
				p.client.Write(tc.fromClient)
				if _, err := io.ReadFull(p.backend, make([]byte, len(tc.fromClient))); err != nil {
					t.Fatal(err)
				}
			}
			p.backend.Write(tc.fromBack)
			p.backend.CloseWrite()
			got, err := io.ReadAll(p.client) // the close frame, then EOF: FIN or close
			if err != nil || string(got) != string(tc.fromBack) {
				t.Fatalf("client read %q, %v", got, err)
			}
			if !tc.ends {
				time.Sleep(50 * time.Millisecond)
				p.notClosed(t)
				p.client.CloseWrite()
			}
			st := p.wait(t, 5*time.Second)
			if st.Reason != BackendClosed {
				t.Fatalf("reason %v, want backend_closed", st.Reason)
			}
		})
	}
}

// A FIN that came with the last bytes is taken by the short read that
// takes them: the tunnel passes both on without the read of 0 (which it
// still makes when the FIN comes alone, after the bytes were read).
func TestFinWithLastBytesCostsNoRead(t *testing.T) {
	e := newEngine(t, Config{IdleTimeout: time.Hour, FinTimeout: time.Hour})
	r := newRig(t)
	eofReads := func() int64 {
		var n atomic.Int64 // the loops run fn at once
		e.run(func(l *loop) { n.Add(l.eofReads) })
		return n.Load()
	}
	for _, together := range []bool{true, false} {
		p, cfd, bfd := r.conns(t)
		t.Cleanup(p.close)
		p.client.SetDeadline(time.Now().Add(5 * time.Second))
		before := eofReads()
		msg := wsFrame(true, 0x8, []byte{0x03, 0xe8}, false)
		if together {
			// Bytes and FIN queued at the proxy's backend socket before the
			// tunnel starts: its first event carries both.
			p.backend.Write(msg)
			p.backend.CloseWrite()
			waitPoll(t, bfd, unix.POLLRDHUP)
		}
		if err := e.Add(cfd, bfd, nil, nil, p.done); err != nil {
			t.Fatal(err)
		}
		if !together {
			p.backend.Write(msg)
			if _, err := io.ReadFull(p.client, make([]byte, len(msg))); err != nil {
				t.Fatal(err)
			}
			p.backend.CloseWrite()
		}
		got, err := io.ReadAll(p.client)
		if together && (err != nil || string(got) != string(msg)) {
			t.Fatalf("client read %q, %v; want the frame, then EOF", got, err)
		}
		if !together && (err != nil || len(got) != 0) {
			t.Fatalf("client read %q, %v; want EOF", got, err)
		}
		p.client.CloseWrite()
		p.wait(t, 5*time.Second)
		// The client's FIN always comes alone: one read of 0. The
		// backend's costs one more only when it came alone.
		reads, want := eofReads()-before, int64(2)
		if together {
			want = 1
		}
		if reads != want {
			t.Errorf("backend's FIN with the last bytes %v: %d reads of 0, want %d", together, reads, want)
		}
	}
}

// waitPoll waits until fd reports one of events (poll(2): POLLRDHUP, its
// peer's FIN; POLLIN, input).
func waitPoll(t *testing.T, fd int, events int16) {
	t.Helper()
	for range 500 {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		if n, _ := unix.Poll(pfd, 10); n == 1 && pfd[0].Revents&events != 0 {
			return
		}
	}
	t.Fatalf("poll events %#x never came on the proxy's socket", events)
}

// The backend's close frame and FIN and, behind them, a Pong from the
// client (legal after its close frame) reach the proxy while its loop is
// busy, so the next batch has both events, the backend's first. The
// tunnel must not close the client's socket with the Pong unread (a
// reset, which can cost the client the close frame queued toward it): it
// half-closes, the client reads the close frame and a clean EOF, and the
// Pong still reaches the backend.
func TestClosingHandshakeUnreadInputInSameBatch(t *testing.T) {
	e := newEngine(t, Config{Loops: 1, IdleTimeout: time.Hour, FinTimeout: time.Hour})
	r := newRig(t)
	p, cfd, bfd := r.conns(t)
	t.Cleanup(p.close)
	if err := e.Add(cfd, bfd, nil, nil, p.done); err != nil {
		t.Fatal(err)
	}
	p.client.SetDeadline(time.Now().Add(5 * time.Second))
	p.backend.SetDeadline(time.Now().Add(5 * time.Second))
	clientClose := wsFrame(true, 0x8, []byte{0x03, 0xe8}, true)
	p.client.Write(clientClose)
	if _, err := io.ReadFull(p.backend, make([]byte, len(clientClose))); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	go e.run(func(*loop) { close(entered); <-release })
	<-entered
	backClose := wsFrame(true, 0x8, []byte{0x03, 0xe8}, false)
	p.backend.Write(backClose)
	p.backend.CloseWrite()
	waitPoll(t, bfd, unix.POLLRDHUP)
	pong := wsFrame(true, 0xA, nil, true)
	p.client.Write(pong)
	waitPoll(t, cfd, unix.POLLIN)
	close(release)

	got, err := io.ReadAll(p.client)
	if err != nil || string(got) != string(backClose) {
		t.Fatalf("client read %q, %v; want the close frame, then a clean EOF", got, err)
	}
	if _, err := io.ReadFull(p.backend, make([]byte, len(pong))); err != nil {
		t.Fatalf("the Pong did not reach the backend: %v", err)
	}
	p.client.CloseWrite()
	if st := p.wait(t, 5*time.Second); st.Reason != BackendClosed {
		t.Fatalf("reason %v, want backend_closed", st.Reason)
	}
}

// A closing handshake after bulk frames that went through splice(2): the
// frame tracker still sees both close frames at their boundaries (the
// spliced payloads are counted, the headers read through buffers), so the
// backend's FIN still ends the tunnel; the bulk arrives whole both ways.
func TestClosingHandshakeAfterSplicedFrames(t *testing.T) {
	e := newEngine(t, Config{IdleTimeout: time.Hour, FinTimeout: time.Hour})
	p := newRig(t).newPair(t, e, nil, nil)
	p.client.SetDeadline(time.Now().Add(10 * time.Second))
	p.backend.SetDeadline(time.Now().Add(10 * time.Second))
	bulk := make([]byte, 1<<20)
	pattern(bulk, 0)
	fromClient := append(wsFrame(true, 0x2, bulk, true), wsFrame(true, 0x8, []byte{0x03, 0xe8}, true)...)
	fromBack := append(wsFrame(true, 0x2, bulk, false), wsFrame(true, 0x8, []byte{0x03, 0xe8}, false)...)
	errc := make(chan error, 1)
	go func() { _, err := p.client.Write(fromClient); errc <- err }()
	got := make([]byte, len(fromClient))
	if _, err := io.ReadFull(p.backend, got); err != nil || string(got) != string(fromClient) {
		t.Fatalf("backend read %d bytes (%v), not the client's frames", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { _, err := p.backend.Write(fromBack); p.backend.CloseWrite(); errc <- err }()
	all, err := io.ReadAll(p.client)
	if err != nil || string(all) != string(fromBack) {
		t.Fatalf("client read %d bytes, %v; want the backend's frames, then EOF", len(all), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := p.wait(t, 5*time.Second); st.Reason != BackendClosed {
		t.Fatalf("reason %v, want backend_closed", st.Reason)
	}
	if st := e.m.spliceBytes.Get(); st == 0 {
		t.Fatal("nothing went through splice: the test did not test that")
	}
}
