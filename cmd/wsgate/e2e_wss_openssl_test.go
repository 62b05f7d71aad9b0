package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// A wss tunnel through wsgate with openssl s_client as the client, once per
// TLS 1.3 suite (Go clients cannot choose one), with KeyUpdates from the
// client in the middle of the tunnel (s_client's "K" command: update
// requested, so wsgate must answer with its own and rotate its write keys;
// "k": not requested). The tunnel is on the engine's records by then (the
// takeover counter says so), and every message is echoed intact after
// each KeyUpdate.
func TestWSSOpenSSLClientSuites(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	g := startTLSGate(t)
	for i, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			cmd := exec.Command(openssl, "s_client", "-connect", g.tlsAddr, "-servername", "a.test",
				"-tls1_3", "-ciphersuites", suite)
			stdin, _ := cmd.StdinPipe()
			out := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
			waitFor(t, out, "Cipher is "+suite, 10*time.Second)
			io.WriteString(stdin, "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			waitFor(t, out, "hello from a", 10*time.Second)
			g.waitMetric(t, `wsgate_tls_takeovers_total{result="ok"}`, "the tunnel taken over", 10*time.Second,
				func(v float64) bool { return v >= float64(i+1) })
			for j, cmdline := range []string{"", "K\n", "k\n", "K\n"} {
				if cmdline != "" {
					time.Sleep(100 * time.Millisecond) // s_client takes a command only at the start of a read
					io.WriteString(stdin, cmdline)
					time.Sleep(100 * time.Millisecond)
				}
				msg := "msg-" + suite + "-" + string(rune('a'+j))
				stdin.Write(maskedText(msg))
				waitFor(t, out, msg, 10*time.Second)
			}
			if n := strings.Count(out.String(), "KEYUPDATE"); n < 3 {
				t.Logf("s_client output:\n%s", out.String())
				t.Fatalf("s_client reported %d KeyUpdates sent, want 3", n)
			}
		})
	}
}

// maskedText is one masked WebSocket text frame (payload < 126 bytes).
func maskedText(s string) []byte {
	var key [4]byte
	rand.Read(key[:])
	f := []byte{0x81, 0x80 | byte(len(s))}
	f = append(f, key[:]...)
	for i := range len(s) {
		f = append(f, s[i]^key[i%4])
	}
	return f
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, what string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(out.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from s_client after %v; output:\n%s", what, d, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
