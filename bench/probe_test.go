package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxBin finds nginx or skips the test (CI installs it: .ci/run).
func nginxBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("nginx not installed (apt-get install nginx); .ci/run installs it")
	return ""
}

// lf2port returns the port of the listening socket in lf.
func lf2port(t *testing.T, lf *os.File) int {
	t.Helper()
	sa, err := syscall.Getsockname(int(lf.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// startNginx runs nginx in the foreground with everything under a temp dir,
// proxying / to backend with the given extra location directives. It
// returns nginx's address.
func startNginx(t *testing.T, backend string, directives string) string {
	t.Helper()
	bin := nginxBin(t)
	dir := t.TempDir()
	// nginx takes over a socket we bound and listen on (its NGINX
	// variable, as in a binary upgrade): the port is never free between
	// choosing it and nginx using it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	ln.Close() // lf keeps the socket, listening
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	port := lf2port(t, lf)
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d;
        location / {
            proxy_pass http://%[3]s;
            %[4]s
        }
    }
}
`, dir, port, backend, directives)
	cfgPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", cfgPath, "-e", filepath.Join(dir, "error.log"))
	cmd.ExtraFiles = []*os.File{lf} // fd 3
	cmd.Env = append(os.Environ(), "NGINX=3;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const nginxWebSocketDirectives = `proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";`

func backendAddr(e *echoServer) string {
	return strings.TrimSuffix(strings.TrimPrefix(e.URL, "ws://"), "/ws")
}

func probeText(t *testing.T, pc ProbeConfig) (*ProbeResult, string) {
	t.Helper()
	res, err := Probe(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.WriteText(&b)
	t.Logf("%s", b.String())
	return res, b.String()
}

func TestProbeDirectBackendWorks(t *testing.T) {
	e := startEcho(t)
	res, text := probeText(t, ProbeConfig{URL: e.URL, Backend: backendAddr(e)})
	if !res.Works || !strings.Contains(text, "Sec-WebSocket-Accept verified") || !strings.Contains(text, "WebSockets work") {
		t.Fatalf("works %v", res.Works)
	}
	if c := findCheck(res.Checks, checkHealth); c == nil || !c.OK || c.Status != 200 {
		t.Errorf("health check: %+v", c)
	}
}

func TestProbeNginxWithoutUpgradeHeaders(t *testing.T) {
	e := startEcho(t)
	proxy := startNginx(t, backendAddr(e), "")
	url := "ws://" + proxy + "/ws"

	res, text := probeText(t, ProbeConfig{URL: url, Backend: backendAddr(e)})
	if res.Works {
		t.Fatal("probe says it works through nginx without Upgrade/Connection")
	}
	if !strings.Contains(text, "does not pass the upgrade headers (Upgrade and Connection)") || !strings.Contains(text, "proxy_http_version 1.1") {
		t.Errorf("diagnosis does not name the missing upgrade headers")
	}
	if c := findCheck(res.Checks, checkDirect); c == nil || !c.OK {
		t.Errorf("direct upgrade: %+v", c)
	}
	// Without --backend, the 400's body still gives it away.
	res, text = probeText(t, ProbeConfig{URL: url})
	if res.Works || !strings.Contains(text, "most likely the proxy does not pass the upgrade headers") || !strings.Contains(text, "--backend") {
		t.Errorf("without --backend: works %v", res.Works)
	}
}

func TestProbeNginxWithUpgradeHeaders(t *testing.T) {
	e := startEcho(t)
	proxy := startNginx(t, backendAddr(e), nginxWebSocketDirectives)
	url := "ws://" + proxy + "/ws"
	res, text := probeText(t, ProbeConfig{URL: url, Backend: backendAddr(e)})
	if !res.Works || !strings.Contains(text, "WebSockets work through the proxy") {
		t.Fatalf("works %v", res.Works)
	}
	// And load flows through it.
	cfg := quickCfg(ModeEcho, url)
	if r := runOK(t, cfg); r.Messages == 0 {
		t.Error("no echoes through nginx")
	}
}

func TestProbeNginxBackendDown(t *testing.T) {
	dead := refusingAddr(t)
	proxy := startNginx(t, dead, nginxWebSocketDirectives)
	res, text := probeText(t, ProbeConfig{URL: "ws://" + proxy + "/ws", Backend: dead})
	if res.Works || !strings.Contains(text, "502 Bad Gateway: the proxy could not reach the backend") ||
		!strings.Contains(text, "connection refused") {
		t.Fatalf("works %v", res.Works)
	}
}

func TestProbeNginxIdleTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a connection for seconds")
	}
	e := startEcho(t)
	proxy := startNginx(t, backendAddr(e), nginxWebSocketDirectives+"\n            proxy_read_timeout 1s;")
	res, text := probeText(t, ProbeConfig{URL: "ws://" + proxy + "/ws", Hold: 4 * time.Second})
	if res.Works || !strings.Contains(text, "idle timeout") || !strings.Contains(text, "closed after") {
		t.Fatalf("works %v", res.Works)
	}
}

func TestProbeNothingListening(t *testing.T) {
	addr := refusingAddr(t)
	res, text := probeText(t, ProbeConfig{URL: "ws://" + addr + "/ws"})
	if res.Works || !strings.Contains(text, "Nothing accepts connections at "+addr) {
		t.Fatalf("works %v", res.Works)
	}
}

// Statuses a proxy or an application gives, against a Go server that
// answers them on purpose.
func TestProbeDiagnosesStatuses(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   string
	}{
		{502, "bad gateway", "502 Bad Gateway"},
		{503, "", "503 Service Unavailable"},
		{504, "", "504 Gateway Timeout"},
		{403, "origin not allowed", "Origin"},
		{404, "", "path is not routed"},
		{426, "Upgrade Required", "does not pass the upgrade headers"},
		{400, "invalid token", "rejected the path, a token"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, tc.body, tc.status)
			})}
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			go srv.Serve(ln)
			defer srv.Close()
			res, text := probeText(t, ProbeConfig{URL: "ws://" + ln.Addr().String() + "/ws"})
			if res.Works || !strings.Contains(text, tc.want) {
				t.Fatalf("status %d: want %q in the diagnosis", tc.status, tc.want)
			}
		})
	}
}

// The application itself refuses: same answer directly and through the proxy.
func TestProbeApplicationRejects(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad origin", http.StatusForbidden)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	proxy := startNginx(t, ln.Addr().String(), nginxWebSocketDirectives)
	res, text := probeText(t, ProbeConfig{URL: "ws://" + proxy + "/ws", Backend: ln.Addr().String(), HealthPath: "-"})
	if res.Works || !strings.Contains(text, "with or without the proxy: the application rejected it") {
		t.Fatalf("works %v", res.Works)
	}
}

func TestBackendTarget(t *testing.T) {
	proxy, _ := ParseTarget("ws://127.0.0.1:8080/chat?room=1")
	for in, want := range map[string]string{
		"127.0.0.1:3001":            "/chat?room=1",
		"ws://127.0.0.1:3001":       "/chat?room=1",
		"ws://127.0.0.1:3001/":      "/chat?room=1",
		"ws://127.0.0.1:3001/other": "/other",
	} {
		got, err := backendTarget(in, proxy)
		if err != nil || got.Path != want || got.Addr != "127.0.0.1:3001" {
			t.Errorf("backendTarget(%q) = %+v, %v; want path %q", in, got, err, want)
		}
	}
}
