package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// `wsgate -b A` must work in front of an app that has no /health: with the
// default health path, a 404 there means "alive, no health endpoint". When
// the operator names --health-path, a 404 there takes the backend down.
func TestAppWithoutHealthEndpointStaysUp(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "page")
	}))
	t.Cleanup(app.Close)
	addr := strings.TrimPrefix(app.URL, "http://")
	get := func(g *gate) int {
		t.Helper()
		resp, err := http.Get("http://" + g.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	checks := []string{"--health-interval", "100ms", "--health-fall", "1"}

	g := startGate(t, append([]string{"-b", addr}, checks...)...)
	time.Sleep(time.Second) // ten check intervals
	for range 5 {
		if st := get(g); st != 200 {
			t.Fatalf("default health path, app without /health: status %d, want 200", st)
		}
	}
	if !strings.Contains(g.stderr.String(), "counted as alive") {
		t.Error("no log line telling the operator that /health is missing")
	}

	strict := startGate(t, append([]string{"-b", addr, "--health-path", "/health"}, checks...)...)
	deadline := time.Now().Add(10 * time.Second)
	for get(strict) != 503 {
		if time.Now().After(deadline) {
			t.Fatal("--health-path /health answering 404 never took the backend down")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
