package loop_test

import (
	"net"
	"testing"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// Forwarding headers from a peer in --trusted-proxies are kept and extended;
// from anyone else they are replaced. Over IPv6 loopback, so Forwarded's
// for= is a quoted "[::1]" (RFC 7239 6).
func TestStrictForwardingHeadersTrust(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		ln.Close()
	}
	const forged = "GET /f HTTP/1.1\r\nHost: app.example:8080\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: public.example\r\nX-Real-IP: 203.0.113.9\r\nForwarded: for=203.0.113.9;proto=https\r\nConnection: close\r\n\r\n"
	for _, tc := range []struct {
		name    string
		trusted []string
		want    map[string]string
	}{
		{"untrusted peer: replaced", nil, map[string]string{
			"X-Forwarded-For":   "::1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "app.example:8080",
			"X-Real-IP":         "::1",
			"Forwarded":         `for="[::1]";host="app.example:8080";proto=http`,
		}},
		{"trusted peer: kept and extended", []string{"::1/128"}, map[string]string{
			"X-Forwarded-For":   "203.0.113.9, ::1",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "public.example",
			"X-Real-IP":         "203.0.113.9",
			"Forwarded":         `for=203.0.113.9;proto=https, for="[::1]";host="app.example:8080";proto=http`,
		}},
		{"trusted list without the peer: replaced", []string{"10.0.0.0/8"}, map[string]string{
			"X-Forwarded-For": "::1",
			"Forwarded":       `for="[::1]";host="app.example:8080";proto=http`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := newCaptureBackend(t)
			p := startProxy(t, []string{cb.addr}, func(c *loop.Config, _ *tunnel.Config) {
				c.Listen = []string{"[::1]:0"}
				c.TrustedProxies = mustPrefixes(t, tc.trusted...)
			})
			resp, all, err := rawExchange(t, p.addr, forged, false)
			if resp == nil || resp.StatusCode != 200 {
				t.Fatalf("%v: %q", err, all)
			}
			got := cb.since(0)
			if len(got) != 1 {
				t.Fatalf("backend got %d requests", len(got))
			}
			for k, v := range tc.want {
				if vs := got[0].Header.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("%s = %q, want %q", k, vs, v)
				}
			}
		})
	}
}
