package loop_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// captured is one request as a capturing backend read it. Complete is false
// when the connection ended (or sent garbage) before the request and its body
// were whole; Raw then holds what came.
type captured struct {
	Method, Target string
	Header         http.Header
	Body           string
	Complete       bool
	Raw            string // the bytes of an incomplete request
}

// captureBackend is a backend that records every request it gets, parsed by
// net/http (so what it logs is what a Go backend would see), and answers each
// complete one with 200 "ok".
type captureBackend struct {
	addr string
	mu   sync.Mutex
	reqs []captured
}

func newCaptureBackend(t testing.TB) *captureBackend {
	cb := &captureBackend{}
	cb.addr = rawBackend(t, func(c net.Conn) {
		var raw bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &raw))
		for {
			raw.Reset()
			req, err := http.ReadRequest(br)
			if err != nil {
				if raw.Len() > 0 { // a connection closed between requests is not one
					cb.add(captured{Raw: raw.String() + readRest(br)})
				}
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				cb.add(captured{Method: req.Method, Target: req.RequestURI, Header: req.Header, Raw: raw.String()})
				return
			}
			cb.add(captured{Method: req.Method, Target: req.RequestURI, Header: req.Header, Body: string(body), Complete: true})
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return cb
}

func readRest(br *bufio.Reader) string {
	b, _ := br.Peek(br.Buffered())
	return string(b)
}

func (cb *captureBackend) add(r captured) {
	cb.mu.Lock()
	cb.reqs = append(cb.reqs, r)
	cb.mu.Unlock()
}

func (cb *captureBackend) n() int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return len(cb.reqs)
}

func (cb *captureBackend) since(k int) []captured {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]captured(nil), cb.reqs[k:]...)
}

// sync sends a probe request through the proxy on a fresh connection and
// waits until the backend logged it; whatever the proxy forwarded before is
// logged by then. It returns the requests logged since k, without the probe.
func (cb *captureBackend) sync(t testing.TB, proxyAddr string, k int) []captured {
	t.Helper()
	probe := fmt.Sprintf("/probe-%d", time.Now().UnixNano())
	c := dial(t, proxyAddr)
	io.WriteString(c, "GET "+probe+" HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("probe: %v", err)
	}
	var got []captured
	eventually(t, "the probe to reach the backend", func() bool {
		got = got[:0]
		seen := false
		for _, r := range cb.since(k) {
			if r.Target == probe {
				seen = true
				continue
			}
			got = append(got, r)
		}
		return seen
	})
	return got
}

// rawExchange writes raw to a new connection to addr, then reads until the
// proxy closes it (or the deadline). It returns the first response parsed by
// net/http, everything read, and the read error (nil at EOF).
func rawExchange(t testing.TB, addr, raw string, head bool) (*http.Response, string, error) {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, err := io.ReadAll(c)
	var req *http.Request
	if head {
		req = &http.Request{Method: "HEAD"}
	}
	resp, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), req)
	if perr != nil {
		return nil, string(all), fmt.Errorf("no response in %q (read error %v): %w", all, err, perr)
	}
	return resp, string(all), err
}

// responses parses all responses in b (bodies read).
func responses(b string) ([]*http.Response, []string, error) {
	br := bufio.NewReader(strings.NewReader(b))
	var rs []*http.Response
	var bodies []string
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return rs, bodies, nil
		}
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return rs, bodies, err
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return rs, bodies, err
		}
		rs = append(rs, r)
		bodies = append(bodies, string(body))
	}
}
