package loop

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialRaw reaches IPv4 and IPv6 listeners; the connection carries bytes
// both ways and obeys deadlines.
func TestDialRaw(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", addr, err)
			continue
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c) // echo
			c.Close()
		}()
		ap := netip.MustParseAddrPort(ln.Addr().String())
		f, err := dialRaw(ap, ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatalf("%s: %v", ap, err)
		}
		if _, err := f.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		f.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("%s: echo %q, %v", ap, buf, err)
		}
		f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := f.Read(buf); !isTimeout(err) {
			t.Fatalf("%s: read with nothing to read: %v, want a timeout", ap, err)
		}
		f.Close()
	}
}

// A refused connect is reported as refused, by the error kind the metrics use.
func TestDialRawRefused(t *testing.T) {
	addr := reserveAddr(t)
	_, err := dialRaw(netip.MustParseAddrPort(addr), addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) || dialErrKind(err) != upRefused {
		t.Fatalf("dial to a closed port: %v (kind %s), want connection refused", err, dialErrKind(err))
	}
}

// A connect that does not complete ends at the timeout: a listener whose
// accept queue is full (backlog 0, never accepting) drops further SYNs.
func TestDialRawTimeout(t *testing.T) {
	_, ap := neverAccepting(t)
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for range 8 {
		start := time.Now()
		f, err := dialRaw(ap, ap.String(), 300*time.Millisecond)
		if err == nil {
			held = append(held, f) // the queue had room; fill it
			continue
		}
		if !isTimeout(err) || dialErrKind(err) != upConnTO {
			t.Fatalf("dial to a full accept queue: %v (kind %s), want a connect timeout", err, dialErrKind(err))
		}
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Fatalf("timed out after %v, want at least the 300 ms timeout", waited)
		}
		return
	}
	t.Skip("this kernel completed every connect to a full accept queue")
}

// neverAccepting returns a listener on 127.0.0.1 with a backlog of 0
// (closed when the test ends) and its address: until the test accepts from
// it, a full accept queue drops further SYNs, and a connect to it stays in
// progress.
func neverAccepting(t *testing.T) (int, netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}
