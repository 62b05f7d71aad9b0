package http1

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
)

// normalPathCases: p, the normalized path, or the error.
var normalPathCases = []struct {
	p, want string
	err     error
}{
	// Already normal.
	{"/", "/", nil},
	{"", "", nil},
	{"/ws", "/ws", nil},
	{"/a/b/c/", "/a/b/c/", nil},
	{"/a%20b/%E2%82%AC", "/a%20b/%E2%82%AC", nil},
	{"/a;b=c,d/e:f@g!$&'()*+", "/a;b=c,d/e:f@g!$&'()*+", nil},
	{"/.well-known/x", "/.well-known/x", nil},
	{"/a/.../b", "/a/.../b", nil},
	{"/a/.b/..c/c.", "/a/.b/..c/c.", nil},
	{"//ws", "//ws", nil},   // no slash merging
	{"/a//b", "/a//b", nil}, // no slash merging
	{"/a#b", "/a#b", nil},   // literal bytes kept
	// The audit's cases.
	{"/%77s", "/ws", nil},
	{"/%6cogin", "/login", nil},
	{"/%6Cogin", "/login", nil},
	{"/%61pi/echo", "/api/echo", nil},
	// Unreserved decoded, the rest upper-cased.
	{"/%41%5a%61%7a%30%39%2d%2e%5f%7e", "/AZaz09-._~", nil},
	{"/%3b", "/%3B", nil},
	{"/a%3bb%3D", "/a%3Bb%3D", nil},
	{"/%e2%82%ac", "/%E2%82%AC", nil},
	{"/%25", "/%25", nil},
	{"/%2541", "/%2541", nil}, // decoded once only
	{"/%20", "/%20", nil},
	{"/%3F%23", "/%3F%23", nil},
	// Dot segments.
	{"/a/./b/../c", "/a/c", nil},
	{"/a/b/..", "/a/", nil},
	{"/a/b/.", "/a/b/", nil},
	{"/a/b/./", "/a/b/", nil},
	{"/a/b/../", "/a/", nil},
	{"/..", "/", nil},
	{"/.", "/", nil},
	{"/../a", "/a", nil},
	{"/../../a/../../b", "/b", nil},
	{"/a/../../b", "/b", nil},
	{"/./", "/", nil},
	{"/a//../b", "/a/b", nil}, // ".." removes the empty segment
	{"//..", "/", nil},
	{"/a/b/c/./../../g", "/a/g", nil}, // RFC 3986 5.2.4
	{"/%2e%2E", "/", nil},
	{"/a/%2e%2e/b", "/b", nil},
	{"/a/%2E/b", "/a/b", nil},
	{"/a/.%2e/b", "/b", nil},
	{"/x/..%2f", "", ErrBadPath},
	{"/ws/%2e%2e/admin", "/admin", nil},
	{"/%2e%2e%2e", "/...", nil},
	{"/a/..;/b", "/a/..;/b", nil}, // "..;" is not a dot segment
	// Relative paths (not from a request; RFC 3986 5.2.4 rules A and D).
	{"../a", "a", nil},
	{"./a", "a", nil},
	{"../../a/b", "a/b", nil},
	{".", "", nil},
	{"..", "", nil},
	{"a/../b", "/b", nil},
	{"a/./b", "a/b", nil},
	{".//a", "/a", nil},
	// Refused: %2F, %5C, %00 in any case, and a literal '\'.
	{"/a%2Fb", "", ErrBadPath},
	{"/a%2fb", "", ErrBadPath},
	{"/a%5Cb", "", ErrBadPath},
	{"/a%5cb", "", ErrBadPath},
	{"/a%00", "", ErrBadPath},
	{"/a\\b", "", ErrBadPath},
	{"/..%5c..%5cadmin", "", ErrBadPath},
	// Refused: malformed encodings.
	{"/%", "", ErrBadTarget},
	{"/%4", "", ErrBadTarget},
	{"/%zz", "", ErrBadTarget},
	{"/%4g", "", ErrBadTarget},
	{"/a%", "", ErrBadTarget},
	{"/%%41", "", ErrBadTarget},
}

func TestAppendNormalPath(t *testing.T) {
	for _, tc := range normalPathCases {
		prefix := []byte("pre")
		got, err := AppendNormalPath(prefix, []byte(tc.p))
		if err != tc.err {
			t.Errorf("%q: err %v, want %v", tc.p, err, tc.err)
			continue
		}
		if err != nil {
			if string(got) != "pre" {
				t.Errorf("%q: dst %q after an error", tc.p, got)
			}
			if StatusOf(err) != 400 {
				t.Errorf("%q: status %d", tc.p, StatusOf(err))
			}
		} else if string(got) != "pre"+tc.want {
			t.Errorf("%q: got %q, want %q", tc.p, got[3:], tc.want)
		}
		normal := err == nil && tc.want == tc.p
		if PathIsNormal([]byte(tc.p)) != normal {
			t.Errorf("%q: PathIsNormal %v, want %v", tc.p, !normal, normal)
		}
	}
}

// removeDotSegments is RFC 3986 5.2.4 as written, on strings.
func removeDotSegments(in string) string {
	var out strings.Builder
	for len(in) > 0 {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../") || in == "/..":
			in = "/" + in[min(len(in), 4):]
			s := out.String()
			out.Reset()
			if i := strings.LastIndexByte(s, '/'); i >= 0 {
				out.WriteString(s[:i])
			}
		case in == "." || in == "..":
			in = ""
		default:
			i := 0
			if in[0] == '/' {
				i = 1
			}
			if j := strings.IndexByte(in[i:], '/'); j >= 0 {
				i += j
			} else {
				i = len(in)
			}
			out.WriteString(in[:i])
			in = in[i:]
		}
	}
	return out.String()
}

func TestRemoveDotSegmentsReference(t *testing.T) {
	// RFC 3986 5.2.4's own examples, and 5.4's through the merge.
	for in, want := range map[string]string{
		"/a/b/c/./../../g":   "/a/g",
		"mid/content=5/../6": "mid/6",
		"/b/c/../../../g":    "/g",
		"/a/..":              "/", "/a/.": "/a/", "/..": "/", "/./b": "/b",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	for _, tc := range normalPathCases {
		if tc.err == nil && !strings.Contains(tc.p, "%") && removeDotSegments(tc.p) != tc.want {
			t.Errorf("%q: reference %q, table %q", tc.p, removeDotSegments(tc.p), tc.want)
		}
	}
}

func FuzzNormalPath(f *testing.F) {
	for _, tc := range normalPathCases {
		f.Add([]byte(tc.p))
	}
	f.Add([]byte("/%2E%2e/%2e/./.././%41%2F"))
	f.Fuzz(func(t *testing.T, p []byte) {
		out, err := AppendNormalPath(nil, p)
		if PathIsNormal(p) != (err == nil && bytes.Equal(out, p)) {
			t.Fatalf("%q: PathIsNormal %v, AppendNormalPath %q, %v", p, PathIsNormal(p), out, err)
		}
		if err != nil {
			if err != ErrBadPath && err != ErrBadTarget {
				t.Fatalf("%q: %v", p, err)
			}
			return
		}
		if len(out) > len(p) {
			t.Fatalf("%q: grew to %q", p, out)
		}
		// (a) idempotent.
		again, err := AppendNormalPath(nil, out)
		if err != nil || !bytes.Equal(again, out) || !PathIsNormal(out) {
			t.Fatalf("%q: %q, then %q, %v", p, out, again, err)
		}
		// (b) a decoding backend sees what it saw before, dot segments
		// removed: url.ParseRequestURI's Path of the normalized path is
		// remove_dot_segments of its Path of p. Only for paths a request
		// can carry: "/" first, visible ASCII, no "?".
		if len(p) == 0 || p[0] != '/' {
			return
		}
		for _, c := range p {
			if c < 0x21 || c > 0x7e || c == '?' {
				return
			}
		}
		raw, err := url.ParseRequestURI(string(p))
		if err != nil {
			t.Fatalf("%q: net/url refuses what we accept: %v", p, err)
		}
		norm, err := url.ParseRequestURI(string(out))
		if err != nil {
			t.Fatalf("%q: net/url refuses our %q: %v", p, out, err)
		}
		if want := removeDotSegments(raw.Path); norm.Path != want {
			t.Fatalf("%q -> %q: backend path %q, want %q", p, out, norm.Path, want)
		}
	})
}
