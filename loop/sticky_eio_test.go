package loop

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/http1"
)

func TestSetContentLength(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length:  117\r\nX-Content-Length: 5\r\n\r\n"
	got := string(setContentLength([]byte(head), 130))
	want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length:  130\r\nX-Content-Length: 5\r\n\r\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	got = string(setContentLength([]byte("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"), 12345))
	if got != "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n" {
		t.Fatalf("got %q", got)
	}
}

func TestCookieValue(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; wsgate_default=TOK1 \r\ncookie: wsgate_default=TOK2\r\n\r\n"
	var req http1.Request
	if err := req.Parse([]byte(raw), nil); err != nil {
		t.Fatal(err)
	}
	if v := cookieValue(&req, []byte(raw), "wsgate_default"); string(v) != "TOK1" {
		t.Fatalf("got %q", v)
	}
	for _, name := range []string{"wsgate_def", "x=", "wsgate_other"} {
		if v := cookieValue(&req, []byte(raw), name); v != nil {
			t.Errorf("%s: got %q", name, v)
		}
	}
	// A real header set parsed by net/http names the same value.
	hr, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if c, err := hr.Cookie("wsgate_default"); err != nil || c.Value != "TOK1" {
		t.Errorf("net/http reads %v, %v", c, err)
	}
}
