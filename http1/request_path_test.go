package http1

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
)

func TestRequestPath(t *testing.T) {
	for _, tc := range []struct {
		target, path, query string
		changed, tchanged   bool
		fwd                 string // what AppendRequest sends
	}{
		{"/ws", "/ws", "", false, false, "/ws"},
		{"/ws?x=%2f", "/ws", "?x=%2f", false, false, "/ws?x=%2f"},
		{"/%77s?EIO=4", "/ws", "?EIO=4", true, true, "/ws?EIO=4"},
		{"/%6cogin", "/login", "", true, true, "/login"},
		{"/%61pi/echo?a=%2e%2e", "/api/echo", "?a=%2e%2e", true, true, "/api/echo?a=%2e%2e"},
		{"/a/./b/../c?", "/a/c", "?", true, true, "/a/c?"},
		{"/x/%2e%2E/y", "/y", "", true, true, "/y"},
		{"/a?b?c/../d", "/a", "?b?c/../d", false, false, "/a?b?c/../d"},
		{"/%3b", "/%3B", "", true, true, "/%3B"},
		{"http://a.example/p/../q?r", "/q", "?r", true, true, "/q?r"},
		{"http://a.example/p?r", "/p", "?r", false, true, "/p?r"},
		{"HTTP://a.example/%77s", "/ws", "", true, true, "/ws"},
		{"https://a.example", "/", "", true, true, "/"},
		{"https://a.example?q", "/", "?q", true, true, "/?q"},
		{"http://a.example//x", "//x", "", false, true, "//x"},
	} {
		raw := "GET " + tc.target + " HTTP/1.1\r\nHost: a.example\r\n\r\n"
		buf := []byte(raw)
		var r Request
		if err := r.Parse(buf, nil); err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if p := r.Path(buf); string(p) != tc.path || string(r.Query.Of(buf)) != tc.query ||
			r.PathChanged() != tc.changed || r.TargetChanged() != tc.tchanged {
			t.Errorf("%s: path %q query %q changed %v/%v", tc.target, p, r.Query.Of(buf), r.PathChanged(), r.TargetChanged())
		}
		if p := r.Path(buf); !tc.changed && &p[0] != &buf[r.rawPath.Off] {
			t.Errorf("%s: normal path not a subslice of buf", tc.target)
		}
		if got := string(r.AppendTarget(nil, buf, 0)); got != tc.fwd {
			t.Errorf("%s: AppendTarget %q, want %q", tc.target, got, tc.fwd)
		}
		if len(tc.fwd) > len(tc.target) {
			t.Errorf("%s: longer than the target", tc.target)
		}
		out := string(AppendRequest(nil, buf, &r, &Forward{}))
		if !strings.HasPrefix(out, "GET "+tc.fwd+" HTTP/1.1\r\nHost: a.example\r\n") {
			t.Errorf("%s: forwarded %q", tc.target, out)
		}
	}
}

func TestRequestPathNone(t *testing.T) {
	for _, tc := range []struct{ raw, fwd string }{
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: a\r\n"},
		// RFC 9112 3.2.4: the last proxy sends "*".
		{"OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS * HTTP/1.1\r\nHost: a\r\n"},
		{"OPTIONS http://a HTTP/1.0\r\n\r\n", "OPTIONS * HTTP/1.0\r\nHost: a\r\n"},
	} {
		buf := []byte(tc.raw)
		var r Request
		if err := r.Parse(buf, nil); err != nil {
			t.Fatal(err)
		}
		if r.Path(buf) != nil || r.Query.Len != 0 || r.PathChanged() {
			t.Errorf("%q: path %q", tc.raw, r.Path(buf))
		}
		if got := string(r.AppendTarget(nil, buf, 3)); got != "*" {
			t.Errorf("%q: AppendTarget %q", tc.raw, got)
		}
		if out := string(AppendRequest(nil, buf, &r, &Forward{})); !strings.HasPrefix(out, tc.fwd) {
			t.Errorf("%q: forwarded %q", tc.raw, out)
		}
	}
	var r Request
	if r.Parse([]byte("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), nil) != ErrConnect || r.Path(nil) != nil {
		t.Error("CONNECT has a path")
	}
}

func TestRequestPathRefused(t *testing.T) {
	for _, tc := range []struct {
		target string
		err    error
	}{
		{"/a%2Fb", ErrBadPath},
		{"/a%2fb", ErrBadPath},
		{"/%5C", ErrBadPath},
		{"/%5c", ErrBadPath},
		{"/%00", ErrBadPath},
		{"/a\\b", ErrBadPath},
		{"http://a/x%2f..%2fy", ErrBadPath},
		{"/%zz", ErrBadTarget},
		{"/%4", ErrBadTarget},
		{"/%", ErrBadTarget},
	} {
		raw := "GET " + tc.target + " HTTP/1.1\r\nHost: a\r\n\r\n"
		var r Request
		if err := r.Parse([]byte(raw), nil); err != tc.err || StatusOf(err) != 400 {
			t.Errorf("%s: %v, want %v", tc.target, err, tc.err)
		}
		// A prefix answers ErrNeedMore or the same; ErrBadPath comes as
		// soon as the request line is complete (a malformed encoding
		// earlier, as soon as it is seen).
		line := strings.Index(raw, "\n") + 1
		for k := 0; k <= len(raw); k++ {
			err := r.Parse([]byte(raw[:k]), nil)
			if err != ErrNeedMore && err != tc.err || k >= line && err != tc.err ||
				k < line && tc.err == ErrBadPath && err != ErrNeedMore {
				t.Errorf("%s: prefix %d: %v", tc.target, k, err)
				break
			}
		}
	}
	// The query is not the path's business.
	var r Request
	if err := r.Parse([]byte("GET /a?x=%2F%5C%00\\ HTTP/1.1\r\nHost: a\r\n\r\n"), nil); err != nil {
		t.Errorf("query: %v", err)
	}
}

func TestRequestAppendTargetStrip(t *testing.T) {
	for _, tc := range []struct {
		target string
		strip  int
		want   string
	}{
		{"/api/echo?x=1", 4, "/echo?x=1"},
		{"/%61pi/echo?x=1", 4, "/echo?x=1"},
		{"/api?x=1", 4, "/?x=1"},
		{"/api", 4, "/"},
		{"/api/", 5, "/"},
		{"/api/x", 5, "/x"},
		{"/a/../api/./x?q", 4, "/x?q"},
		{"http://h/api/x?q", 4, "/x?q"},
		{"/api", 99, "/"},
		{"/api", -1, "/api"},
	} {
		buf := []byte("GET " + tc.target + " HTTP/1.1\r\nHost: h\r\n\r\n")
		var r Request
		if err := r.Parse(buf, nil); err != nil {
			t.Fatal(err)
		}
		if got := string(r.AppendTarget(nil, buf, tc.strip)); got != tc.want {
			t.Errorf("%s strip %d: %q, want %q", tc.target, tc.strip, got, tc.want)
		}
	}
}

// checkForwardedPath checks, for a request r that Parse accepted from data
// and the head out that AppendRequest (with a nil Forward.Target) made of it,
// that Path is the normalized path, that out carries it with the query as
// received, and that a decoding backend (net/url) reads from out the path it
// read from data with dot segments removed, and the same query.
func checkForwardedPath(t testing.TB, data []byte, r *Request, out []byte) {
	t.Helper()
	sp := bytes.IndexByte(out, ' ')
	fwd := string(out[sp+1 : bytes.Index(out, []byte(" HTTP/1."))])
	target := string(r.Target.Of(data))
	p := r.Path(data)
	if p == nil {
		if fwd != "*" || r.Query.Len != 0 || !strings.HasPrefix(target, "*") && !r.absForm {
			t.Fatalf("no path: %q forwarded as %q", target, fwd)
		}
		return
	}
	if raw := r.rawPath.Of(data); !r.pathAttn && !PathIsNormal(raw) || bytes.IndexByte(raw, '?') >= 0 ||
		r.Query.Len > 0 && data[r.Query.Off] != '?' {
		t.Fatalf("%q: path %q (attention %v), query %q", target, raw, r.pathAttn, r.Query.Of(data))
	}
	if want, err := AppendNormalPath(nil, r.rawPath.Of(data)); err != nil || !bytes.Equal(p, want) && r.rawPath.Len > 0 || !PathIsNormal(p) {
		t.Fatalf("%q: Path %q, AppendNormalPath %q %v", target, p, want, err)
	}
	if r.TargetChanged() != (fwd != target) || fwd != string(p)+string(r.Query.Of(data)) {
		t.Fatalf("%q: forwarded %q (path %q, query %q)", target, fwd, p, r.Query.Of(data))
	}
	var o Request
	if err := o.Parse(out, &Limits{MaxHeaderBytes: 1 << 20}); err == nil {
		if !bytes.Equal(o.Path(out), p) || o.TargetChanged() {
			t.Fatalf("%q: forwarded %q reads as %q, changed %v", target, fwd, o.Path(out), o.TargetChanged())
		}
	}
	before, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("net/url refuses %q: %v", target, err)
	}
	after, err := url.ParseRequestURI(fwd)
	if err != nil {
		t.Fatalf("net/url refuses forwarded %q: %v", fwd, err)
	}
	want := removeDotSegments(before.Path)
	if want == "" {
		want = "/"
	}
	if after.Path != want || after.RawQuery != before.RawQuery || after.ForceQuery != before.ForceQuery || after.Host != "" {
		t.Fatalf("%q -> %q: backend reads %q ? %q, want %q ? %q", target, fwd, after.Path, after.RawQuery, want, before.RawQuery)
	}
}
