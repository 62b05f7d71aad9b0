// wsgate patch tests (patch 3, sys_nonblock_linux.go: the socket made
// non-blocking with raw fcntl calls).

package netpoll

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"strings"
	"syscall"
	"testing"
	"time"
)

func fdFlags(t *testing.T, fd int) int {
	t.Helper()
	fl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 {
		t.Fatalf("fcntl(%d, F_GETFL): %v", fd, e)
	}
	return int(fl)
}

// flagListener records the file status flags of each accepted socket as
// netpoll's accept(2) returns it, before the connection is set up.
type flagListener struct {
	Listener
	t     *testing.T
	flags chan int
}

func (l *flagListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.flags <- fdFlags(l.t, c.(Conn).Fd())
	}
	return c, err
}

// An accepted connection's socket is non-blocking once netpoll has set it
// up (its own accept(2) returns it blocking), and its other flags are
// kept. Without any non-blocking call this fails; see also
// TestNonblockWithoutSyscall for what tells the raw call from upstream's.
func TestAcceptedConnNonblocking(t *testing.T) {
	inner, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &flagListener{Listener: inner, t: t, flags: make(chan int, 4)}
	prepared := make(chan int, 4)
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		r.Skip(r.Len())
		return r.Release()
	}, WithOnPrepare(func(c Connection) context.Context {
		prepared <- fdFlags(t, c.(Conn).Fd())
		return context.Background()
	}))
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	defer loop.Shutdown(context.Background())
	nc, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var before, after int
	for i, p := range []*int{&before, &after} {
		select {
		case *p = <-[]chan int{ln.flags, prepared}[i]:
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted")
		}
	}
	if before&syscall.O_NONBLOCK != 0 {
		t.Logf("accept(2) returned a non-blocking socket already (flags %#x): the check below proves less", before)
	}
	if after&syscall.O_NONBLOCK == 0 {
		t.Fatalf("accepted socket's flags %#x once set up: O_NONBLOCK not set", after)
	}
	if after&^syscall.O_NONBLOCK != before&^syscall.O_NONBLOCK {
		t.Fatalf("flags %#x before, %#x after: more than O_NONBLOCK changed", before, after)
	}
	// A socket already non-blocking is left as it is.
	var fds [2]int
	if fds, err = syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	fl := fdFlags(t, fds[0])
	setNonblockRaw(fds[0])
	if got := fdFlags(t, fds[0]); got != fl {
		t.Fatalf("flags %#x of a non-blocking socket became %#x", fl, got)
	}
}

// controlSetNonblock is upstream's call, traced as the detector's control.
//
//go:noinline
func controlSetNonblock(fd int) { syscall.SetNonblock(fd, true) }

// Setting a connection up makes its socket non-blocking without a system
// call the scheduler sees (no entersyscall, which woke the runtime's
// sysmon from its idle sleep on every accepted connection): the execution
// tracer records every such call with its stack, and none made by
// connection.init is an fcntl. The same trace must show the control,
// upstream's syscall.SetNonblock, so the test cannot pass by seeing
// nothing. Fails with patch 3 reverted (init calling syscall.SetNonblock).
func TestNonblockWithoutSyscall(t *testing.T) {
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
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	socketpair := func() (int, int) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			trace.Stop()
			t.Fatal(err)
		}
		return fds[0], fds[1]
	}
	a, b := socketpair()
	controlSetNonblock(a)
	syscall.Close(a)
	syscall.Close(b)
	var nonblocking []int
	for i := 0; i < 8; i++ {
		a, b := socketpair()
		if fdFlags(t, a)&syscall.O_NONBLOCK != 0 {
			nonblocking = append(nonblocking, a)
		}
		c := &connection{}
		c.init(&netFD{fd: a, network: "unix"}, nil)
		if fdFlags(t, a)&syscall.O_NONBLOCK == 0 {
			trace.Stop()
			t.Fatalf("connection.init left fd %d blocking", a)
		}
		c.Close()
		syscall.Close(b)
	}
	trace.Stop()
	f.Close()
	if len(nonblocking) > 0 {
		t.Fatalf("socketpair returned non-blocking fds %v", nonblocking)
	}

	cmd := exec.Command(goTool, "tool", "trace", "-d=parsed", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	parsed, err := cmd.Output()
	if err != nil {
		t.Skipf("go tool trace -d=parsed: %v: %s", err, stderr.Bytes())
	}
	// Each "Running->Syscall" transition is followed by its stacks, one
	// tab-indented line per frame.
	var control, inInit int
	var stacks []string
	sc := bufio.NewScanner(bytes.NewReader(parsed))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur *strings.Builder
	flush := func() {
		if cur == nil {
			return
		}
		s := cur.String()
		if strings.Contains(s, "controlSetNonblock") {
			control++
		}
		if strings.Contains(s, "netpoll.(*connection).init") && strings.Contains(s, "fcntl") {
			inInit++
			stacks = append(stacks, s)
		}
		cur = nil
	}
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
	if control == 0 {
		t.Fatalf("the trace shows no system call for the control syscall.SetNonblock: the detector sees nothing (go tool trace output format changed?)")
	}
	if inInit > 0 {
		t.Fatalf("connection.init entered %d fcntl system calls through the scheduler (upstream's syscall.SetNonblock), e.g.:\n%s", inInit, stacks[0])
	}
}
