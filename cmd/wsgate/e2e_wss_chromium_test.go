package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wssPage opens wss:// on its own origin, reads the greeting, sends
// messages from 1 B to 256 KiB (text and binary), checks each echo, and
// reports to /report through wsgate's https.
const wssPage = `<!doctype html><title>wss</title><script>
const sizes = [1, 125, 126, 65535, 65536, 262144];
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.binaryType = "arraybuffer";
let i = -1, sent = null, ok = 0, greeting = "", errs = [];
function report() { fetch("/report?r=" + encodeURIComponent(JSON.stringify({greeting, ok, errs}))); }
function next() {
  i++;
  if (i >= sizes.length) { ws.close(1000); report(); return; }
  if (i % 2 == 0) { sent = "x".repeat(sizes[i]) + i; ws.send(sent); return; }
  sent = new Uint8Array(sizes[i]); crypto.getRandomValues(sent.subarray(0, Math.min(sent.length, 65536))); ws.send(sent);
}
ws.onmessage = (e) => {
  if (!greeting) { greeting = e.data; next(); return; }
  let same;
  if (typeof sent === "string") same = e.data === sent;
  else { const got = new Uint8Array(e.data); same = got.length === sent.length && got.every((v, k) => v === sent[k]); }
  if (same) ok++; else errs.push("message " + i + " differs");
  next();
};
ws.onerror = () => { errs.push("error"); report(); };
</script>`

// Chromium (headless) as the wss client through wsgate: the page comes over
// https, its WebSocket is wss on the same origin (TLS 1.3, a taken-over
// tunnel), and every message is echoed intact.
func TestWSSChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	reports := make(chan string, 1)
	be := startBackend(t, "a", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/wss.html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(wssPage))
		})
		mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
			select {
			case reports <- r.URL.Query().Get("r"):
			default:
			}
		})
	})
	dir := t.TempDir()
	crt, key := newTestCA(t).issue(t, dir, "a", 1, "a.test")
	g := startGate(t, "-b", be.addr, "--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key)
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--ignore-certificate-errors",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--remote-debugging-port=0",
		"https://"+g.tlsAddrs[0]+"/wss.html")
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	select {
	case r := <-reports:
		t.Logf("page: %s", r)
		if !strings.Contains(r, `"greeting":"hello from a"`) || !strings.Contains(r, `"ok":6`) || !strings.Contains(r, `"errs":[]`) {
			t.Fatalf("Chromium over wss: %s", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no report from the page in 60 s; chromium:\n%s", errb.String())
	}
	if v := g.metric(t, `wsgate_tls_takeovers_total{result="ok"}`); v < 1 {
		t.Fatalf("the page's wss tunnel was not taken over (%v)", v)
	}
	if v := g.metric(t, `wsgate_tls_connections_total{version="1.3",path="engine"}`); v < 1 {
		t.Fatalf("Chromium did not use the TLS 1.3 engine path (%v)", v)
	}
}
