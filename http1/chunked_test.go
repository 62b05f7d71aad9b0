package http1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

var validChunked = []struct {
	name    string
	raw     string
	payload string
}{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
	{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"},
	{"empty body", "0\r\n\r\n", ""},
	{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
	{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"},
	{"extension", "5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello"},
	{"extension quoted", "5;a=\"x;y \\\" z\";b\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension BWS", "5; a = b ;c\r\nhello\r\n0\r\n\r\n", "hello"},
	{"trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:  v \r\n\r\n", "hello"},
	{"data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
}

var invalidChunked = []struct {
	name string
	raw  string
	want *Error
}{
	{"no size", "\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"sign", "+5\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"leading space", " 5\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"trailing space", "5 \r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"size 2^62", "4000000000000000\r\n", ErrBadChunk},
	{"bare LF after size", "5\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"bare CR after size", "5\rhello\r\n0\r\n\r\n", ErrBadChunk},
	{"data too long", "5\r\nhello!\r\n0\r\n\r\n", ErrBadChunk},
	{"bare LF after data", "5\r\nhello\n0\r\n\r\n", ErrBadChunk},
	{"missing final CRLF then junk", "0\r\nX\r\n", ErrBadChunk},
	{"bare LF final", "0\r\n\n", ErrBadChunk},
	{"trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n", ErrBadChunk},
	{"trailer no colon", "0\r\nX\r\n\r\n", ErrBadChunk},
	{"trailer space before colon", "0\r\nX : a\r\n\r\n", ErrBadChunk},
	{"trailer NUL", "0\r\nX: a\x00\r\n\r\n", ErrBadChunk},
	{"BWS before semicolon", "5 ;a\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"ext without name", "5;\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"ext bad char", "5;a@b\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"ext unterminated quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"ext BWS before CRLF", "5;a=b \r\nhello\r\n0\r\n\r\n", ErrBadChunk},
	{"ext too long", "5;a=" + strings.Repeat("b", MaxChunkLineBytes) + "\r\nhello\r\n0\r\n\r\n", ErrChunkLineTooLong},
	{"trailer too large", "0\r\nX: " + strings.Repeat("b", MaxTrailerBytes) + "\r\n\r\n", ErrTrailerTooLarge},
	{"too much overhead", strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 20) + "0\r\n\r\n", ErrChunkOverhead},
}

func scanAll(s *ChunkScanner, p []byte, step int) (n int, done bool, err error) {
	for n < len(p) && !done {
		end := min(n+step, len(p))
		k, d, e := s.Scan(p[n:end])
		n += k
		done = d
		if e != nil {
			return n, done, e
		}
		if !d && k != end-n+k {
			// Scan consumes everything until done.
			return n, done, io.ErrShortBuffer
		}
	}
	return n, done, nil
}

func TestChunkScannerValid(t *testing.T) {
	for _, tc := range validChunked {
		for _, step := range []int{1, 2, 3, 7, 1 << 20} {
			var s ChunkScanner
			const next = "GET / HTTP/1.1\r\n"
			n, done, err := scanAll(&s, []byte(tc.raw+next), step)
			if err != nil || !done || n != len(tc.raw) || s.Payload() != int64(len(tc.payload)) || !s.Done() {
				t.Fatalf("%s step %d: n=%d done=%v err=%v payload=%d", tc.name, step, n, done, err, s.Payload())
			}
			// Scan after done consumes nothing.
			if k, d, e := s.Scan([]byte(next)); k != 0 || !d || e != nil {
				t.Fatalf("%s: scan after done: %d %v %v", tc.name, k, d, e)
			}
		}
		// Oracle: net/http decodes the same payload.
		got, err := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(tc.raw)))
		if err != nil || string(got) != tc.payload {
			t.Fatalf("%s: net/http chunked reader: %q %v", tc.name, got, err)
		}
		if body, err := readChunkedViaNetHTTP([]byte(tc.raw)); err != nil || string(body) != tc.payload {
			t.Fatalf("%s: net/http request body: %q %v", tc.name, body, err)
		}
	}
}

func TestChunkScannerInvalid(t *testing.T) {
	for _, tc := range invalidChunked {
		for _, step := range []int{1, 5, 1 << 20} {
			var s ChunkScanner
			_, _, err := scanAll(&s, []byte(tc.raw), step)
			if err != tc.want {
				t.Fatalf("%s step %d: err=%v want %v", tc.name, step, err, tc.want)
			}
			if _, _, err := s.Scan([]byte("0\r\n\r\n")); err != tc.want {
				t.Fatalf("%s: error not sticky: %v", tc.name, err)
			}
		}
	}
}

func TestChunkScannerReset(t *testing.T) {
	var s ChunkScanner
	s.Scan([]byte("zz"))
	s.Reset()
	if n, done, err := s.Scan([]byte("0\r\n\r\n")); n != 5 || !done || err != nil {
		t.Fatal(n, done, err)
	}
}

func TestChunkScannerIncomplete(t *testing.T) {
	var s ChunkScanner
	raw := []byte("5\r\nhello\r\n0\r\n")
	if n, done, err := s.Scan(raw); n != len(raw) || done || err != nil {
		t.Fatal(n, done, err)
	}
	if n, done, err := s.Scan([]byte("\r\nrest")); n != 2 || !done || err != nil {
		t.Fatal(n, done, err)
	}
}

// readChunkedViaNetHTTP reads raw as the chunked body of a request with
// net/http, trailers included.
func readChunkedViaNetHTTP(raw []byte) ([]byte, error) {
	head := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	br := bufio.NewReaderSize(io.MultiReader(strings.NewReader(head), bytes.NewReader(raw)), 64<<10)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(req.Body)
}

func TestChunkScannerCommitted(t *testing.T) {
	var s ChunkScanner
	steps := []struct {
		in   string
		want int64
	}{
		{"1", 1}, {"0", 16}, {"0\r", 256}, {"\n", 256}, {"abc", 256}, {strings.Repeat("x", 253), 256},
		{"\r\n", 256}, {"3\r\n", 259}, {"ab", 259}, {"c\r\n0\r\n\r\n", 259},
	}
	for _, st := range steps {
		if _, _, err := s.Scan([]byte(st.in)); err != nil {
			t.Fatalf("after %q: %v", st.in, err)
		}
		if got := s.Committed(); got != st.want {
			t.Fatalf("after %q: Committed %d, want %d", st.in, got, st.want)
		}
	}
	if !s.Done() || s.Payload() != 259 {
		t.Fatalf("done %v payload %d", s.Done(), s.Payload())
	}
}
