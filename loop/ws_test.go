package loop_test

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

func TestWebSocketEcho(t *testing.T) {
	be := wsEchoBackend(t, "a", true)
	p := startProxy(t, []string{be}, nil)
	c, resp, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The backend's first frame, sent right behind its 101, arrives.
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "hello from a" {
		t.Fatalf("first frame %q, %v", m, err)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rand.IntN(256))
	}
	for _, msg := range [][]byte{[]byte("x"), bytes.Repeat([]byte("ab"), 40000), big} {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
		}
	}
	if n := p.backendActive(be); n != 1 {
		t.Errorf("backend count %d during the tunnel, want 1", n)
	}
	c.Close()
	eventually(t, "backend count back to 0", func() bool { return p.backendActive(be) == 0 })
	eventually(t, "tunnels closed", func() bool { return p.engine.Len() == 0 })
}

func TestFrameInSameWriteAsHandshake(t *testing.T) {
	be := wsEchoBackend(t, "a", false)
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr)
	c.Write(append([]byte(handshake("x", "/ws")), maskedFrame("pipelined")...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	head, err := readHead(br)
	if err != nil || !strings.HasPrefix(head, "HTTP/1.1 101 ") || !strings.Contains(head, acceptKey(testKey)) {
		t.Fatalf("head %q, %v", head, err)
	}
	if _, m, err := readFrame(br); err != nil || m != "pipelined" {
		t.Fatalf("echo %q, %v", m, err)
	}
}

func TestUpgradeDeclinedIsForwardedAndNotTunnelled(t *testing.T) {
	for _, status := range []int{200, 400, 426} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var after atomic.Int64 // bytes the backend got after its answer
			be := rawBackend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := readHead(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 "+itoa(status)+" "+http.StatusText(status)+"\r\nContent-Length: 2\r\n\r\nno")
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _ := io.Copy(io.Discard, br)
				after.Add(n)
			})
			p := startProxy(t, []string{be}, nil)
			c := dial(t, p.addr)
			c.Write([]byte(handshake("x", "/ws")))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != status || string(body) != "no" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			c.Write(maskedFrame("must not reach the backend"))
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("after a declined upgrade the client got %q", rest)
			}
			time.Sleep(300 * time.Millisecond)
			if n := after.Load(); n != 0 {
				t.Errorf("backend received %d bytes after declining", n)
			}
		})
	}
}

func TestBadAcceptIs502(t *testing.T) {
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		readHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")
		io.Copy(io.Discard, br)
	})
	p := startProxy(t, []string{be}, nil)
	_, _, resp := upgrade(t, p.addr)
	if resp.StatusCode != 502 {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	eventually(t, "backend released", func() bool { return p.backendActive(be) == 0 })
}

// A FIN from the client becomes a FIN toward the backend, and the backend
// can still answer.
func TestHalfClose(t *testing.T) {
	gotEOF := make(chan struct{})
	be := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptKey(testKey)+"\r\n\r\n")
		rest, err := io.ReadAll(br) // until the client's FIN arrives
		if err != nil || string(rest) != "up" {
			return
		}
		close(gotEOF)
		io.WriteString(c, "still here")
		c.(*net.TCPConn).CloseWrite()
	})
	p := startProxy(t, []string{be}, nil)
	c := dial(t, p.addr).(*net.TCPConn)
	c.Write([]byte(handshake("x", "/ws")))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if head, err := readHead(br); err != nil || !strings.HasPrefix(head, "HTTP/1.1 101") {
		t.Fatalf("%q %v", head, err)
	}
	c.Write([]byte("up"))
	c.CloseWrite()
	select {
	case <-gotEOF:
	case <-time.After(10 * time.Second):
		t.Fatal("backend never saw the client's FIN")
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "still here" {
		t.Errorf("after half-close got %q, %v", rest, err)
	}
	eventually(t, "tunnel closed", func() bool { return p.engine.Len() == 0 && p.backendActive(be) == 0 })
}

func TestTunnelIdleTimeout(t *testing.T) {
	be := wsEchoBackend(t, "a", false)
	p := startProxy(t, []string{be}, func(_ *loop.Config, tc *tunnel.Config) {
		tc.IdleTimeout = 400 * time.Millisecond
		tc.Tick = 50 * time.Millisecond
	})
	c, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("read succeeded on an idle tunnel")
	} else if time.Since(start) > 9*time.Second {
		t.Fatalf("tunnel not closed by the idle timeout: %v", err)
	}
	eventually(t, "backend released", func() bool { return p.backendActive(be) == 0 })
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for n > 0 || i == len(b) {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// A client may send frames the moment it has the 101. Those bytes must
// never be lost at the switch from netpoll to the tunnel engine, however
// the timing falls: many handshakes, each sending at once.
func TestFrameRightAfter101IsNeverLost(t *testing.T) {
	be := wsEchoBackend(t, "a", true)
	p := startProxy(t, []string{be}, nil)
	n := 300
	if testing.Short() {
		n = 50
	}
	for i := range n {
		c := dial(t, p.addr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(handshake("x", "/ws")))
		br := bufio.NewReader(c)
		if head, err := readHead(br); err != nil || !strings.HasPrefix(head, "HTTP/1.1 101 ") {
			t.Fatalf("handshake %d: %q %v", i, head, err)
		}
		c.Write(maskedFrame("right away")) // no pause after the 101
		if _, m, err := readFrame(br); err != nil || m != "hello from a" {
			t.Fatalf("handshake %d: first frame %q, %v", i, m, err)
		}
		if _, m, err := readFrame(br); err != nil || m != "right away" {
			t.Fatalf("handshake %d: the frame sent right after the 101 was lost: %q, %v", i, m, err)
		}
		c.Close()
	}
}
