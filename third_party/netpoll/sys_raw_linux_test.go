// wsgate patch tests (patch 6, sys_raw_linux.go: a connection's accept,
// TCP_NODELAY and close as raw system calls).

package netpoll

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func fdOpen(fd int) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if e != 0 {
		return e
	}
	return nil
}

// netFD.Close closes the socket once: the number is closed after it (fcntl
// F_GETFD answers EBADF), the peer reads EOF, and a second Close is a no-op
// that leaves alone whatever the number has become meanwhile.
func TestCloseRawClosesOnce(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fds[0], fds[1]
	defer syscall.Close(b)
	nfd := &netFD{fd: a, network: "unix"}
	if err := nfd.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := fdOpen(a); err != syscall.EBADF {
		t.Fatalf("fcntl(%d, F_GETFD) after Close: %v, want EBADF", a, err)
	}
	var buf [1]byte
	if n, err := syscall.Read(b, buf[:]); n != 0 || err != nil {
		t.Fatalf("peer read after Close: %d, %v; want EOF (0, nil)", n, err)
	}
	// The number reused (as it would be by the next accept), then Close again.
	other, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(other)
	if err := syscall.Dup2(other, a); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(a)
	if err := nfd.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := fdOpen(a); err != nil {
		t.Fatalf("second Close closed fd %d, now another socket: %v", a, err)
	}
	// closeRaw reports close(2)'s error.
	if err := closeRaw(-1); err != syscall.EBADF {
		t.Fatalf("closeRaw(-1): %v, want EBADF", err)
	}
}

// acceptRaw decodes the peer's address as syscall.Accept would (compared
// with syscall.Getpeername, which decodes with syscall's own code), for
// TCP over IPv4 and IPv6 and for unix sockets (an unnamed client is "@"),
// and answers EAGAIN, which the listener turns into (nil, nil), when no
// connection is pending.
func TestAcceptRawAddr(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ network, addr string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
		{"unix", filepath.Join(dir, "s")},
		{"unix", "@wsgate-netpoll-accept-" + strings.ReplaceAll(dir, "/", "-")},
	} {
		ln, err := CreateListener(c.network, c.addr)
		if err != nil {
			if c.network == "tcp6" {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		if conn, err := ln.Accept(); conn != nil || err != nil {
			t.Fatalf("%s: Accept with none pending: %v, %v; want nil, nil", c.network, conn, err)
		}
		fd := ln.(*listener).fd
		if _, _, err := acceptRaw(fd); err != syscall.EAGAIN {
			t.Fatalf("%s: acceptRaw with none pending: %v, want EAGAIN", c.network, err)
		}
		var d net.Dialer
		if c.network == "unix" && !strings.HasPrefix(c.addr, "@") {
			// A named client, so the unix case checks a path too.
			d.LocalAddr = &net.UnixAddr{Net: "unix", Name: filepath.Join(dir, "client")}
		}
		cc, err := d.Dial(c.network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var conn net.Conn
		for end := time.Now().Add(5 * time.Second); conn == nil && err == nil && time.Now().Before(end); {
			if conn, err = ln.Accept(); conn == nil && err == nil {
				time.Sleep(time.Millisecond)
			}
		}
		if conn == nil {
			t.Fatalf("%s: nothing accepted: %v", c.network, err)
		}
		nfd := conn.(Conn).Fd()
		psa, err := syscall.Getpeername(nfd)
		if err != nil {
			t.Fatal(err)
		}
		got, want := conn.RemoteAddr().String(), sockaddrToAddr(psa).String()
		if got != want {
			t.Fatalf("%s: accepted peer %q, getpeername %q", c.network, got, want)
		}
		if c.network != "unix" && got != cc.LocalAddr().String() {
			t.Fatalf("%s: accepted peer %q, client's own address %q", c.network, got, cc.LocalAddr())
		}
		t.Logf("%s: peer %q", c.network, got)
		conn.Close()
		cc.Close()
		ln.Close()
	}
}

// tracedSyscalls runs f under the execution tracer and returns the stacks
// of the system calls the scheduler saw (the "Running->Syscall"
// transitions of go tool trace -d=parsed), one string per call.
func tracedSyscalls(t *testing.T, f func()) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			t.Skip("no go command to read the execution trace with (go tool trace)")
		}
	}
	if trace.IsEnabled() {
		t.Skip("the execution tracer is already running (go test -trace)")
	}
	out := filepath.Join(t.TempDir(), "trace.out")
	tf, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(tf); err != nil {
		t.Fatal(err)
	}
	func() {
		defer trace.Stop()
		f()
	}()
	tf.Close()
	cmd := exec.Command(goTool, "tool", "trace", "-d=parsed", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	parsed, err := cmd.Output()
	if err != nil {
		t.Skipf("go tool trace -d=parsed: %v: %s", err, stderr.Bytes())
	}
	var stacks []string
	var cur *strings.Builder
	flush := func() {
		if cur != nil {
			stacks = append(stacks, cur.String())
			cur = nil
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(parsed))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Running->Syscall"):
			flush()
			cur = &strings.Builder{}
		case cur != nil && (strings.HasPrefix(line, "\t") || strings.HasSuffix(line, "Stack=")):
			cur.WriteString(line)
			cur.WriteByte('\n')
		default:
			flush()
		}
	}
	flush()
	return stacks
}

// controlClose is syscall.Close, traced as the detector's control.
//
//go:noinline
func controlClose(fd int) { syscall.Close(fd) }

// A netpoll server's connections are accepted, set up (TCP_NODELAY) and
// closed without a system call the scheduler sees (each entersyscall woke
// the runtime's sysmon from its idle sleep): under the execution tracer, no
// system call's stack has netpoll's listener Accept, setTCPNoDelay or
// netFD.Close in it, for connections closed by the client and by the
// server. Control in the same trace: syscall.Close, so the test cannot pass
// by seeing nothing. Fails with patch 6 reverted.
func TestPerConnectionSyscallsRaw(t *testing.T) {
	const conns = 8
	var closed int32
	done := make(chan struct{}, 2*conns)
	stacks := tracedSyscalls(t, func() {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		controlClose(fds[0])
		controlClose(fds[1])

		ln, err := CreateListener("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
			r := c.Reader()
			b, err := r.Next(r.Len())
			if err != nil {
				return err
			}
			if len(b) > 0 && b[0] == 'x' { // the server closes
				c.Writer().WriteBinary(b)
				c.Writer().Flush()
				return c.Close()
			}
			c.Writer().WriteBinary(b)
			return c.Writer().Flush()
		}, WithOnPrepare(func(c Connection) context.Context {
			c.AddCloseCallback(func(Connection) error {
				atomic.AddInt32(&closed, 1)
				done <- struct{}{}
				return nil
			})
			return context.Background()
		}))
		if err != nil {
			t.Fatal(err)
		}
		go loop.Serve(ln)
		defer loop.Shutdown(context.Background())
		for i := 0; i < 2*conns; i++ {
			cc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("ping")
			if i%2 == 1 {
				msg[0] = 'x'
			}
			cc.SetDeadline(time.Now().Add(5 * time.Second))
			cc.Write(msg)
			if _, err := io.ReadFull(cc, msg); err != nil {
				t.Fatal(err)
			}
			if i%2 == 1 {
				if n, err := cc.Read(msg); n != 0 || err != io.EOF {
					t.Fatalf("server's close: the client read %d, %v; want EOF", n, err)
				}
			}
			cc.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("connection %d: the server did not close it", i)
			}
		}
	})
	var control int
	var bad []string
	kinds := map[string]int{}
	for _, s := range stacks {
		switch {
		case strings.Contains(s, "controlClose"):
			control++
		case strings.Contains(s, "netpoll.(*listener).Accept"):
			kinds["accept"]++
			bad = append(bad, s)
		case strings.Contains(s, "netpoll.setTCPNoDelay"):
			kinds["TCP_NODELAY"]++
			bad = append(bad, s)
		case strings.Contains(s, "netpoll.(*netFD).Close"):
			kinds["close"]++
			bad = append(bad, s)
		}
	}
	if control == 0 {
		t.Fatalf("the trace shows no system call for the control syscall.Close: the detector sees nothing (go tool trace output format changed?)")
	}
	if n := atomic.LoadInt32(&closed); n != 2*conns {
		t.Fatalf("%d connections closed, want %d", n, 2*conns)
	}
	if len(bad) > 0 {
		t.Fatalf("system calls through the scheduler on %d connections: %v, e.g.:\n%s", 2*conns, kinds, bad[0])
	}
}
