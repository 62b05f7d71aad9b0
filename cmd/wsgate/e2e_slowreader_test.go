package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A slow reader must stall the backend, not grow the proxy: with a client
// that stops reading, the proxy may hold at most a few buffers, and the rest
// waits in the backend (kernel buffers on the way are bounded).
const (
	hugeBody    = 1 << 30  // what the backend offers
	rssLimitKiB = 64 << 10 // 64 MiB: the proxy's whole resident set
	stallLimit  = 64 << 20 // 64 MiB: what the backend may get out before it blocks
	stallSlack  = 2 << 20  // growth allowed once stalled (one 1 MiB message in flight, rounding)
)

// stallReport is what watchStall saw.
type stallReport struct {
	who              string // the sender
	baseRSS, peakRSS int64  // KiB
	atSettle, atEnd  int64  // bytes the backend had written
}

// watchStall samples the proxy's RSS and the sender's written count (who:
// the backend, or the client of an upload) every 100 ms for total, noting
// the count once settle has passed.
func watchStall(t *testing.T, who string, pid int, written *atomic.Int64, baseRSS int64, settle, total time.Duration) stallReport {
	t.Helper()
	r := stallReport{who: who, baseRSS: baseRSS, peakRSS: baseRSS}
	start := time.Now()
	settled := false
	for time.Since(start) < total {
		time.Sleep(100 * time.Millisecond)
		rss, err := rssKiB(pid)
		if err != nil {
			t.Fatalf("reading wsgate's RSS: %v", err)
		}
		r.peakRSS = max(r.peakRSS, rss)
		if !settled && time.Since(start) >= settle {
			settled = true
			r.atSettle = written.Load()
		}
	}
	r.atEnd = written.Load()
	t.Logf("wsgate RSS: %d KiB before, %d KiB peak; the %s wrote %d KiB by %v, %d KiB by %v",
		r.baseRSS, r.peakRSS, who, r.atSettle>>10, settle, r.atEnd>>10, total)
	return r
}

func (r stallReport) check(t *testing.T) {
	t.Helper()
	if r.peakRSS >= rssLimitKiB {
		t.Errorf("wsgate's RSS reached %d KiB with a receiver that does not read, want under %d KiB", r.peakRSS, rssLimitKiB)
	}
	if r.atEnd >= stallLimit {
		t.Errorf("the %s got %d MiB out to a receiver that does not read, want under %d MiB (the proxy buffers instead of pushing back)", r.who, r.atEnd>>20, stallLimit>>20)
	}
	if r.atEnd-r.atSettle > stallSlack {
		t.Errorf("the %s kept writing after the receiver stopped reading: %d KiB more between the settle and the end, want at most %d KiB", r.who, (r.atEnd-r.atSettle)>>10, stallSlack>>10)
	}
}

// TestSlowReaderHTTP: a 1 GiB response to a client that reads a few KiB and
// stops: the backend stalls, the proxy stays small, and when the client goes
// away the backend's write fails (the upstream connection is dropped).
func TestSlowReaderHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a large response for several seconds")
	}
	var written atomic.Int64
	handlerDone := make(chan error, 1)
	be := startBackend(t, "big", 64<<10, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(hugeBody))
			w.Header().Set("Content-Type", "application/octet-stream")
			chunk := []byte(strings.Repeat("0123456789abcdef", 2<<10)) // 32 KiB
			for sent := 0; sent < hugeBody; {
				n, err := w.Write(chunk[:min(len(chunk), hugeBody-sent)])
				written.Add(int64(n))
				sent += n
				if err != nil {
					handlerDone <- err
					return
				}
			}
			handlerDone <- nil
		})
	})
	g := startGate(t, "-b", be.addr)
	baseRSS, err := rssKiB(g.pid())
	if err != nil {
		t.Fatal(err)
	}

	c, err := dialSmallRcvBuf(context.Background(), "tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: slow.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	first := make([]byte, 8<<10)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatalf("reading the first 8 KiB of the response: %v", err)
	}
	if !strings.HasPrefix(string(first), "HTTP/1.1 200 ") {
		t.Fatalf("response starts %.60q, want HTTP/1.1 200", first)
	}

	// Stop reading for 5 s.
	watchStall(t, "backend", g.pid(), &written, baseRSS, 2500*time.Millisecond, 5*time.Second).check(t)

	c.Close()
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatalf("the backend wrote the whole 1 GiB body, though the client read 8 KiB and left")
		}
		t.Logf("backend write ended after the client left: %v (%d MiB written)", err, written.Load()>>20)
	case <-time.After(15 * time.Second):
		t.Fatalf("the backend is still writing (or blocked) 15 s after the client closed: the proxy kept the upstream exchange")
	}
	g.waitMetricEq(t, mConnsOpen, 0, 10*time.Second)
	g.waitMetricEq(t, activeMetric(be.addr), 0, 10*time.Second)
}

// TestSlowReaderTunnel: the same through a WebSocket tunnel: the backend
// sends 1 MiB binary messages to a client that never reads.
func TestSlowReaderTunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a tunnel for several seconds")
	}
	var written atomic.Int64
	handlerDone := make(chan error, 1)
	be := startBackend(t, "flood", 64<<10, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
			b.handlers.Add(1)
			defer b.handlers.Done()
			c := b.upgrade(w, r)
			if c == nil {
				return
			}
			defer b.forget(c)
			msg := []byte(strings.Repeat("flood-0123456789", 64<<10)) // 1 MiB
			for sent := 0; sent < hugeBody; sent += len(msg) {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					handlerDone <- err
					return
				}
				written.Add(int64(len(msg)))
			}
			handlerDone <- nil
		})
	})
	g := startGate(t, "-b", be.addr)
	baseRSS, err := rssKiB(g.pid())
	if err != nil {
		t.Fatal(err)
	}

	d := wsDialer
	d.NetDialContext = dialSmallRcvBuf
	c, resp, err := d.Dial("ws://"+g.addr+"/flood", nil)
	if err != nil {
		if resp != nil {
			t.Fatalf("dial: %v (HTTP %s)", err, resp.Status)
		}
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	g.waitMetricEq(t, mTunnelsOpen, 1, 10*time.Second)

	// Never read.
	watchStall(t, "backend", g.pid(), &written, baseRSS, 2500*time.Millisecond, 5*time.Second).check(t)

	// Leave with unread data: the client's kernel resets the connection.
	c.NetConn().(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Fatalf("the backend wrote the whole 1 GiB, though the client never read")
		}
		t.Logf("backend write ended after the client left: %v (%d MiB written)", err, written.Load()>>20)
	case <-time.After(15 * time.Second):
		t.Fatalf("the backend is still writing (or blocked) 15 s after the client closed: the tunnel was not torn down")
	}
	g.waitMetricEq(t, mTunnelsOpen, 0, 10*time.Second)
	g.waitMetricEq(t, activeMetric(be.addr), 0, 10*time.Second)
}
