package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	for _, tc := range validRequests {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range invalidRequests {
		if len(tc.raw) < 4096 {
			f.Add([]byte(tc.raw))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := r.Parse(data, nil)
		// A prefix answers ErrNeedMore or the same.
		for _, k := range []int{len(data) / 2, len(data) - 1} {
			if k < 0 {
				continue
			}
			var p Request
			if perr := p.Parse(data[:k:k], nil); perr != ErrNeedMore && perr != err {
				t.Fatalf("prefix %d: %v, whole: %v", k, perr, err)
			}
		}
		if err != nil {
			if err != ErrNeedMore {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("not an *Error: %v", err)
				}
			}
			return
		}
		if r.HeadLen > len(data) || r.HeadLen > DefaultMaxHeaderBytes {
			t.Fatalf("HeadLen %d", r.HeadLen)
		}
		compareWithNetHTTP(t, data)

		// The rewritten head parses (ours and net/http) with the same framing.
		for _, fw := range []*Forward{
			{ClientIP: []byte("192.0.2.1"), Proto: "http"},
			{ClientIP: []byte("2001:db8::1"), Proto: "https", Trusted: true},
		} {
			dst := make([]byte, 0, MaxAppendRequest(&r, fw))
			out := AppendRequest(dst, data, &r, fw)
			if len(out) > cap(dst) {
				t.Fatalf("AppendRequest over its bound: %d > %d", len(out), cap(dst))
			}
			checkForwardedPath(t, data, &r, out)
			if r.N > MaxHeaders-8 {
				// We add up to 7 headers; our own parser would say 431.
				if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out))); err != nil {
					t.Fatalf("net/http rejects rewritten head: %v\n%q", err, out)
				}
				continue
			}
			var o Request
			if err := o.Parse(out, &Limits{MaxHeaderBytes: 1 << 20}); err != nil {
				t.Fatalf("rewritten head rejected: %v\n%q\nfrom %q", err, out, data)
			}
			if o.Chunked != r.Chunked || o.ContentLength != r.ContentLength || o.WebSocket != r.WebSocket ||
				!bytes.EqualFold(o.Host.Of(out), r.Host.Of(data)) {
				t.Fatalf("rewrite changed meaning:\n%q\n%q", data[:r.HeadLen], out)
			}
			if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out))); err != nil {
				t.Fatalf("net/http rejects rewritten head: %v\n%q", err, out)
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, tc := range validResponses {
		f.Add([]byte(tc.raw))
	}
	for _, tc := range invalidResponses {
		if len(tc.raw) < 4096 {
			f.Add([]byte(tc.raw))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Response
		err := r.Parse(data, nil)
		if k := len(data) / 2; true {
			var p Response
			if perr := p.Parse(data[:k:k], nil); perr != ErrNeedMore && perr != err {
				t.Fatalf("prefix %d: %v, whole: %v", k, perr, err)
			}
		}
		if err != nil {
			if err != ErrNeedMore && StatusOf(err) != 502 {
				t.Fatalf("response error with status %d: %v", StatusOf(err), err)
			}
			return
		}
		hr, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(data[:r.HeadLen])), nil)
		if herr != nil {
			t.Fatalf("we accept, net/http rejects %q: %v", data[:r.HeadLen], herr)
		}
		if hr.StatusCode != r.Status || hr.ProtoMinor != r.Minor {
			t.Fatalf("status: net/http %d 1.%d, we %d 1.%d", hr.StatusCode, hr.ProtoMinor, r.Status, r.Minor)
		}
		switch r.Body(false) {
		case BodyChunked:
			if len(hr.TransferEncoding) != 1 || hr.TransferEncoding[0] != "chunked" {
				t.Fatalf("net/http not chunked: %q", hr.TransferEncoding)
			}
		case BodyLength:
			if hr.ContentLength != r.ContentLength {
				t.Fatalf("length: net/http %d, we %d", hr.ContentLength, r.ContentLength)
			}
		case BodyUntilClose:
			if hr.ContentLength != -1 || len(hr.TransferEncoding) != 0 {
				t.Fatalf("net/http framing: %d %q", hr.ContentLength, hr.TransferEncoding)
			}
		}
		if r.Body(false) != BodyUntilClose && hr.Close != r.Close {
			t.Fatalf("close: net/http %v, we %v", hr.Close, r.Close)
		}
		dst := make([]byte, 0, MaxAppendResponse(&r))
		out := AppendResponse(dst, data, &r, true)
		if len(out) > cap(dst) {
			t.Fatalf("AppendResponse over its bound")
		}
		if r.N == MaxHeaders {
			// We add "Connection: close"; our own parser would say too many.
			if _, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil); err != nil {
				t.Fatalf("net/http rejects rewritten response: %v\n%q", err, out)
			}
			return
		}
		var o Response
		if err := o.Parse(out, &Limits{MaxHeaderBytes: 1 << 20}); err != nil {
			t.Fatalf("rewritten response rejected: %v\n%q", err, out)
		}
		if o.Body(false) != r.Body(false) || o.ContentLength != r.ContentLength {
			t.Fatalf("rewrite changed framing:\n%q\n%q", data[:r.HeadLen], out)
		}
	})
}

func FuzzChunkScanner(f *testing.F) {
	for _, tc := range validChunked {
		f.Add([]byte(tc.raw), uint8(1))
		f.Add([]byte(tc.raw+"GET /"), uint8(3))
	}
	for _, tc := range invalidChunked {
		if len(tc.raw) < 4096 {
			f.Add([]byte(tc.raw), uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var whole ChunkScanner
		n, done, err := whole.Scan(data)
		if err == nil && !done && n != len(data) {
			t.Fatalf("stopped early without reason: %d of %d", n, len(data))
		}
		// Fed in pieces: the same answer.
		if step > 0 {
			var s ChunkScanner
			pn, pdone, perr := scanAll(&s, data, int(step))
			if perr != err || pdone != done || (err == nil && pn != n) || s.Payload() != whole.Payload() {
				t.Fatalf("pieces of %d: %d %v %v, whole: %d %v %v", step, pn, pdone, perr, n, done, err)
			}
		}
		if !done {
			return
		}
		// Oracle: net/http reads the same body, trailers included, and payload.
		body, herr := readChunkedViaNetHTTP(data[:n])
		if herr != nil {
			t.Fatalf("we accept, net/http rejects %q: %v", data[:n], herr)
		}
		if int64(len(body)) != whole.Payload() {
			t.Fatalf("payload: net/http %d, we %d", len(body), whole.Payload())
		}
		raw, herr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data[:n])))
		if herr != nil || !bytes.Equal(raw, body) {
			t.Fatalf("httputil.NewChunkedReader: %v", herr)
		}
	})
}

// FuzzRequestFields builds a request from fuzzed parts so that the fuzzer
// spends its time on heads that are almost valid: each part is checked
// against net/http when Parse accepts.
func FuzzRequestFields(f *testing.F) {
	f.Add("GET", "/", "a.example", "X-A", "b", true)
	f.Add("POST", "http://a.example/x?y", "a.example", "Content-Length", "10", true)
	f.Add("PUT", "/x", "[::1]:80", "Transfer-Encoding", "chunked", true)
	f.Add("GET", "/chat", "h", "Connection", "keep-alive, Upgrade", true)
	f.Add("OPTIONS", "*", "h:1", "Expect", "100-continue", false)
	f.Add("GET", "/%41", "", "Upgrade", "websocket", true)
	f.Add("GET", "/a/./b/../%2e%2E/%77s?q=%2f", "h", "X", "y", true)
	f.Add("GET", "http://h/%61pi/..%3b/x?y", "h", "X", "y", true)
	f.Add("OPTIONS", "http://h", "h", "X", "y", false)
	f.Fuzz(func(t *testing.T, method, target, host, name, value string, http11 bool) {
		ver := "HTTP/1.0"
		if http11 {
			ver = "HTTP/1.1"
		}
		raw := method + " " + target + " " + ver + "\r\nHost: " + host + "\r\n" + name + ": " + value + "\r\n\r\n"
		var r Request
		if err := r.Parse([]byte(raw), nil); err != nil {
			return
		}
		compareWithNetHTTP(t, []byte(raw))
		out := AppendRequest(nil, []byte(raw), &r, &Forward{ClientIP: []byte("192.0.2.1"), Proto: "http"})
		checkForwardedPath(t, []byte(raw), &r, out)
		if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out))); err != nil {
			t.Fatalf("net/http rejects rewritten head: %v\n%q", err, out)
		}
	})
}

// FuzzValidHost: every Host we accept is a host net/url accepts, and every
// IPv6 literal we accept is one net/netip parses.
func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"a.example", "a:80", "[::1]", "[2001:db8::1.2.3.4]:443", "[::ffff:1.2.3.4]", "1.2.3.4", "[1:2:3:4:5:6:7::]", "x_y~z!$&'()*+,;=:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if !validHost([]byte(h)) || h == "" {
			return
		}
		u, err := url.Parse("http://" + h + "/")
		if err != nil || !strings.EqualFold(u.Host, h) {
			t.Fatalf("net/url: %q -> %v %v", h, u, err)
		}
		if strings.HasPrefix(h, "[") {
			inner := h[1:strings.IndexByte(h, ']')]
			if _, err := netip.ParseAddr(inner); err != nil || strings.Contains(inner, "%") {
				t.Fatalf("netip rejects %q: %v", inner, err)
			}
		}
	})
}
