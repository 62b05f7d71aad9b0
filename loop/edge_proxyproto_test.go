package loop_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// headersBackend answers every request with the forwarding headers it got.
func headersBackend(t testing.TB) string {
	return httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"X-Forwarded-For", "X-Real-IP", "Forwarded", "X-Forwarded-Proto"} {
			w.Header().Set("Got-"+h, r.Header.Get(h))
		}
		io.WriteString(w, "ok")
	}))
}

// proxyV2 is a PROXY v2 header, byte by byte as the spec lays it out.
func proxyV2(cmd byte, src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x20|cmd)
	if src.Addr().Is4() {
		b = append(b, 0x11, 0, 12)
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21, 0, 36)
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// get sends pre (a PROXY header, or anything) and a GET on one
// connection, and returns the response, or the error of reading it.
func rawGet(t *testing.T, addr string, pre []byte, extra string) (*http.Response, error) {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(pre, "GET /x HTTP/1.1\r\nHost: app.test\r\n"+extra+"\r\n"...)); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
	}
	return resp, err
}

func proxyProtocolProxy(t *testing.T, mod func(*loop.Config)) *proxy {
	return startProxy(t, []string{headersBackend(t)}, func(c *loop.Config, _ *tunnel.Config) {
		c.Edge.ProxyProtocol = true
		c.HeaderTimeout = 500 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	})
}

func TestProxyProtocolClientAddress(t *testing.T) {
	p := proxyProtocolProxy(t, nil)
	to := netip.MustParseAddrPort("198.51.100.1:443")
	cases := []struct {
		name   string
		header []byte
		ip     string
		fwd    string
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n"), "192.0.2.7", "for=192.0.2.7"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"), "2001:db8::7", `for="[2001:db8::7]"`},
		{"v1 UNKNOWN keeps the peer", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1", "for=127.0.0.1"},
		{"v2 IPv4", proxyV2(1, netip.MustParseAddrPort("192.0.2.8:4000"), to), "192.0.2.8", "for=192.0.2.8"},
		{"v2 IPv6", proxyV2(1, netip.MustParseAddrPort("[2001:db8::8]:4000"), netip.MustParseAddrPort("[2001:db8::1]:443")), "2001:db8::8", `for="[2001:db8::8]"`},
		{"v2 LOCAL keeps the peer", proxyV2(0, netip.MustParseAddrPort("192.0.2.9:4000"), to), "127.0.0.1", "for=127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := rawGet(t, p.addr, c.header, "X-Forwarded-For: 6.6.6.6\r\n")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Got-X-Forwarded-For"); got != c.ip {
				t.Errorf("X-Forwarded-For %q, want %q (the client's own copy replaced)", got, c.ip)
			}
			if got := resp.Header.Get("Got-X-Real-IP"); got != c.ip {
				t.Errorf("X-Real-IP %q, want %q", got, c.ip)
			}
			if got := resp.Header.Get("Got-Forwarded"); !strings.HasPrefix(got, c.fwd+";") {
				t.Errorf("Forwarded %q, want %s;...", got, c.fwd)
			}
		})
	}
}

// The PROXY address, not the L4 balancer's, is what --trusted-proxies
// checks: a client behind another proxy in the trusted range keeps its
// X-Forwarded-For chain.
func TestProxyProtocolTrustedProxies(t *testing.T) {
	p := proxyProtocolProxy(t, func(c *loop.Config) { c.TrustedProxies = mustPrefixes(t, "10.0.0.0/8") })
	resp, err := rawGet(t, p.addr, []byte("PROXY TCP4 10.1.2.3 10.0.0.1 5000 80\r\n"), "X-Forwarded-For: 203.0.113.5\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Got-X-Forwarded-For"); got != "203.0.113.5, 10.1.2.3" {
		t.Errorf("trusted: X-Forwarded-For %q", got)
	}
	resp, err = rawGet(t, p.addr, []byte("PROXY TCP4 192.0.2.1 10.0.0.1 5000 80\r\n"), "X-Forwarded-For: 203.0.113.5\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Got-X-Forwarded-For"); got != "192.0.2.1" {
		t.Errorf("untrusted: X-Forwarded-For %q", got)
	}
}

// A missing, malformed or truncated header closes the connection without a
// byte of answer; one that trickles in is cut at --header-timeout.
func TestProxyProtocolRefused(t *testing.T) {
	p := proxyProtocolProxy(t, nil)
	good := proxyV2(1, netip.MustParseAddrPort("192.0.2.8:4000"), netip.MustParseAddrPort("198.51.100.1:443"))
	cases := []struct {
		name  string
		send  []byte
		close bool // half-close after sending
	}{
		{"missing (plain HTTP)", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"garbage", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello"), false},
		{"v1 malformed", []byte("PROXY TCP4 1.2.3.4\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7 198.51"), true},
		{"v2 truncated", good[:20], true},
		{"v2 truncated, then silence", good[:20], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := dial(t, p.addr)
			start := time.Now()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write(c.send)
			if c.close {
				conn.(*net.TCPConn).CloseWrite()
			}
			got, err := io.ReadAll(conn)
			if err != nil && !isReset(err) {
				t.Fatalf("read: %v (after %v)", err, time.Since(start))
			}
			if len(got) > 0 {
				t.Fatalf("got %q, want the connection closed with no answer", got)
			}
		})
	}
	t.Run("trickle", func(t *testing.T) {
		conn := dial(t, p.addr)
		start := time.Now()
		closed := make(chan error, 1)
		go func() {
			var b [1]byte
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := conn.Read(b[:])
			closed <- err
		}()
		var err error
		for i := 0; i < len(good) && err == nil; i++ {
			select {
			case err = <-closed:
			case <-time.After(100 * time.Millisecond):
				_, werr := conn.Write(good[i : i+1])
				if werr != nil {
					err = werr
				}
			}
		}
		if err == nil {
			t.Fatalf("sent the whole header a byte per 100 ms (%v) with --header-timeout 500ms, connection still open", time.Since(start))
		}
		if isTimeoutErr(err) {
			t.Fatalf("not closed: %v", err)
		}
	})
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

// --max-conns-per-ip counts the PROXY address: a second connection of the
// same client is closed, another client's is served.
func TestProxyProtocolPerIPLimit(t *testing.T) {
	p := proxyProtocolProxy(t, func(c *loop.Config) { c.Edge.MaxConnsPerIP = 1; c.HeaderTimeout = 5 * time.Second })
	first := dial(t, p.addr)
	first.Write([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n"))
	time.Sleep(100 * time.Millisecond) // let the first header be read
	if _, err := rawGet(t, p.addr, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 3 2\r\n"), ""); err == nil {
		t.Fatal("second connection of 192.0.2.7 got an answer")
	}
	resp, err := rawGet(t, p.addr, []byte("PROXY TCP4 192.0.2.8 198.51.100.1 3 2\r\n"), "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("another client: %v %v", resp, err)
	}
	first.Close()
	eventually(t, "the first connection's slot to be released", func() bool {
		resp, err := rawGet(t, p.addr, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 3 2\r\n"), "")
		return err == nil && resp.StatusCode == 200
	})
}
