package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/tunnel"
)

// Where TLS records go is in /status.json and a metric, and logged at
// start, from the same kernel probe; a gate without TLS says nothing of it.
func TestTLSPathInStatus(t *testing.T) {
	kerr := tunnel.KTLSAvailable()
	g := startTLSGate(t)
	var st statusJSON
	resp, err := http.Get("http://" + g.admin + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.TLS == nil {
		t.Fatalf("/status.json: %v, tls %+v", err, st.TLS)
	}
	if st.TLS.Records != "engine" || st.TLS.KernelTLS != (kerr == nil) {
		t.Fatalf("tls status %+v; the probe here says %v", *st.TLS, kerr)
	}
	if kerr != nil && (!errors.Is(kerr, tunnel.ErrNoKTLS) || !strings.Contains(st.TLS.KernelTLSWhy, "ULP")) {
		t.Fatalf("kernel_tls_why %q (probe: %v)", st.TLS.KernelTLSWhy, kerr)
	}
	want := 0.0
	if kerr == nil {
		want = 1
	}
	if v := g.metric(t, "wsgate_tls_kernel_available"); v != want {
		t.Fatalf("wsgate_tls_kernel_available %v, want %v", v, want)
	}

	plain := startGate(t, "-b", g.be.addr)
	resp, err = http.Get("http://" + plain.admin + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if _, ok := raw["tls"]; ok {
		t.Fatalf("a gate without TLS listeners reports tls: %v", raw["tls"])
	}
}
