package loop_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/loop/looptest"
	"github.com/wsgate/wsgate/tunnel"
)

// proxy is a wsgate core (loop + balancer + tunnel engine) on a loopback port.
type proxy struct {
	addr   string
	srv    *loop.Server
	engine *tunnel.Engine
	bal    *balancer.Balancer
}

// startProxy starts the proxy in front of backends (host:port); mod adjusts
// the config before it starts.
func startProxy(t testing.TB, backends []string, mod func(*loop.Config, *tunnel.Config)) *proxy {
	t.Helper()
	var bc balancer.Config
	for _, b := range backends {
		c, err := balancer.ParseBackend(b)
		if err != nil {
			t.Fatal(err)
		}
		bc.Backends = append(bc.Backends, c)
	}
	bal, err := balancer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	lc := loop.Config{Listen: []string{"127.0.0.1:0"}, Balancer: bal, Logf: t.Logf}
	var tc tunnel.Config
	if mod != nil {
		mod(&lc, &tc)
	}
	engine, err := tunnel.New(tc)
	if err != nil {
		t.Fatal(err)
	}
	lc.Tunnels = engine
	srv, err := loop.New(lc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: srv.Addrs()[0].String(), srv: srv, engine: engine, bal: bal}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		engine.Close()
	})
	return p
}

func (p *proxy) url(path string) string { return "http://" + p.addr + path }
func (p *proxy) wsURL(path string) string {
	return "ws://" + p.addr + path
}

// backendActive is the live count of the backend with address addr.
func (p *proxy) backendActive(addr string) int64 {
	for _, pool := range p.bal.Pools() {
		for _, b := range pool.Backends() {
			if b.Addr() == addr {
				return b.Active()
			}
		}
	}
	return -1
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpBackend starts a net/http backend; its address is host:port.
func httpBackend(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// wsEchoBackend echoes WebSocket messages; when hello is set it first sends
// "hello from <name>".
func wsEchoBackend(t testing.TB, name string, hello bool) string {
	return httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if hello {
			c.WriteMessage(websocket.TextMessage, []byte("hello from "+name))
		}
		for {
			mt, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, m); err != nil {
				return
			}
		}
	}))
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

func handshake(host, path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// maskedFrame is a client text frame (masked, as RFC 6455 requires).
func maskedFrame(payload string) []byte {
	if len(payload) > 125 {
		panic("short frames only")
	}
	mask := [4]byte{1, 2, 3, 4}
	f := []byte{0x81, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(payload) {
		f = append(f, payload[i]^mask[i%4])
	}
	return f
}

// readFrame reads one unmasked server frame with a short payload.
func readFrame(r *bufio.Reader) (op byte, payload string, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	n := int(h[1] & 0x7f)
	if h[1]&0x80 != 0 || n > 125 {
		return 0, "", fmt.Errorf("unexpected frame header % x", h)
	}
	p := make([]byte, n)
	_, err = io.ReadFull(r, p)
	return h[0] & 0x0f, string(p), err
}

// rawBackend: see looptest.RawBackend.
func rawBackend(t testing.TB, fn func(net.Conn)) string { return looptest.RawBackend(t, fn) }

// readHead reads an HTTP head (request or response) from r.
func readHead(r *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := r.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			return sb.String(), err
		}
		if line == "\r\n" {
			return sb.String(), nil
		}
	}
}

// upgrade sends a WebSocket handshake for /ws on a new connection to addr
// and reads the response head; br reads what follows on c.
func upgrade(t testing.TB, addr string) (c net.Conn, br *bufio.Reader, resp *http.Response) {
	t.Helper()
	c = dial(t, addr)
	c.Write([]byte(handshake("x", "/ws")))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br = bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
