package http1

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

var validResponses = []struct {
	name    string
	raw     string
	head    bool // request was HEAD
	status  int
	minor   int
	cl      int64
	chunked bool
	close   bool
	body    BodyKind
}{
	{"200 with Content-Length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n", false, 200, 1, 5, false, false, BodyLength},
	{"200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200, 1, -1, true, false, BodyChunked},
	{"200 until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false, 200, 1, -1, false, true, BodyUntilClose},
	{"HTTP/1.0 response closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, 200, 0, 2, false, true, BodyLength},
	{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", false, 200, 0, 2, false, false, BodyLength},
	{"204 no body", "HTTP/1.1 204 No Content\r\n\r\n", false, 204, 1, -1, false, false, BodyNone},
	{"304 with Content-Length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, 304, 1, 100, false, false, BodyNone},
	{"HEAD response", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, 200, 1, 100, false, false, BodyNone},
	{"100 continue", "HTTP/1.1 100 Continue\r\n\r\n", false, 100, 1, -1, false, false, BodyNone},
	{"101 switching", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", false, 101, 1, -1, false, false, BodyNone},
	{"no reason phrase", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false, 404, 1, 0, false, false, BodyNone},
	{"no SP reason", "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", false, 500, 1, 0, false, false, BodyNone},
	{"custom reason", "HTTP/1.1 299 Very Fine Indeed\r\nContent-Length: 0\r\n\r\n", false, 299, 1, 0, false, false, BodyNone},
}

var invalidResponses = []struct {
	name string
	raw  string
	want *Error
}{
	{"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", ErrResponseVersion},
	{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", ErrResponseVersion},
	{"lower-case", "http/1.1 200 OK\r\n\r\n", ErrBadStatusLine},
	{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", ErrBadStatusLine},
	{"status 600", "HTTP/1.1 600 Odd\r\n\r\n", ErrBadStatusLine},
	{"status 099", "HTTP/1.1 099 Odd\r\n\r\n", ErrBadStatusLine},
	{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", ErrBadStatusLine},
	{"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", ErrBadStatusLine},
	{"bare LF status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", respErr[eBadLineEnd]},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", respErr[eObsFold]},
	{"TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", respErr[eTEWithCL]},
	{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", respErr[eUnknownTransferCoding]},
	{"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", respErr[eTEHTTP10]},
	{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", respErr[eBadContentLength]},
	{"space before colon", "HTTP/1.1 200 OK\r\nServer : x\r\n\r\n", respErr[eBadHeaderName]},
	{"too large", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", 20000) + "\r\n\r\n", ErrResponseHeaderTooLarge},
	{"too many headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n", respErr[eTooManyHeaders]},
}

func TestParseResponseValid(t *testing.T) {
	for _, tc := range validResponses {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			buf := []byte(tc.raw)
			if err := r.Parse(buf, nil); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if r.Status != tc.status || r.Minor != tc.minor || r.ContentLength != tc.cl || r.Chunked != tc.chunked ||
				r.Close != tc.close || r.Body(tc.head) != tc.body || r.HeadLen != len(buf) {
				t.Fatalf("got %d 1.%d cl=%d chunked=%v close=%v body=%v headLen=%d", r.Status, r.Minor,
					r.ContentLength, r.Chunked, r.Close, r.Body(tc.head), r.HeadLen)
			}
			for k := 0; k < len(buf); k++ {
				if err := r.Parse(buf[:k:k], nil); err != ErrNeedMore {
					t.Fatalf("prefix %d: %v", k, err)
				}
			}
			// Oracle.
			hr, err := http.ReadResponse(bufio.NewReader(strings.NewReader(tc.raw)), nil)
			if err != nil {
				t.Fatalf("net/http: %v", err)
			}
			if hr.StatusCode != tc.status || hr.ProtoMinor != tc.minor {
				t.Errorf("net/http: %d 1.%d", hr.StatusCode, hr.ProtoMinor)
			}
		})
	}
}

func TestParseResponseInvalid(t *testing.T) {
	for _, tc := range invalidResponses {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			buf := []byte(tc.raw)
			err := r.Parse(buf, nil)
			if err != tc.want {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
			if StatusOf(err) != 502 {
				t.Fatalf("status %d", StatusOf(err))
			}
			for k := 0; k < len(buf); k++ {
				if err := r.Parse(buf[:k:k], nil); err != ErrNeedMore && err != tc.want {
					t.Fatalf("prefix %d: %v", k, err)
				}
			}
		})
	}
}

func TestResponseGet(t *testing.T) {
	buf := []byte("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n")
	var r Response
	if err := r.Parse(buf, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Get(buf, "SET-COOKIE"); !ok || string(v) != "a=1" {
		t.Fatalf("Get = %q %v", v, ok)
	}
}
