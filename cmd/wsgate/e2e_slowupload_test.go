package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowBackendUpload is TestSlowReaderHTTP the other way round: a client
// uploads a large body to a backend that reads 8 KiB of it and then stops
// for a while. The client must stall, not the proxy grow; once the backend
// reads again the whole body arrives, byte for byte, and the response too.
// With a Content-Length and chunked.
func TestSlowBackendUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a large upload for several seconds")
	}
	for _, chunked := range []bool{false, true} {
		name := "content-length"
		if chunked {
			name = "chunked"
		}
		t.Run(name, func(t *testing.T) { testSlowUpload(t, chunked) })
	}
}

func testSlowUpload(t *testing.T, chunked bool) {
	const total = 256 << 20
	release := make(chan struct{})
	got := make(chan int64, 1)
	be := startBackend(t, "sink", 0, func(b *testBackend, mux *http.ServeMux) {
		mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.CopyN(io.Discard, r.Body, 8<<10)
			<-release
			m, err := io.Copy(io.Discard, r.Body)
			got <- n + m
			if err != nil {
				return
			}
			fmt.Fprintf(w, "%d", n+m)
		})
	})
	g := startGate(t, "-b", be.addr)
	baseRSS, err := rssKiB(g.pid())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var written atomic.Int64 // body bytes the client got out
	wrote := make(chan error, 1)
	go func() {
		head := "POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: " + strconv.Itoa(total) + "\r\n\r\n"
		if chunked {
			head = "POST /upload HTTP/1.1\r\nHost: slow.test\r\nTransfer-Encoding: chunked\r\n\r\n"
		}
		if _, err := io.WriteString(c, head); err != nil {
			wrote <- err
			return
		}
		chunk := []byte(strings.Repeat("0123456789abcdef", 4<<10)) // 64 KiB
		for sent := 0; sent < total; sent += len(chunk) {
			if chunked {
				if _, err := fmt.Fprintf(c, "%x\r\n", len(chunk)); err != nil {
					wrote <- err
					return
				}
			}
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				wrote <- err
				return
			}
			if chunked {
				if _, err := io.WriteString(c, "\r\n"); err != nil {
					wrote <- err
					return
				}
			}
		}
		if chunked {
			_, err := io.WriteString(c, "0\r\n\r\n")
			wrote <- err
			return
		}
		wrote <- nil
	}()

	// The backend does not read for 5 s: the client must stall.
	watchStall(t, "client", g.pid(), &written, baseRSS, 2500*time.Millisecond, 5*time.Second).check(t)

	close(release)
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("client upload: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the upload did not finish 60 s after the backend read again (%d MiB sent)", written.Load()>>20)
	}
	if n := <-got; n != total {
		t.Fatalf("backend received %d bytes, want %d", n, total)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != strconv.Itoa(total) {
		t.Fatalf("response %d %q, want 200 %d", resp.StatusCode, body, total)
	}
}
