package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// blackhole returns the address of a listening socket whose accept queue
// is full: connects to it hang (SYNs are dropped) until the dialer gives up.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)

	// Fill the accept queue (backlog 0 holds one or two) and never accept.
	var fill []net.Conn
	t.Cleanup(func() {
		for _, c := range fill {
			c.Close()
		}
	})
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		fill = append(fill, c)
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("test setup: %s accepted a connection after %d queued ones; it is no blackhole", addr, len(fill))
	}
	if !isTimeoutErr(err) {
		t.Fatalf("test setup: connecting to the blackhole %s: %v, want a timeout", addr, err)
	}
	t.Logf("blackhole at %s (accept queue filled by %d connections)", addr, len(fill))
	return addr
}

// TestConnectTimeoutBlackhole: a backend that never completes the TCP
// handshake costs at most --connect-timeout: alone it gives 502 (loop/
// exchange.go: a pool whose every backend failed to connect answers 502;
// 503 is for a pool with nothing to pick), and next to a healthy backend it
// is skipped and every request succeeds.
func TestConnectTimeoutBlackhole(t *testing.T) {
	hole := blackhole(t)

	t.Run("alone", func(t *testing.T) {
		g := startGate(t, "-b", hole, "--connect-timeout", "300ms")
		start := time.Now()
		resp, body := httpGet(t, "http://"+g.addr+"/")
		took := time.Since(start)
		t.Logf("GET through a blackholed backend: %s in %v", resp.Status, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %s (body %q), want 502", resp.Status, body)
		}
		// The default connect timeout is 5 s; 300 ms must be what applied.
		if took > 4*time.Second {
			t.Errorf("the 502 took %v with --connect-timeout 300ms", took)
		}
		if v := g.metric(t, `wsgate_upstream_errors_total{kind="connect_timeout"}`); v < 1 {
			t.Errorf(`wsgate_upstream_errors_total{kind="connect_timeout"} = %v, want ≥ 1`, v)
		}
		g.waitMetricEq(t, activeMetric(hole), 0, 5*time.Second)
	})

	t.Run("next to a healthy backend", func(t *testing.T) {
		ok := startBackend(t, "healthy", 0, nil)
		g := startGate(t, "-b", hole, "-b", ok.addr, "--connect-timeout", "300ms")
		for i := range 10 {
			start := time.Now()
			resp, body := httpGet(t, "http://"+g.addr+"/")
			took := time.Since(start)
			if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "healthy" {
				t.Errorf("request %d: %s from %q (body %q), want 200 from healthy", i, resp.Status, resp.Header.Get("X-Backend"), body)
			}
			if took > 4*time.Second {
				t.Errorf("request %d took %v with --connect-timeout 300ms", i, took)
			}
		}
		g.waitMetricEq(t, activeMetric(hole), 0, 5*time.Second)
		g.waitMetricEq(t, activeMetric(ok.addr), 0, 5*time.Second)
	})
}

// TestResponseTimeout504: a backend that takes 3 s to answer, with
// --response-timeout 500ms, gives 504.
func TestResponseTimeout504(t *testing.T) {
	be := startBackend(t, "sleepy", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "too late\n")
		})
	})
	g := startGate(t, "-b", be.addr, "--response-timeout", "500ms")
	resp, body := httpGet(t, "http://"+g.addr+"/sleep")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %s (body %q), want 504", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("504 has Content-Type %q, want text/plain", ct)
	}
	// The fast path still works on the same proxy.
	if resp, body := httpGet(t, "http://"+g.addr+"/"); resp.StatusCode != 200 {
		t.Errorf("GET / after the 504: %s (body %q), want 200", resp.Status, body)
	}
	g.waitMetricEq(t, activeMetric(be.addr), 0, 10*time.Second)
}

// TestHeaderTimeout408: a client that sends part of a head and then nothing
// gets 408 and the connection closes.
func TestHeaderTimeout408(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--header-timeout", "500ms")
	c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if isTimeoutErr(err) {
		t.Fatalf("connection still open 10 s after a partial head, with --header-timeout 500ms; got %q", got)
	}
	if err != nil {
		t.Fatalf("read: %v (got %q), want a 408 and then EOF", err, got)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Fatalf("got %q, want an HTTP/1.1 408 response", got)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
	if err != nil {
		t.Fatalf("the 408 does not parse: %v\n%q", err, got)
	}
	resp.Body.Close()
	g.waitMetricEq(t, mConnsOpen, 0, 10*time.Second)
}

// TestKeepAliveTimeoutClosesIdle: a keep-alive connection idle after its
// response is closed by the proxy after --keepalive-timeout.
func TestKeepAliveTimeoutClosesIdle(t *testing.T) {
	be := startBackend(t, "a", 0, nil)
	g := startGate(t, "-b", be.addr, "--keepalive-timeout", "500ms")
	g.waitMetricEq(t, mConnsOpen, 0, 15*time.Second) // the start-up probe has gone

	c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: keepalive.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("response: %s close=%v body %q err %v; want 200, kept alive", resp.Status, resp.Close, body, err)
	}
	answered := time.Now()
	if v := g.metric(t, mConnsOpen); v != 1 {
		t.Errorf("%s = %v while the client's keep-alive connection is open, want 1", mConnsOpen, v)
	}

	// Wait: the proxy must close it (default keep-alive timeout is 75 s,
	// header timeout 10 s; 5 s is plenty for 500ms).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	switch {
	case isTimeoutErr(err):
		t.Fatalf("idle keep-alive connection still open 5 s after the response, with --keepalive-timeout 500ms")
	case n > 0:
		t.Fatalf("unexpected byte from the proxy on an idle connection")
	case !errors.Is(err, io.EOF):
		t.Errorf("idle connection ended with %v, want EOF (an orderly close)", err)
	}
	t.Logf("idle connection closed %v after the response", time.Since(answered).Round(time.Millisecond))
	g.waitMetricEq(t, mConnsOpen, 0, 10*time.Second)
}

// TestNoBackendAvailable: when the only backend refuses connections, the
// client gets 502 in plain text (also for a WebSocket handshake).
func TestNoBackendAvailable(t *testing.T) {
	dead := reserveAddr(t) // bound, never listening: connections are refused
	g := startGate(t, "-b", dead)
	resp, body := httpGet(t, "http://"+g.addr+"/anything")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %s (body %q), want 502", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if v := g.metric(t, `wsgate_upstream_errors_total{kind="connect_refused"}`); v < 1 {
		t.Errorf(`wsgate_upstream_errors_total{kind="connect_refused"} = %v, want ≥ 1`, v)
	}

	_, wsResp, err := wsDialer.Dial("ws://"+g.addr+"/ws", nil)
	switch {
	case err == nil:
		t.Errorf("WebSocket handshake to a dead backend succeeded")
	case wsResp == nil:
		t.Errorf("WebSocket handshake to a dead backend: %v, want an HTTP 502 answer", err)
	case wsResp.StatusCode != http.StatusBadGateway:
		t.Errorf("WebSocket handshake to a dead backend: %s, want 502", wsResp.Status)
	}
	g.waitMetricEq(t, activeMetric(dead), 0, 5*time.Second)
	g.waitMetricEq(t, mTunnelsOpen, 0, 5*time.Second)
}
