package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// wss through wsgate with Node's TLS stack and the ws library as the
// client, once per TLS 1.3 suite: the greeting behind the 101, then binary
// messages from 0 bytes to 1 MiB (every WebSocket length encoding, many
// records each) echoed byte for byte over a taken-over tunnel.
func TestWSSNodeClientSuites(t *testing.T) {
	needNode(t)
	g := startTLSGate(t)
	for i, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			out, err := exec.Command("node", filepath.Join(nodeDir, "wss-client.js"), "wss://"+g.tlsAddr+"/ws", suite).Output()
			var r struct {
				Suite, Greeting string
				Echoed          int
				Errors          []string
			}
			if jerr := json.Unmarshal(out, &r); jerr != nil {
				t.Fatalf("wss-client.js: %v (%v): %q", err, jerr, out)
			}
			if r.Suite != suite || r.Greeting != "hello from a" || r.Echoed != 8 || len(r.Errors) > 0 {
				t.Fatalf("node: suite %q greeting %q, %d of 8 echoed, errors %q", r.Suite, r.Greeting, r.Echoed, r.Errors)
			}
			if v := g.metric(t, `wsgate_tls_takeovers_total{result="ok"}`); v < float64(i+1) {
				t.Fatalf("%v takeovers after %d node tunnels", v, i+1)
			}
		})
	}
}
