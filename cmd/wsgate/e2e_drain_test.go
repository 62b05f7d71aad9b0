package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestDrainOnSIGTERM: on SIGTERM the proxy stops accepting at once, lets the
// request in flight finish, keeps the open tunnel working, and exits 0 as
// soon as the last tunnel closes (before --drain-timeout runs out).
func TestDrainOnSIGTERM(t *testing.T) {
	entered := make(chan struct{}, 1)
	be := startBackend(t, "a", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case entered <- struct{}{}:
			default:
			}
			time.Sleep(time.Second)
			io.WriteString(w, "slow done\n")
		})
	})
	const drain = 5 * time.Second
	g := startGate(t, "-b", be.addr, "--drain-timeout", drain.String())

	ws, err := dialWS(g.addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := readHello(ws); err != nil {
		t.Fatal(err)
	}
	g.waitMetricEq(t, mTunnelsOpen, 1, 10*time.Second)

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := e2eHTTP.Get("http://" + g.addr + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- result{resp.StatusCode, string(body), err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the backend")
	}

	sigAt := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New connections are refused (the listener is closed) while the
	// request is still in flight.
	refused := false
	for time.Since(sigAt) < 3*time.Second {
		c, err := net.DialTimeout("tcp", g.addr, time.Second)
		if err == nil {
			c.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connecting during the drain: %v, want connection refused", err)
		}
		refused = true
		break
	}
	if !refused {
		t.Fatalf("the proxy still accepts connections 3 s after SIGTERM")
	}
	t.Logf("new connections refused %v after SIGTERM", time.Since(sigAt).Round(time.Millisecond))

	select {
	case r := <-slow:
		if r.err != nil || r.status != 200 || r.body != "slow done\n" {
			t.Fatalf("the request in flight at SIGTERM got status %d, body %q, err %v; want 200 \"slow done\"", r.status, r.body, r.err)
		}
		t.Logf("the request in flight finished %v after SIGTERM", time.Since(sigAt).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight at SIGTERM got no answer within 10 s")
	}

	// The tunnel is still up and carries messages.
	if g.exited() {
		t.Fatalf("wsgate exited (%v) while a tunnel was still open and the drain timeout had not passed", g.state)
	}
	ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatalf("tunnel during the drain: write: %v", err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("tunnel during the drain: echo %q, %v; want \"still here\"", p, err)
	}

	// Closing the last tunnel ends the drain early.
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	ws.Close()
	closedAt := time.Now()
	st, ok := g.wait(drain + 5*time.Second)
	if !ok {
		t.Fatalf("wsgate still running %v after SIGTERM (drain timeout %v)", time.Since(sigAt).Round(time.Millisecond), drain)
	}
	exitAfter := time.Since(sigAt)
	t.Logf("wsgate exited with %v, %v after SIGTERM, %v after the last tunnel closed", st, exitAfter.Round(time.Millisecond), time.Since(closedAt).Round(time.Millisecond))
	if code := st.ExitCode(); code != 0 {
		t.Errorf("exit status %d after a drain, want 0", code)
	}
	// The tunnel closed about 1 s after SIGTERM; waiting out the whole
	// drain timeout (5 s) would mean the closed tunnel went unnoticed.
	if exitAfter >= drain-500*time.Millisecond {
		t.Errorf("wsgate exited %v after SIGTERM, i.e. at the drain timeout (%v), not when its last tunnel closed (%v after SIGTERM)",
			exitAfter.Round(time.Millisecond), drain, closedAt.Sub(sigAt).Round(time.Millisecond))
	}
}
