package tunnel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// readPending reads what the Pending's socket has, waiting up to d.
func readPending(tb testing.TB, p *Pending, want int, d time.Duration) []byte {
	tb.Helper()
	deadline := time.Now().Add(d)
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < want {
		n, err := rawsys.Read(p.Fd(), buf)
		if err == unix.EAGAIN {
			if err := p.Wait(deadline); err != nil {
				tb.Fatalf("after %q: %v", got, err)
			}
			continue
		}
		if err != nil || n == 0 {
			tb.Fatalf("read: %d, %v", n, err)
		}
		got = append(got, buf[:n]...)
	}
	return got
}

// attached makes a tunnel's four sockets and attaches the proxy's backend
// side to e (connecting: registered for output too); the client side's fd
// is closed with the test.
func attached(t *testing.T, e *Engine, r *rig, connecting bool) (*pair, int, *Pending) {
	t.Helper()
	pr, cfd, bfd := r.conns(t)
	t.Cleanup(pr.close)
	p, err := e.Attach(bfd, connecting)
	if err != nil {
		t.Fatal(err)
	}
	return pr, cfd, p
}

const head101 = "HTTP/1.1 101 Switching Protocols\r\n\r\n"

func TestPendingWaitsForInputAndDeadline(t *testing.T) {
	e := newEngine(t, Config{})
	r := newRig(t)
	pr, cfd, p := attached(t, e, r, false)
	defer unix.Close(cfd)
	defer p.Close()

	// Nothing sent: the wait ends at its deadline.
	start := time.Now()
	if err := p.Wait(time.Now().Add(30 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait with nothing to read: %v, want a deadline error", err)
	}
	if time.Since(start) < 25*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its deadline", time.Since(start))
	}
	if err := p.Wait(time.Now().Add(-time.Second)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait past its deadline: %v", err)
	}

	// The backend's answer wakes a waiter parked without a deadline.
	go func() {
		time.Sleep(20 * time.Millisecond)
		pr.backend.Write([]byte(head101))
	}()
	if got := readPending(t, p, len(head101), 5*time.Second); string(got) != head101 {
		t.Fatalf("read %q", got)
	}
	// Writes go straight to the socket.
	if n, err := rawsys.Write(p.Fd(), []byte("ping")); n != 4 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(pr.backend, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("backend read %q, %v", buf, err)
	}
	// The backend's FIN wakes it too; read then sees the end.
	pr.backend.CloseWrite()
	for {
		n, err := rawsys.Read(p.Fd(), buf)
		if err == unix.EAGAIN {
			if err := p.Wait(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatalf("waiting for FIN: %v", err)
			}
			continue
		}
		if n != 0 || err != nil {
			t.Fatalf("read after FIN: %d, %v", n, err)
		}
		break
	}
}

func TestPendingBecomesTunnel(t *testing.T) {
	e := newEngine(t, Config{})
	r := newRig(t)
	pr, cfd, bfd := r.conns(t)
	defer pr.close()
	fds0, _ := countFds(t)
	p, err := e.Attach(bfd, false)
	if err != nil {
		t.Fatal(err)
	}
	// The backend answers, and its first frame follows the 101 at once.
	pr.backend.Write([]byte(head101 + "\x81\x02hi"))
	head := readPending(t, p, len(head101)+4, 5*time.Second)
	const tag = 7
	toClient := append([]byte("HTTP/1.1 101 Switching Protocols\r\nX: y\r\n\r\n"), head[len(head101):]...)
	if err := e.AddPending(tag, cfd, p, []byte("\x81\x80abcd"), toClient, pr.done); err != nil {
		t.Fatal(err)
	}
	if fds, _ := countFds(t); fds != fds0 {
		t.Fatalf("%d fds open, %d before: the tunnel must use the Pending's socket itself", fds, fds0)
	}
	got := make([]byte, len(toClient))
	if _, err := io.ReadFull(pr.client, got); err != nil || string(got) != string(toClient) {
		t.Fatalf("client read %q, %v", got, err)
	}
	got = make([]byte, 6)
	if _, err := io.ReadFull(pr.backend, got); err != nil || string(got) != "\x81\x80abcd" {
		t.Fatalf("backend read %q, %v", got, err)
	}
	// Relayed both ways after the initial bytes, the backend side's
	// events included (its registration moved to the tunnel).
	go echo(pr.backend)
	for i := 0; i < 3; i++ {
		pr.client.Write([]byte("\x82\x03abc"))
		got = make([]byte, 5)
		if _, err := io.ReadFull(pr.client, got); err != nil || string(got) != "\x82\x03abc" {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	if e.Len() != 1 {
		t.Fatalf("Len %d, want 1", e.Len())
	}
	if n := e.CloseTagged(tag); n != 1 {
		t.Fatalf("CloseTagged closed %d, want 1", n)
	}
	if st := pr.wait(t, 5*time.Second); st.Reason != Shutdown {
		t.Fatalf("reason %v", st.Reason)
	}
	// Done with: Close and a second AddPending change nothing more.
	p.Close()
	if err := e.AddPending(tag, -1, p, nil, nil, nil); !errors.Is(err, ErrBadFd) {
		t.Fatalf("AddPending of an adopted Pending: %v", err)
	}
}

func TestPendingClose(t *testing.T) {
	e := newEngine(t, Config{})
	r := newRig(t)
	pr, cfd, p := attached(t, e, r, true) // "connecting": output counts as an event
	defer unix.Close(cfd)
	if err := p.Wait(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("a connected socket registered as connecting is writable: %v", err)
	}
	p.Close()
	p.Close() // once only
	pr.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := pr.backend.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("backend after Close: %d, %v (want EOF)", n, err)
	}
	// A closed Pending cannot become a tunnel; the client fd is closed.
	fd2, err := unix.Dup(cfd)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddPending(0, fd2, p, nil, nil, nil); !errors.Is(err, ErrBadFd) {
		t.Fatalf("AddPending after Close: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd2), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("client fd still open after a refused AddPending: %v", err)
	}
}

func TestPendingEngineStops(t *testing.T) {
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	pr, cfd, p := attached(t, e, r, false)
	defer unix.Close(cfd)
	waited := make(chan error, 1)
	go func() { waited <- p.Wait(time.Time{}) }()
	time.Sleep(10 * time.Millisecond)
	e.Close()
	select {
	case err := <-waited:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait when the engine stopped: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return when the engine stopped")
	}
	if err := p.Wait(time.Time{}); !errors.Is(err, ErrClosed) { // again: no signal left, no hang
		t.Fatalf("second Wait after the engine stopped: %v", err)
	}
	p.Close() // the owner still closes the socket
	pr.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := pr.backend.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("backend after Close: %d, %v (want EOF)", n, err)
	}
	fd, err := unix.Dup(cfd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := e.Attach(fd, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Attach after Close: %v", err)
	}
}

// Keys are reused: a Pending that took a closed one's key, and the others
// open beside it, each get their own socket's events.
func TestPendingKeysReused(t *testing.T) {
	e := newEngine(t, Config{Loops: 1})
	r := newRig(t)
	var ps []*Pending
	var prs []*pair
	for i := 0; i < 3; i++ {
		pr, cfd, bfd := r.conns(t)
		defer pr.close()
		defer unix.Close(cfd)
		p, err := e.Attach(bfd, false)
		if err != nil {
			t.Fatal(err)
		}
		ps, prs = append(ps, p), append(prs, pr)
	}
	ps[1].Close()
	pr, cfd, p := attached(t, e, r, false)
	defer unix.Close(cfd)
	defer p.Close()
	if p.key != ps[1].key {
		t.Fatalf("key %d not reused (closed one had %d)", p.key, ps[1].key)
	}
	for i, q := range []*Pending{ps[0], ps[2], p} {
		w := []*pair{prs[0], prs[2], pr}[i]
		w.backend.Write([]byte("abc"))
		if got := readPending(t, q, 3, 5*time.Second); string(got) != "abc" {
			t.Fatalf("pending %d read %q", i, got)
		}
	}
	ps[0].Close()
	ps[2].Close()
}

// A socket registered for input only wakes its waiter for output once
// WantOutput asked for it: a write that filled the buffers waits for room.
func TestPendingWantOutput(t *testing.T) {
	e := newEngine(t, Config{})
	r := newRig(t)
	pr, cfd, p := attached(t, e, r, false)
	defer unix.Close(cfd)
	defer p.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := rawsys.Write(p.Fd(), chunk); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := p.WantOutput(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr.backend) // room again
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := p.Wait(deadline); err != nil {
			t.Fatalf("waiting for room: %v", err)
		}
		if _, err := rawsys.Write(p.Fd(), chunk); err == nil {
			return
		} else if err != unix.EAGAIN {
			t.Fatal(err)
		}
	}
}

// notifyTo is a Notifier that reads the 101 on the loop's goroutine and
// turns the Pending into a tunnel there (AddPending), as wsgate's handshake
// does; it counts its calls and the loop's wake-ups it would need.
type notifyTo struct {
	e      *Engine
	p      *Pending
	cfd    int
	done   func(Stats)
	calls  atomic.Int32
	got    []byte
	result chan error
}

func (n *notifyTo) PendingReady() {
	n.calls.Add(1)
	buf := make([]byte, 256)
	m, err := rawsys.Read(n.p.Fd(), buf)
	if err == unix.EAGAIN {
		return
	}
	if err != nil || m == 0 {
		n.result <- fmt.Errorf("read: %d, %v", m, err)
		return
	}
	n.got = append(n.got, buf[:m]...)
	if len(n.got) < len(head101) {
		return
	}
	n.result <- n.e.AddPending(3, n.cfd, n.p, nil, n.got, n.done)
}

// A Pending with a Notifier has its events told on the loop, where
// the owner can finish the handshake: the tunnel it adds there runs, its
// 101 reaching the client, and the loop is not woken for the command (it
// is queued by the loop itself; batch takes it before the loop parks). An
// event that came before Notify is reported by Notify instead, and left
// for the next Wait.
func TestPendingNotify(t *testing.T) {
	e := newEngine(t, Config{})
	r := newRig(t)
	pr, cfd, p := attached(t, e, r, false)

	// An event before Notify: reported by Notify, not told.
	n0 := &notifyTo{result: make(chan error, 1)}
	pr.backend.Write([]byte("x"))
	eventually(t, 5*time.Second, "the event", func() bool { return len(p.ready) == 1 })
	if !p.Notify(n0) {
		t.Fatal("Notify after an event: eventSeen false")
	}
	if n0.calls.Load() != 0 {
		t.Fatal("the Notifier was told of an event that came before it")
	}
	p.Notify(nil)
	// The event stays for the next Wait: one that waits before it reads
	// (roundTrip with nothing to send) returns at once.
	if err := p.Wait(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("Wait after Notify saw the event: %v", err)
	}
	if m, err := rawsys.Read(p.Fd(), make([]byte, 8)); m != 1 || err != nil {
		t.Fatalf("read: %d, %v", m, err)
	}

	l := p.l // p goes back to its pool with the AddPending
	wakes := l.wakes.Load()
	n := &notifyTo{e: e, p: p, cfd: cfd, done: pr.done, result: make(chan error, 1)}
	if p.Notify(n) {
		t.Fatal("eventSeen with no event since")
	}
	pr.backend.Write([]byte(head101[:10]))
	eventually(t, 5*time.Second, "the first part told", func() bool { return n.calls.Load() >= 1 })
	pr.backend.Write([]byte(head101[10:]))
	select {
	case err := <-n.result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no tunnel after %d calls", n.calls.Load())
	}
	got := make([]byte, len(head101))
	pr.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pr.client, got); err != nil || string(got) != head101 {
		t.Fatalf("client read %q, %v", got, err)
	}
	if w := l.wakes.Load() - wakes; w != 0 {
		t.Errorf("the loop was woken %d times for a tunnel added on it", w)
	}
	go echo(pr.backend)
	pr.client.Write([]byte("\x82\x03abc"))
	got = make([]byte, 5)
	if _, err := io.ReadFull(pr.client, got); err != nil || string(got) != "\x82\x03abc" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if c := n.calls.Load(); c != 2 {
		t.Errorf("PendingReady called %d times, want 2 (one per part; none once the Pending is a tunnel)", c)
	}
}
