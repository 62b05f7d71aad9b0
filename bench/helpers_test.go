package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain lets the test binary double as a standalone echo server
// (WSBENCH_ECHO_SERVER=1), so that measurements can keep the server's CPU in
// another process.
func TestMain(m *testing.M) {
	if os.Getenv("WSBENCH_HOLD_SERVER") == "1" {
		holdServerProcess()
		return
	}
	if os.Getenv("WSBENCH_ECHO_SERVER") == "1" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().String())
		srv := &http.Server{Handler: newEchoHandler(nil)}
		go func() { // exit when the parent closes our stdin
			bufio.NewReader(os.Stdin).ReadByte()
			os.Exit(0)
		}()
		srv.Serve(ln)
		return
	}
	os.Exit(m.Run())
}

// echoServer is a gorilla/websocket echo backend on loopback.
type echoServer struct {
	URL string // ws://127.0.0.1:PORT/ws
	mu  sync.Mutex
	ips map[string]int // remote IPs seen; mu must be held
	srv *http.Server
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}

func newEchoHandler(onConn func(r *http.Request)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if onConn != nil {
			onConn(r)
		}
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, p); err != nil {
				return
			}
		}
	})
	return mux
}

// startEcho starts an in-process echo backend, stopped at the end of the test.
func startEcho(t testing.TB) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{URL: "ws://" + ln.Addr().String() + "/ws", ips: map[string]int{}}
	e.srv = &http.Server{Handler: newEchoHandler(func(r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		e.mu.Lock()
		e.ips[host]++
		e.mu.Unlock()
	})}
	go e.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		e.srv.Close()
	})
	return e
}

func (e *echoServer) remoteIPs() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.ips {
		out[k] = v
	}
	return out
}

// startEchoProcess starts the echo backend as a child process (this test
// binary again) and returns its ws:// URL.
func startEchoProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WSBENCH_ECHO_SERVER=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return "ws://" + strings.TrimSpace(line) + "/ws"
}

// quickCfg is a small, bounded config for tests.
func quickCfg(mode Mode, url string) Config {
	return Config{Mode: mode, URL: url, Conns: 4, Duration: 500 * time.Millisecond, ProgressInterval: 100 * time.Millisecond}
}

// refusingAddr returns an address that refuses connections: a socket bound
// to it and not listening, kept until the test ends, so that no one else
// can take the port meanwhile.
func refusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
