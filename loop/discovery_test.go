package loop_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// switchResolver answers every name with the addresses the test sets.
type switchResolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (r *switchResolver) set(as ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = nil
	for _, a := range as {
		r.addrs = append(r.addrs, netip.MustParseAddr(a))
	}
}

func (r *switchResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if host != "app.internal" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return append([]netip.Addr(nil), r.addrs...), nil
}

// serveOn starts an HTTP+WebSocket backend named name on ip:port.
func serveOn(t *testing.T, ip string, port int, name string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte(name))
		for {
			mt, m, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, m) != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s", name, r.Host)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return nil
}

// TestDNSReResolution: a backend given by name follows the resolver's
// answers: requests go to the address it names; when the answer changes,
// new requests go to the new address within an interval, and a tunnel
// opened on the old one keeps working (it drains).
func TestDNSReResolution(t *testing.T) {
	// One port free on both 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback).
	var port int
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 not usable here: %v", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if serveOn(t, "127.0.0.2", port, "two") == nil && serveOn(t, "127.0.0.3", port, "three") == nil {
			break
		}
		if try == 10 {
			t.Fatal("no port free on both addresses")
		}
	}
	res := &switchResolver{}
	res.set("127.0.0.2")
	bc, err := balancer.ParseBackend("app.internal:" + strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	bal, err := balancer.New(balancer.Config{
		Backends: []balancer.BackendConfig{bc}, Resolver: res, DNSInterval: 100 * time.Millisecond, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	bal.Start()
	t.Cleanup(bal.Close)
	engine, err := tunnel.New(tunnel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := loop.New(loop.Config{Listen: []string{"127.0.0.1:0"}, Balancer: bal, Tunnels: engine, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		engine.Close()
	})
	addr := srv.Addrs()[0].String()
	get := func() string {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "two host="+addr {
		t.Fatalf("before: %q", got)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "two" {
		t.Fatalf("tunnel: %q %v", m, err)
	}

	res.set("127.0.0.3")
	changed := time.Now()
	eventually(t, "requests to the new address", func() bool { return get() == "three host="+addr })
	t.Logf("new address in use %v after the answer changed (interval 100ms)", time.Since(changed).Round(time.Millisecond))
	old := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	if bal.Backend("", old) != nil {
		t.Errorf("vanished address still live")
	}
	draining := bal.Draining()
	if len(draining) != 1 || draining[0].Addr() != old || draining[0].Tunnels() != 1 {
		t.Errorf("draining %v, want the old address with its tunnel", draining)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "still" {
		t.Fatalf("tunnel on the vanished address: %q %v", m, err)
	}
	for range 20 {
		if got := get(); got != "three host="+addr {
			t.Fatalf("request after the change went to %q", got)
		}
	}
}
