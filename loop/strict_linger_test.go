package loop_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
)

// A client that keeps sending after its request was refused still reads the
// answer: the proxy shuts down its sending side and discards input for a
// while instead of closing at once (a close with unread input sends RST,
// which destroys the response in flight).
func TestStrictLingeringCloseDeliversRejection(t *testing.T) {
	p, cb := strictProxy(t, func(c *loop.Config) { c.MaxBodyBytes = 1 << 20 })
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, far more than the socket buffers hold
	cases := []struct {
		name   string
		head   string
		status int
	}{
		{"Content-Length over --max-body-bytes", fmt.Sprintf("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)), 413},
		{"chunked over --max-body-bytes", "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n", len(body)), 413},
		{"bad head, then more requests", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 5 {
				k := cb.n()
				c := dial(t, p.addr)
				// The naive client: write everything, and only then read.
				c.SetDeadline(time.Now().Add(20 * time.Second))
				var werr error
				if _, werr = c.Write([]byte(tc.head)); werr == nil {
					_, werr = c.Write(body)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("round %d: no answer (write error %v): %v", round, werr, err)
				}
				if resp.StatusCode != tc.status || !resp.Close {
					t.Fatalf("round %d: status %d close %v, want %d and close", round, resp.StatusCode, resp.Close, tc.status)
				}
				c.Close()
				if werr != nil {
					t.Logf("round %d: write error %v (the answer still arrived)", round, werr)
				}
				if got := cb.sync(t, p.addr, k); len(got) != 0 {
					t.Errorf("forwarded: %d requests", len(got))
				}
			}
		})
	}
}

// The lingering close is bounded: a client that never stops sending is cut
// off (here within lingerMax, 5 s, plus slack) and the connection counted
// closed.
func TestStrictLingerIsBounded(t *testing.T) {
	p, _ := strictProxy(t, nil)
	c := dial(t, p.addr)
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // 400: no Host
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		chunk := []byte(strings.Repeat("x", 1024))
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(chunk); err != nil && !isTimeoutErr(err) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("answer: %v", err)
	}
	eventually := func(d time.Duration, cond func() bool) bool {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if cond() {
				return true
			}
		}
		return false
	}
	if !eventually(20*time.Second, func() bool { return p.srv.OpenConns() == 0 }) {
		t.Fatalf("connection of a client that never stops sending still open: %d", p.srv.OpenConns())
	}
	var ne net.Error
	_ = ne
}

// Pipelined behind a large response, a bad request is answered after that
// response; the client, reading slowly and still sending, gets both whole.
// Closed at once, the connection would be reset while most of the large
// response still waits in the proxy's socket buffer, and that is lost.
func TestStrictLingerKeepsQueuedResponses(t *testing.T) {
	const size = 8 << 20
	be := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(bytes.Repeat([]byte("x"), size))
	}))
	p := startProxy(t, []string{be}, nil)
	for round := range 5 {
		c := dial(t, p.addr)
		c.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\n\r\n")) // the second has no Host: 400
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // the client goes on sending (a body, more requests)
			defer close(done)
			junk := bytes.Repeat([]byte("y"), 1024)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := c.Write(junk); err != nil {
					return
				}
			}
		}()
		time.Sleep(300 * time.Millisecond) // a slow reader: let the proxy's buffers fill
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReaderSize(c, 64<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("round %d: first response: %v", round, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != size {
			t.Fatalf("round %d: large response: %d of %d bytes, %v", round, n, size, err)
		}
		resp, err = http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("round %d: second response: %v", round, err)
		}
		close(stop)
		c.Close()
		<-done
	}
}
