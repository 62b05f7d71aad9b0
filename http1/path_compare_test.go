package http1

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pathCompareTargets are the rows of RULES.md's path normalization table.
var pathCompareTargets = []string{
	"/ws", "/%77s", "/x/../ws", "/%2e%2e/ws", "/x/%2E%2e/ws", "//ws",
	"/ws/../admin", "/ws/%2e%2e/admin", "/ws/..%2Fadmin", "/ws/a%2fb",
	"/ws/%00", "/ws/a%5Cb", `/ws/a\b`, "/ws/%3b", "/../ws", "/ws/..",
}

// TestComparePathNormalization is the table in RULES.md ("Path
// normalization"): each target against one rule, "paths under /ws reach the
// backend, the rest get 403", in nginx (location /ws, proxy_pass without a
// URI part), HAProxy (path_beg /ws), HAProxy with the normalize-uri
// normalizers, and wsgate's http1 (the rule applied to Request.Path; what
// AppendRequest sends). Each cell is the status and the target the backend
// got. It runs only with WSGATE_COMPARE=1 (apt-get install nginx haproxy).
func TestComparePathNormalization(t *testing.T) {
	if os.Getenv("WSGATE_COMPARE") == "" {
		t.Skip("set WSGATE_COMPARE=1 (needs nginx and haproxy)")
	}
	be := startLineBackend(t)
	ng, hr, hn := freeAddr(t), freeAddr(t), freeAddr(t)
	user := ""
	if os.Getuid() == 0 {
		user = "user root;"
	}
	startProxyBinary(t, "nginx", fmt.Sprintf(`%s
worker_processes 1; daemon off; pid DIR/nginx.pid; error_log DIR/error.log info;
events { worker_connections 64; }
http {
  access_log off; client_body_temp_path DIR/b; proxy_temp_path DIR/p;
  fastcgi_temp_path DIR/f; uwsgi_temp_path DIR/u; scgi_temp_path DIR/s;
  server {
    listen %s;
    location /ws { proxy_pass http://%s; }
    location / { return 403; }
  }
}
`, user, ng, be.addr), ng)
	startProxyBinary(t, "haproxy", fmt.Sprintf(`global
  maxconn 64
  expose-experimental-directives
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend raw
  bind %s
  http-request deny unless { path_beg /ws }
  default_backend be
frontend norm
  bind %s
  http-request normalize-uri percent-decode-unreserved
  http-request normalize-uri percent-to-uppercase
  http-request normalize-uri path-strip-dot
  http-request normalize-uri path-strip-dotdot full
  http-request normalize-uri path-merge-slashes
  http-request deny unless { path_beg /ws }
  default_backend be
backend be
  server s1 %s
`, hr, hn, be.addr), hr, hn)

	var out strings.Builder
	out.WriteString("| target | wsgate | nginx 1.22 | HAProxy 2.6 | HAProxy 2.6 + normalize-uri |\n|---|---|---|---|---|\n")
	for _, target := range pathCompareTargets {
		fmt.Fprintf(&out, "| `%s` | %s | %s | %s | %s |\n", target, wsgatePathAnswer(target),
			be.ask(t, ng, target), be.ask(t, hr, target), be.ask(t, hn, target))
	}
	t.Log("\n" + out.String())
	if f := os.Getenv("WSGATE_COMPARE_OUT"); f != "" {
		os.WriteFile(f, []byte(out.String()), 0o644)
	}
}

// wsgatePathAnswer applies the "/ws or 403" rule to Request.Path.
func wsgatePathAnswer(target string) string {
	buf := []byte("GET " + target + " HTTP/1.1\r\nHost: a.example\r\n\r\n")
	var r Request
	if err := r.Parse(buf, nil); err != nil {
		return fmt.Sprint(StatusOf(err))
	}
	if !strings.HasPrefix(string(r.Path(buf)), "/ws") {
		return "403"
	}
	out := string(AppendRequest(nil, buf, &r, &Forward{}))
	return "200 `" + out[4:strings.Index(out, " HTTP/1.1")] + "`"
}

type lineBackend struct {
	addr string
	mu   sync.Mutex
	seen []string
}

// startLineBackend records the target of each request it gets and answers
// 200 with Connection: close.
func startLineBackend(t *testing.T) *lineBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &lineBackend{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.ReadString('\n')
				for {
					if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
						break
					}
				}
				if f := strings.Fields(line); len(f) == 3 {
					b.mu.Lock()
					b.seen = append(b.seen, f[1])
					b.mu.Unlock()
				}
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}()
		}
	}()
	return b
}

// ask sends GET target through the proxy at addr and returns its status and
// the target the backend got, if any.
func (b *lineBackend) ask(t *testing.T, addr, target string) string {
	b.mu.Lock()
	b.seen = nil
	b.mu.Unlock()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", target)
	line, _ := bufio.NewReader(c).ReadString('\n')
	st := "-"
	if f := strings.Fields(line); len(f) > 1 {
		st = f[1]
	}
	time.Sleep(50 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return st
	}
	return st + " `" + b.seen[0] + "`"
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProxyBinary runs nginx or haproxy (from PATH or /usr/sbin) with conf
// ("DIR" replaced by a temp dir) until the test ends, and waits for addrs.
func startProxyBinary(t *testing.T, name, conf string, addrs ...string) {
	bin, err := exec.LookPath(name)
	if err != nil {
		bin = "/usr/sbin/" + name
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	f := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(conf, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", f)
	if name == "nginx" {
		cmd = exec.Command(bin, "-c", f, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // nginx stops its workers too
		cmd.Wait()
	})
	for _, a := range addrs {
		for i := 0; ; i++ {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if i == 100 {
				t.Fatalf("%s does not listen on %s: %s", name, a, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
