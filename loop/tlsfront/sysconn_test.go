package tlsfront

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sysConnPair returns a sysConn over one end of a connected pair (TCP on
// loopback, or a Unix socket) and the plain other end.
func sysConnPair(t *testing.T, network string) (*sysConn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	var sc *sysConn
	switch c := c.(type) {
	case *net.TCPConn:
		sc, err = newSysConn(c)
	case *net.UnixConn:
		sc, err = newSysConn(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sc, p
}

func TestSysConn(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			sc, peer := sysConnPair(t, network)

			// A write larger than the socket buffers: partial writes and
			// waits for room, all of it delivered in order.
			big := make([]byte, 8<<20)
			for i := range big {
				big[i] = byte(i * 7)
			}
			got := make(chan []byte)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
				got <- b
			}()
			if n, err := sc.Write(big); n != len(big) || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			if b := <-got; !bytes.Equal(b, big) {
				t.Fatalf("peer got %d bytes, not what was written", len(b))
			}

			// A read waits for input.
			go func() {
				time.Sleep(20 * time.Millisecond)
				peer.Write([]byte("hello"))
			}()
			buf := make([]byte, 64)
			if n, err := sc.Read(buf); err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read: %q, %v", buf[:n], err)
			}

			// The conn's read deadline holds.
			sc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			if _, err := sc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
			}
			// A deadline in the past fails at once, without reading.
			peer.Write([]byte("x"))
			time.Sleep(10 * time.Millisecond)
			sc.SetReadDeadline(time.Unix(1, 0))
			if _, err := sc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read with a past deadline: %v", err)
			}
			sc.SetReadDeadline(time.Time{})
			if n, err := sc.Read(buf); n != 1 || err != nil {
				t.Fatalf("the byte left by the timed-out read: %d, %v", n, err)
			}

			// The peer's end of input is io.EOF; writes to a closed peer fail.
			peer.Close()
			if _, err := sc.Read(buf); err != io.EOF {
				t.Fatalf("read after the peer closed: %v, want io.EOF", err)
			}
			var werr error
			for i := 0; i < 100 && werr == nil; i++ {
				_, werr = sc.Write(make([]byte, 64<<10))
			}
			if werr == nil {
				t.Fatal("writes to a closed peer never failed")
			}

			// Our own Close ends a read with net.ErrClosed.
			sc.Close()
			if _, err := sc.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// A read and a write need no allocation (the callbacks are bound once).
func TestSysConnAllocs(t *testing.T) {
	sc, peer := sysConnPair(t, "unix")
	buf := make([]byte, 16)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := sc.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf[:4]); err != nil {
			t.Fatal(err)
		}
		peer.Write(msg)
		if _, err := sc.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", allocs)
	}
}
