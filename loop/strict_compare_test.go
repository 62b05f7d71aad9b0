package loop_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
)

// TestCompareProxies sends the strict tables to nginx and HAProxy (from PATH),
// each configured as a plain reverse proxy in front of a capturing backend,
// and to wsgate, and writes what each answered: the numbers behind
// http1/RULES.md. It runs only with WSGATE_COMPARE=1 (it needs the two
// binaries: apt-get install nginx haproxy); WSGATE_COMPARE_OUT=FILE writes
// the table there.
func TestCompareProxies(t *testing.T) {
	if os.Getenv("WSGATE_COMPARE") == "" {
		t.Skip("set WSGATE_COMPARE=1 (needs nginx and haproxy in PATH)")
	}
	type target struct {
		name string
		addr string
		cb   *captureBackend
	}
	var targets []target
	p, cb := strictProxy(t, nil)
	targets = append(targets, target{"wsgate", p.addr, cb})
	for _, name := range []string{"nginx", "haproxy"} {
		cb := newCaptureBackend(t)
		addr := startBaseline(t, name, cb.addr)
		targets = append(targets, target{name, addr, cb})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "| case | %s |\n|---|", strings.Join(names(targets, func(x target) string { return x.name }), " | "))
	out.WriteString(strings.Repeat("---|", len(targets)) + "\n")
	for _, tc := range strictRejects {
		fmt.Fprintf(&out, "| %s |", tc.name)
		for _, tg := range targets {
			fmt.Fprintf(&out, " %s |", answer(t, tg.addr, tg.cb, tc.raw))
		}
		out.WriteString("\n")
	}
	for _, tc := range strictForwards {
		fmt.Fprintf(&out, "| %s |", tc.name)
		for _, tg := range targets {
			fmt.Fprintf(&out, " %s |", answer(t, tg.addr, tg.cb, tc.raw))
		}
		out.WriteString("\n")
	}
	// Responses: each proxy in front of a backend answering garbage.
	sb := newScriptedBackend(t, badResponses)
	ps := startProxy(t, []string{sb.addr}, nil)
	raddrs := []string{ps.addr, startBaseline(t, "nginx", sb.addr), startBaseline(t, "haproxy", sb.addr)}
	for _, path := range sortedKeys(badResponses) {
		fmt.Fprintf(&out, "| response %s |", path)
		for _, a := range raddrs {
			c, err := net.Dial("tcp", a)
			if err != nil {
				out.WriteString(" dial error |")
				continue
			}
			c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			st, _, _ := readOne(c)
			c.Close()
			fmt.Fprintf(&out, " %d |", st)
		}
		out.WriteString("\n")
	}
	t.Log("\n" + out.String())
	if f := os.Getenv("WSGATE_COMPARE_OUT"); f != "" {
		os.WriteFile(f, []byte(out.String()), 0o644)
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func names[T any](xs []T, f func(T) string) []string {
	var s []string
	for _, x := range xs {
		s = append(s, f(x))
	}
	return s
}

// answer sends raw and describes what came back and what the backend got:
// "400 close", "200 keep; fwd 1 (incomplete)", "-" for no response.
func answer(t *testing.T, addr string, cb *captureBackend, raw string) string {
	k := cb.n()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial error"
	}
	defer c.Close()
	c.Write([]byte(raw))
	var all []byte
	buf := make([]byte, 4096)
	closed := false
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		n, err := c.Read(buf)
		all = append(all, buf[:n]...)
		if err != nil {
			closed = !isTimeoutErr(err)
			break
		}
	}
	rs, _, _ := responses(string(all))
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprint(r.StatusCode))
	}
	s := "-"
	if len(parts) > 0 {
		s = strings.Join(parts, "+")
	}
	if closed {
		s += " close"
	} else {
		s += " open"
	}
	got := cb.sync(t, addr, k)
	if len(got) > 0 {
		inc := 0
		for _, g := range got {
			if !g.Complete {
				inc++
			}
		}
		s += fmt.Sprintf("; fwd %d", len(got))
		if inc > 0 {
			s += fmt.Sprintf(" (%d incomplete)", inc)
		}
	}
	return s
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// startBaseline starts nginx or haproxy on a free loopback port in front of
// backend, with a configuration in a temp dir, and returns its address. The
// nginx configuration is the classic WebSocket recipe (map $http_upgrade,
// proxy_http_version 1.1, Upgrade/Connection/Host set); both get a 1 KiB
// body limit where the product has one (nginx client_max_body_size 1k;
// HAProxy has no body limit) and a 1 s header timeout.
func startBaseline(t *testing.T, name, backend string) string {
	bin, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/usr/sbin/", "/usr/local/sbin/"} {
			if _, e := os.Stat(d + name); e == nil {
				bin, err = d+name, nil
			}
		}
	}
	if err != nil {
		t.Fatalf("%s not found: %v", name, err)
	}
	addr := loop.ReserveAddr(t) // nginx and HAProxy bind it with SO_REUSEADDR
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	var cmd *exec.Cmd
	switch name {
	case "nginx":
		user := ""
		if os.Getuid() == 0 {
			user = "user root;"
		}
		conf := fmt.Sprintf(`%s
worker_processes 1;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  client_max_body_size 1k;
  client_header_timeout 1s;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://%[4]s;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, user, dir, addr, backend)
		f := filepath.Join(dir, "nginx.conf")
		os.WriteFile(f, []byte(conf), 0o644)
		cmd = exec.Command(bin, "-c", f, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	case "haproxy":
		conf := fmt.Sprintf(`global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
  timeout http-request 1s
frontend fe
  bind %s
  option forwardfor
  default_backend be
backend be
  server s1 %s
`, addr, backend)
		f := filepath.Join(dir, "haproxy.cfg")
		os.WriteFile(f, []byte(conf), 0o644)
		cmd = exec.Command(bin, "-db", "-f", f)
	}
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: nginx stops its workers too (SIGKILL would orphan them).
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
	})
	eventually(t, name+" to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}
