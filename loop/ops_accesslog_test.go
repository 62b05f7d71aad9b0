package loop

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/accesslog"
	"github.com/wsgate/wsgate/tunnel"
	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// recordServer is a Server with what the record needs (metrics, the
// access log when alog is set, a tunnel engine) and one backend, picked.
func recordServer(t *testing.T, alog *accesslog.Log) (*Server, *balancer.Pool, *balancer.Backend) {
	t.Helper()
	bal, err := balancer.New(balancer.Config{Backends: []balancer.BackendConfig{{Addr: "127.0.0.1:1"}}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bal.Close)
	engine, err := tunnel.New(tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	pool := bal.Pools()[0]
	b := pool.Pick(nil)
	if b == nil {
		t.Fatal("no backend picked")
	}
	return &Server{cfg: Config{AccessLog: alog, Tunnels: engine}, m: newServerMetrics()}, pool, b
}

// recordedExchange is an exchange whose head was read and recorded.
func recordedExchange(t *testing.T, s *Server, head string) *exchange {
	t.Helper()
	ex := exchanges.Get().(*exchange)
	if err := ex.req.Parse([]byte(head), &http1.Limits{MaxHeaderBytes: 1 << 10}); err != nil {
		t.Fatal(err)
	}
	s.recordHead(ex, []byte(head))
	return ex
}

// dupOf is a duplicate of c's socket, as the proxy hands the engine one.
func dupOf(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(s uintptr) { fd, err = rawsys.Dup(int(s)) })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return fd
}

// TestRecordLines: a request's line and a tunnel's close line carry the
// exchange's facts, in the documented order (record.go); the tunnel's line
// comes after the backend's tunnel count is released.
func TestRecordLines(t *testing.T) {
	var buf bytes.Buffer
	alog := accesslog.New(&buf, 0)
	s, pool, b := recordServer(t, alog)
	cc := &clientConn{fwd: http1.Forward{ClientIP: []byte("10.0.0.7")}}

	ex := recordedExchange(t, s, "POST /a?b=\"c\" HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n")
	ex.rec.pool, ex.rec.backend, ex.rec.upstream = pool, b, true
	ex.resp.ContentLength = 1234
	cc.status = 200
	s.exchangeDone(cc, ex)
	if ex.rec.parsed || cc.status != 0 {
		t.Fatal("record not reset")
	}

	ex = recordedExchange(t, s, "GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n")
	ex.rec.pool = pool
	done := s.tunnelDone(cc, ex, b, 129)
	ex.rec.reset() // the exchange is reused before the tunnel ends
	clientSide, proxyClient := tcpPair(t)
	backendSide, proxyBackend := tcpPair(t)
	if err := s.addTunnel(b, dupOf(t, proxyClient), dupOf(t, proxyBackend), []byte("hello"), make([]byte, 129), done); err != nil {
		t.Fatal(err)
	}
	if b.Tunnels() != 1 || b.Active() != 1 {
		t.Fatalf("live tunnel: tunnels %d, active %d, want 1 and 1", b.Tunnels(), b.Active())
	}
	io.ReadFull(clientSide, make([]byte, 129))
	io.ReadFull(backendSide, make([]byte, 5))
	clientSide.Close()
	backendSide.Close()
	waitUntil(t, "the tunnel's line", func() bool { return alog.Written() == 2 })
	if b.Tunnels() != 0 || b.Active() != 0 {
		t.Fatalf("closed tunnel: tunnels %d, active %d, want 0 and 0", b.Tunnels(), b.Active())
	}
	alog.Close()

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	const ts = `\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"`
	for i, want := range []string{
		ts + `,"type":"request","client":"10\.0\.0\.7","method":"POST","host":"example\.com","path":"/a\?b=\\"c\\"","status":200,"pool":"default","backend":"127\.0\.0\.1:1","duration_ms":\d+\.\d{3},"bytes_in":5,"bytes_out":1234\}`,
		ts + `,"type":"tunnel","client":"10\.0\.0\.7","host":"example\.com","path":"/ws","pool":"default","backend":"127\.0\.0\.1:1","duration_ms":\d+\.\d{3},"bytes_in":5,"bytes_out":0,"reason":"[a-z_]+"\}`,
	} {
		if !regexp.MustCompile("^" + want + "$").MatchString(lines[i]) {
			t.Errorf("line %d:\n%s\nwant\n%s", i, lines[i], want)
		}
		if !json.Valid([]byte(lines[i])) {
			t.Errorf("line %d is not JSON", i)
		}
	}
}

// TestTunnelCount: the tunnel count addTunnel takes is released once: by
// the done callback when the tunnel ends (with or without a log), or at
// once when the engine refuses the pair.
func TestTunnelCount(t *testing.T) {
	s, pool, b := recordServer(t, nil)
	cc := &clientConn{fwd: http1.Forward{ClientIP: []byte("10.0.0.7")}}
	ex := recordedExchange(t, s, "GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n")
	done := s.tunnelDone(cc, ex, b, 0)
	if err := s.addTunnel(b, -1, -1, nil, nil, done); err == nil {
		t.Fatal("the engine took bad fds")
	}
	if b.Tunnels() != 0 || b.Active() != 0 || b.Underflows() != 0 {
		t.Fatalf("refused tunnel: tunnels %d, active %d, underflows %d, want 0, 0, 0", b.Tunnels(), b.Active(), b.Underflows())
	}

	b = pool.Pick(nil)
	clientSide, proxyClient := tcpPair(t)
	backendSide, proxyBackend := tcpPair(t)
	if err := s.addTunnel(b, dupOf(t, proxyClient), dupOf(t, proxyBackend), nil, nil, done); err != nil {
		t.Fatal(err)
	}
	if b.Tunnels() != 1 || b.Active() != 1 {
		t.Fatalf("live tunnel: tunnels %d, active %d, want 1 and 1", b.Tunnels(), b.Active())
	}
	clientSide.Close()
	backendSide.Close()
	waitUntil(t, "the tunnel's release", func() bool { return b.Tunnels() == 0 && b.Active() == 0 })
	time.Sleep(10 * time.Millisecond)
	if b.Underflows() != 0 {
		t.Fatalf("%d extra releases", b.Underflows())
	}
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
