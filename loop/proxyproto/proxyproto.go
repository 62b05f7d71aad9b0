// Package proxyproto parses and writes PROXY protocol headers (HAProxy's
// proxy-protocol.txt, versions 1 and 2): bytes in, bytes out, no I/O. The
// reactor (loop) reads them from accepted connections; the TLS front
// writes them on its inner connections.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// PROXY header limits: v1 is one line of at most 107 bytes; v2 is 16 bytes
// plus a length, and wsgate accepts at most 1 KiB of addresses and TLVs
// (HAProxy sends well under 300).
const (
	V1Max       = 107
	V2HeaderLen = 16
	V2MaxLen    = 1 << 10
)

// TLV types of PROXY v2 that wsgate reads.
const (
	typeSSL    = 0x20 // PP2_TYPE_SSL: client byte, verify uint32, sub-TLVs
	clientSSL  = 0x01 // PP2_CLIENT_SSL bit of its client byte
	TypeWsgate = 0xE0 // application-specific range: the TLS front's secret (tls.go)
	SecretLen  = 16
	// TypeWsgateConn (application-specific range): the TLS front's id of the
	// connection, 8 bytes big-endian, so that the reactor can ask the front
	// to hand the connection over when it becomes a tunnel (tlsfront.Takeover).
	TypeWsgateConn = 0xE1
)

var (
	v1Sig = []byte("PROXY ")
	v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

	ErrNeedMore = errors.New("proxyproto: PROXY header incomplete")
	ErrBad      = errors.New("proxyproto: malformed PROXY header")
)

// Header is what a PROXY header says.
type Header struct {
	N      int        // header length in bytes
	Src    netip.Addr // the client; invalid for LOCAL/UNKNOWN (keep the TCP peer)
	TLS    bool       // v2 PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS
	Secret []byte     // v2 TLV TypeWsgate, when present (points into the input)
	ConnID uint64     // v2 TLV TypeWsgateConn (8 bytes); 0 when absent
}

// Parse parses a PROXY v1 or v2 header at the start of buf. It
// returns ErrNeedMore while buf is a proper prefix of a header that may
// still turn out valid, and ErrBad as soon as it cannot.
func Parse(buf []byte) (Header, error) {
	var h Header
	switch {
	case len(buf) == 0:
		return h, ErrNeedMore
	case buf[0] == 'P':
		return parseV1(buf)
	case buf[0] == '\r':
		return parseV2(buf)
	}
	return h, ErrBad
}

// parseV1: "PROXY TCP4 src dst sport dport\r\n", "PROXY TCP6 ...",
// or "PROXY UNKNOWN[ anything]\r\n".
func parseV1(buf []byte) (Header, error) {
	var h Header
	n := min(len(buf), len(v1Sig))
	if !bytes.Equal(buf[:n], v1Sig[:n]) {
		return h, ErrBad
	}
	end := bytes.Index(buf[:min(len(buf), V1Max)], []byte("\r\n"))
	if end < 0 {
		if len(buf) >= V1Max || bytes.IndexByte(buf, '\n') >= 0 {
			return h, ErrBad
		}
		return h, ErrNeedMore
	}
	h.N = end + 2
	line := buf[len(v1Sig):end]
	f := bytes.Split(line, []byte(" "))
	if len(f) >= 1 && string(f[0]) == "UNKNOWN" {
		return h, nil
	}
	if len(f) != 5 || (string(f[0]) != "TCP4" && string(f[0]) != "TCP6") {
		return h, ErrBad
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" ||
		src.Is4() != (string(f[0]) == "TCP4") || dst.Is4() != src.Is4() ||
		!validPort(f[3]) || !validPort(f[4]) {
		return h, ErrBad
	}
	h.Src = src
	return h, nil
}

// validPort: 0..65535 in decimal without leading zeros.
func validPort(b []byte) bool {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return false
	}
	v, err := strconv.Atoi(string(b))
	return err == nil && v >= 0 && v <= 65535
}

func parseV2(buf []byte) (Header, error) {
	var h Header
	n := min(len(buf), len(v2Sig))
	if !bytes.Equal(buf[:n], v2Sig[:n]) {
		return h, ErrBad
	}
	if len(buf) < V2HeaderLen {
		if len(buf) > 12 && buf[12]>>4 != 2 {
			return h, ErrBad
		}
		return h, ErrNeedMore
	}
	verCmd, fam := buf[12], buf[13]
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 || verCmd&0xF > 1 || length > V2MaxLen {
		return h, ErrBad
	}
	if len(buf) < V2HeaderLen+length {
		return h, ErrNeedMore
	}
	h.N = V2HeaderLen + length
	body := buf[V2HeaderLen:h.N]
	var tlvs []byte
	switch fam {
	case 0x11, 0x12: // TCP or UDP over IPv4
		if length < 12 {
			return h, ErrBad
		}
		h.Src = netip.AddrFrom4([4]byte(body[0:4]))
		tlvs = body[12:]
	case 0x21, 0x22: // over IPv6
		if length < 36 {
			return h, ErrBad
		}
		h.Src = netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		tlvs = body[36:]
	case 0x31, 0x32: // AF_UNIX: 216 bytes of addresses, no IP to use
		if length < 216 {
			return h, ErrBad
		}
		tlvs = body[216:]
	case 0x00: // UNSPEC: addresses (if any) are to be ignored
	default:
		return h, ErrBad
	}
	if verCmd&0xF == 0 { // LOCAL: the sender's own connection; keep the TCP peer
		h.Src = netip.Addr{}
	}
	for len(tlvs) > 0 {
		if len(tlvs) < 3 {
			return h, ErrBad
		}
		typ, l := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if len(tlvs) < 3+l {
			return h, ErrBad
		}
		v := tlvs[3 : 3+l]
		switch typ {
		case typeSSL:
			h.TLS = l >= 1 && v[0]&clientSSL != 0
		case TypeWsgate:
			h.Secret = v
		case TypeWsgateConn:
			if l != 8 {
				return h, ErrBad
			}
			h.ConnID = binary.BigEndian.Uint64(v)
		}
		tlvs = tlvs[3+l:]
	}
	return h, nil
}

// AppendV2 appends a PROXY v2 header for a TCP connection from src to
// dst, with PP2_TYPE_SSL (client bit set) when tls, and wsgate's secret TLV
// when secret is non-empty. It is what tests send.
func AppendV2(dst []byte, src, to netip.AddrPort, tls bool, secret []byte) []byte {
	return AppendV2Conn(dst, src, to, tls, secret, 0)
}

// AppendV2Conn is AppendV2 with the TypeWsgateConn TLV naming connection
// id when id is not 0. It is what the TLS front sends (loop/tlsfront).
func AppendV2Conn(dst []byte, src, to netip.AddrPort, tls bool, secret []byte, id uint64) []byte {
	dst = append(dst, v2Sig...)
	dst = append(dst, 0x21)
	sa, da := src.Addr().Unmap(), to.Addr().Unmap()
	v4 := sa.Is4() && da.Is4()
	addrLen := 36
	if v4 {
		dst = append(dst, 0x11)
		addrLen = 12
	} else {
		dst = append(dst, 0x21)
	}
	tlvLen := 0
	if tls {
		tlvLen += 3 + 5
	}
	if len(secret) > 0 {
		tlvLen += 3 + len(secret)
	}
	if id != 0 {
		tlvLen += 3 + 8
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(addrLen+tlvLen))
	if v4 {
		a, b := sa.As4(), da.As4()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	} else {
		a, b := sa.As16(), da.As16()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	dst = binary.BigEndian.AppendUint16(dst, to.Port())
	if tls {
		dst = append(dst, typeSSL, 0, 5, clientSSL, 0, 0, 0, 0)
	}
	if len(secret) > 0 {
		dst = append(dst, TypeWsgate)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(secret)))
		dst = append(dst, secret...)
	}
	if id != 0 {
		dst = append(dst, TypeWsgateConn, 0, 8)
		dst = binary.BigEndian.AppendUint64(dst, id)
	}
	return dst
}
