package healthcheck_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop/healthcheck"
	"github.com/wsgate/wsgate/loop/looptest"
)

// backendAt returns a Backend for addr (as configured) from a one-pool
// Balancer.
func backendAt(t *testing.T, addr string) *balancer.Backend {
	t.Helper()
	bc, err := balancer.ParseBackend(addr)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := balancer.New(balancer.Config{Backends: []balancer.BackendConfig{bc}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return bl.Pool("").Backends()[0]
}

func TestHealthProbe(t *testing.T) {
	var gotHost, gotPath, gotUA string
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotPath, gotUA = r.Host, r.URL.Path, r.UserAgent()
		switch r.URL.Path {
		case "/health":
			w.Write([]byte("ok"))
		case "/moved":
			http.Redirect(w, r, "/health", http.StatusFound)
		case "/notfound":
			http.NotFound(w, r)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	b := backendAt(t, addr)
	ctx := context.Background()
	for _, tc := range []struct {
		path string
		ok   bool
	}{{"/health", true}, {"/moved", true}, {"/notfound", false}, {"/down", false}} {
		err := healthcheck.Probe(tc.path, time.Second)(ctx, b)
		if (err == nil) != tc.ok {
			t.Errorf("GET %s: %v, want ok=%v", tc.path, err, tc.ok)
		}
		if gotPath != tc.path || gotHost != addr || gotUA != "wsgate-health" {
			t.Errorf("GET %s: backend saw path %q Host %q User-Agent %q", tc.path, gotPath, gotHost, gotUA)
		}
	}
}

func TestHealthProbeFailures(t *testing.T) {
	ctx := context.Background()

	// Nothing listening: refused at once. The port is held by a socket that
	// is bound and never listens, so nothing else can take it meanwhile.
	dead := looptest.ReserveAddr(t)
	if err := healthcheck.Probe("/health", time.Second)(ctx, backendAt(t, dead)); err == nil {
		t.Errorf("probe of a closed port passed")
	}

	// Accepts and never answers (until the test ends): the probe fails by
	// its own timeout, not by the backend giving up.
	silent := make(chan struct{})
	defer close(silent)
	hung := looptest.RawBackend(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		<-silent
	})
	err := healthcheck.Probe("/health", 300*time.Millisecond)(ctx, backendAt(t, hung))
	if err == nil || !strings.Contains(err.Error(), "health timeout") {
		t.Errorf("probe of a silent backend: %v, want a timeout", err)
	}

	// Garbage instead of HTTP.
	junk := looptest.RawBackend(t, func(c net.Conn) { c.Write([]byte("SSH-2.0-OpenSSH\r\n\r\n")) })
	if err := healthcheck.Probe("/health", time.Second)(ctx, backendAt(t, junk)); err == nil {
		t.Errorf("probe of a non-HTTP backend passed")
	}

	// A 100 Continue before the final answer is skipped.
	interim := looptest.RawBackend(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	})
	if err := healthcheck.Probe("/health", time.Second)(ctx, backendAt(t, interim)); err != nil {
		t.Errorf("100 then 204: %v", err)
	}
}

// Without a health path chosen by the operator, an app that has no /health
// (404, 405, 501) is alive; one that fails (5xx, 4xx otherwise) is not.
func TestDefaultHealthProbeToleratesAMissingEndpoint(t *testing.T) {
	status := http.StatusNotFound
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	b := backendAt(t, addr)
	var logged []string
	probe := healthcheck.Default(time.Second, func(format string, args ...any) {
		logged = append(logged, fmt.Sprintf(format, args...))
	})
	ctx := context.Background()
	for _, tc := range []struct {
		status int
		ok     bool
	}{{404, true}, {404, true}, {405, true}, {501, true}, {200, true}, {503, false}, {500, false}, {403, false}} {
		status = tc.status
		if err := probe(ctx, b); (err == nil) != tc.ok {
			t.Errorf("default probe, /health answers %d: %v, want ok=%v", tc.status, err, tc.ok)
		}
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "404") {
		t.Errorf("logged %q, want one line about the 404", logged)
	}
	status = 404
	if err := healthcheck.Probe("/health", time.Second)(ctx, b); err == nil {
		t.Error("a chosen --health-path answering 404 passed the check")
	}
}

// httpBackend starts a net/http backend; its address is host:port.
func httpBackend(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}
