package proxyproto

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// v2 builds a PROXY v2 header by hand from the spec's fields.
func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func v2ipv4(src, dst [4]byte, sport, dport uint16, tlvs ...byte) []byte {
	body := append(append(src[:], dst[:]...), byte(sport>>8), byte(sport), byte(dport>>8), byte(dport))
	return v2(1, 0x11, append(body, tlvs...))
}

func TestParseProxyHeader(t *testing.T) {
	v6src := netip.MustParseAddr("2001:db8::7").As16()
	v6dst := netip.MustParseAddr("2001:db8::1").As16()
	v6body := append(append(v6src[:], v6dst[:]...), 0x30, 0x39, 0x01, 0xbb)
	secret := bytes.Repeat([]byte{0xAB}, 16)
	cases := []struct {
		name   string
		in     []byte
		src    string // "" for none (keep the TCP peer)
		tls    bool
		secret bool
		err    error
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 51234 443\r\nGET"), "192.0.2.7", false, false, nil},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"), "2001:db8::7", false, false, nil},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", false, false, nil},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), "", false, false, nil},
		{"v2 IPv4", v2ipv4([4]byte{192, 0, 2, 7}, [4]byte{192, 0, 2, 1}, 51234, 443), "192.0.2.7", false, false, nil},
		{"v2 IPv6", v2(1, 0x21, v6body), "2001:db8::7", false, false, nil},
		{"v2 LOCAL", v2(0, 0x00, nil), "", false, false, nil},
		{"v2 LOCAL with addresses", v2(0, 0x11, make([]byte, 12)), "", false, false, nil},
		{"v2 SSL TLV", v2ipv4([4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 2, 0x20, 0, 5, 0x01, 0, 0, 0, 0), "10.0.0.9", true, false, nil},
		{"v2 SSL TLV without client bit", v2ipv4([4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 2, 0x20, 0, 5, 0x00, 0, 0, 0, 0), "10.0.0.9", false, false, nil},
		{"v2 secret TLV", v2ipv4([4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 2, append([]byte{0xE0, 0, 16}, secret...)...), "10.0.0.9", false, true, nil},
		{"v2 unknown TLV skipped", v2ipv4([4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 2, 0x04, 0, 2, 'h', 'i'), "10.0.0.9", false, false, nil},

		{"empty", nil, "", false, false, ErrNeedMore},
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7 19"), "", false, false, ErrNeedMore},
		{"v2 truncated signature", []byte("\r\n\r\n\x00\r\nQU"), "", false, false, ErrNeedMore},
		{"v2 truncated body", v2ipv4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2)[:20], "", false, false, ErrNeedMore},

		{"HTTP instead", []byte("GET / HTTP/1.1\r\n"), "", false, false, ErrBad},
		{"garbage", []byte{0x16, 0x03, 0x01, 0x00}, "", false, false, ErrBad},
		{"v1 lower case", []byte("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), "", false, false, ErrBad},
		{"v1 bad address", []byte("PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n"), "", false, false, ErrBad},
		{"v1 family mismatch", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), "", false, false, ErrBad},
		{"v1 bad port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n"), "", false, false, ErrBad},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), "", false, false, ErrBad},
		{"v1 bare LF", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"), "", false, false, ErrBad},
		{"v1 too long", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 120)...), "", false, false, ErrBad},
		{"v2 version 1", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x11, 0x11, 0, 0), "", false, false, ErrBad},
		{"v2 bad command", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x22, 0x11, 0, 0), "", false, false, ErrBad},
		{"v2 bad family", v2(1, 0x41, nil), "", false, false, ErrBad},
		{"v2 IPv4 too short", v2(1, 0x11, make([]byte, 8)), "", false, false, ErrBad},
		{"v2 too long", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0xff, 0xff), "", false, false, ErrBad},
		{"v2 conn id TLV of 7 bytes", v2ipv4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, 0xE1, 0, 7, 1, 2, 3, 4, 5, 6, 7), "", false, false, ErrBad},
		{"v2 broken TLV", v2ipv4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, 0x20, 0, 9, 1), "", false, false, ErrBad},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := Parse(c.in)
			if err != c.err {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			got := ""
			if h.Src.IsValid() {
				got = h.Src.String()
			}
			if got != c.src || h.TLS != c.tls || (h.Secret != nil) != c.secret {
				t.Fatalf("got src %q tls %v secret %v, want %q %v %v", got, h.TLS, h.Secret != nil, c.src, c.tls, c.secret)
			}
			if end := bytes.Index(c.in, []byte("GET")); end > 0 && h.N != end {
				t.Fatalf("header length %d, want %d", h.N, end)
			}
		})
	}
}

// TestAppendProxyV2RoundTrip: what the TLS front sends parses back.
func TestAppendProxyV2RoundTrip(t *testing.T) {
	secret := []byte("0123456789abcdef")
	for _, src := range []string{"192.0.2.7:5000", "[2001:db8::7]:5000"} {
		b := AppendV2(nil, netip.MustParseAddrPort(src), netip.MustParseAddrPort("127.0.0.1:443"), true, secret)
		h, err := Parse(b)
		if err != nil || h.N != len(b) || h.Src != netip.MustParseAddrPort(src).Addr() || !h.TLS || !bytes.Equal(h.Secret, secret) {
			t.Fatalf("%s: %+v %v", src, h, err)
		}
		if h.ConnID != 0 {
			t.Fatalf("%s: conn id %d without the TLV", src, h.ConnID)
		}
		for _, id := range []uint64{1, 0x0102030405060708, ^uint64(0)} {
			b := AppendV2Conn(nil, netip.MustParseAddrPort(src), netip.MustParseAddrPort("127.0.0.1:443"), true, secret, id)
			h, err := Parse(b)
			if err != nil || h.N != len(b) || h.ConnID != id || !h.TLS || !bytes.Equal(h.Secret, secret) {
				t.Fatalf("%s id %x: %+v %v", src, id, h, err)
			}
		}
	}
}

// TestParseConnID: the TypeWsgateConn TLV written by hand, among others.
func TestParseConnID(t *testing.T) {
	in := v2ipv4([4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 2,
		0x04, 0, 1, 'x',
		0xE1, 0, 8, 0, 0, 0, 0, 0, 0, 0x12, 0x34)
	h, err := Parse(in)
	if err != nil || h.ConnID != 0x1234 || h.N != len(in) {
		t.Fatalf("%+v %v", h, err)
	}
}

// FuzzProxyHeader: never panics, a success names a length within the
// input, and a prefix of an input never gets a different verdict than
// "need more" or the input's own.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 192.0.2.1 51234 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2ipv4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, 0x20, 0, 5, 1, 0, 0, 0, 0))
	f.Add(v2(0, 0, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := Parse(in)
		if err == nil && (h.N <= 0 || h.N > len(in)) {
			t.Fatalf("length %d of %d", h.N, len(in))
		}
		for i := range len(in) {
			_, perr := Parse(in[:i])
			if perr == nil && err == nil {
				continue // a shorter complete header (e.g. v1 followed by more)
			}
			if perr != ErrNeedMore && perr != err {
				t.Fatalf("prefix %d: %v, whole: %v", i, perr, err)
			}
		}
	})
}
