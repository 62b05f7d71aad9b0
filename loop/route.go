package loop

import (
	"bytes"

	"github.com/wsgate/wsgate/balancer"
)

// stripTarget appends to dst the target to forward for a route that strips
// stripLen bytes of the path (balancer.Route measured them on pathOf(t)):
// the path without its prefix, with its query. An absolute-form target
// goes out in origin form (its path), which every backend accepts.
func stripTarget(dst, t []byte, stripLen int) []byte {
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			rest := t[i+3:]
			j := bytes.IndexAny(rest, "/?")
			if j < 0 {
				return append(dst, '/')
			}
			if rest[j] == '?' { // "http://h?q": the path is empty, i.e. "/"
				dst = append(dst, '/')
				return append(dst, rest[j:]...)
			}
			t = rest[j:]
		}
	}
	return balancer.AppendStripped(dst, t, stripLen)
}
