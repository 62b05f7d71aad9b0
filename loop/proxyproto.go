package loop

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/cloudwego/netpoll"
)

// PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) on
// accepted connections: an L4 balancer in front of wsgate (or wsgate's own
// TLS front, tls.go) sends one header before the first byte of HTTP naming
// the client's address. With Config.Edge.ProxyProtocol every connection of
// the plain listeners must start with one: a missing, malformed or
// truncated header closes the connection without an answer (it may not
// even be HTTP that follows), and a header that trickles in is bounded by
// HeaderTimeout, counted from accept. The address it names replaces the
// TCP peer for everything that follows: X-Forwarded-For, X-Real-IP and
// Forwarded, the --trusted-proxies check, --sticky ip, --max-conns-per-ip,
// --rate-limit and the access log. A v1 "UNKNOWN" or v2 LOCAL header (the
// balancer's own health check) keeps the TCP peer. A v2 header with the
// PP2_TYPE_SSL TLV and its PP2_CLIENT_SSL bit (HAProxy's send-proxy-v2-ssl)
// marks the connection as https (X-Forwarded-Proto, no --redirect-https).

// PROXY header limits: v1 is one line of at most 107 bytes; v2 is 16 bytes
// plus a length, and wsgate accepts at most 1 KiB of addresses and TLVs
// (HAProxy sends well under 300).
const (
	proxyV1Max    = 107
	proxyV2Header = 16
	proxyV2MaxLen = 1 << 10
)

// TLV types of PROXY v2 that wsgate reads.
const (
	pp2TypeSSL     = 0x20 // PP2_TYPE_SSL: client byte, verify uint32, sub-TLVs
	pp2ClientSSL   = 0x01 // PP2_CLIENT_SSL bit of its client byte
	pp2TypeWsgate  = 0xE0 // application-specific range: the TLS front's secret (tls.go)
	proxySecretLen = 16
)

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

	errProxyNeedMore = errors.New("loop: PROXY header incomplete")
	errProxyBad      = errors.New("loop: malformed PROXY header")
)

// proxyHeader is what a PROXY header says.
type proxyHeader struct {
	n      int        // header length in bytes
	src    netip.Addr // the client; invalid for LOCAL/UNKNOWN (keep the TCP peer)
	tls    bool       // v2 PP2_TYPE_SSL with PP2_CLIENT_SSL: the client spoke TLS
	secret []byte     // v2 TLV pp2TypeWsgate, when present (points into the input)
}

// parseProxyHeader parses a PROXY v1 or v2 header at the start of buf. It
// returns errProxyNeedMore while buf is a proper prefix of a header that may
// still turn out valid, and errProxyBad as soon as it cannot.
func parseProxyHeader(buf []byte) (proxyHeader, error) {
	var h proxyHeader
	switch {
	case len(buf) == 0:
		return h, errProxyNeedMore
	case buf[0] == 'P':
		return parseProxyV1(buf)
	case buf[0] == '\r':
		return parseProxyV2(buf)
	}
	return h, errProxyBad
}

// parseProxyV1: "PROXY TCP4 src dst sport dport\r\n", "PROXY TCP6 ...",
// or "PROXY UNKNOWN[ anything]\r\n".
func parseProxyV1(buf []byte) (proxyHeader, error) {
	var h proxyHeader
	n := min(len(buf), len(proxyV1Sig))
	if !bytes.Equal(buf[:n], proxyV1Sig[:n]) {
		return h, errProxyBad
	}
	end := bytes.Index(buf[:min(len(buf), proxyV1Max)], []byte("\r\n"))
	if end < 0 {
		if len(buf) >= proxyV1Max || bytes.IndexByte(buf, '\n') >= 0 {
			return h, errProxyBad
		}
		return h, errProxyNeedMore
	}
	h.n = end + 2
	line := buf[len(proxyV1Sig):end]
	f := bytes.Split(line, []byte(" "))
	if len(f) >= 1 && string(f[0]) == "UNKNOWN" {
		return h, nil
	}
	if len(f) != 5 || (string(f[0]) != "TCP4" && string(f[0]) != "TCP6") {
		return h, errProxyBad
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" ||
		src.Is4() != (string(f[0]) == "TCP4") || dst.Is4() != src.Is4() ||
		!validPort(f[3]) || !validPort(f[4]) {
		return h, errProxyBad
	}
	h.src = src
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

func parseProxyV2(buf []byte) (proxyHeader, error) {
	var h proxyHeader
	n := min(len(buf), len(proxyV2Sig))
	if !bytes.Equal(buf[:n], proxyV2Sig[:n]) {
		return h, errProxyBad
	}
	if len(buf) < proxyV2Header {
		if len(buf) > 12 && buf[12]>>4 != 2 {
			return h, errProxyBad
		}
		return h, errProxyNeedMore
	}
	verCmd, fam := buf[12], buf[13]
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 || verCmd&0xF > 1 || length > proxyV2MaxLen {
		return h, errProxyBad
	}
	if len(buf) < proxyV2Header+length {
		return h, errProxyNeedMore
	}
	h.n = proxyV2Header + length
	body := buf[proxyV2Header:h.n]
	var tlvs []byte
	switch fam {
	case 0x11, 0x12: // TCP or UDP over IPv4
		if length < 12 {
			return h, errProxyBad
		}
		h.src = netip.AddrFrom4([4]byte(body[0:4]))
		tlvs = body[12:]
	case 0x21, 0x22: // over IPv6
		if length < 36 {
			return h, errProxyBad
		}
		h.src = netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		tlvs = body[36:]
	case 0x31, 0x32: // AF_UNIX: 216 bytes of addresses, no IP to use
		if length < 216 {
			return h, errProxyBad
		}
		tlvs = body[216:]
	case 0x00: // UNSPEC: addresses (if any) are to be ignored
	default:
		return h, errProxyBad
	}
	if verCmd&0xF == 0 { // LOCAL: the sender's own connection; keep the TCP peer
		h.src = netip.Addr{}
	}
	for len(tlvs) > 0 {
		if len(tlvs) < 3 {
			return h, errProxyBad
		}
		typ, l := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if len(tlvs) < 3+l {
			return h, errProxyBad
		}
		v := tlvs[3 : 3+l]
		switch typ {
		case pp2TypeSSL:
			h.tls = l >= 1 && v[0]&pp2ClientSSL != 0
		case pp2TypeWsgate:
			h.secret = v
		}
		tlvs = tlvs[3+l:]
	}
	return h, nil
}

// appendProxyV2 appends a PROXY v2 header for a TCP connection from src to
// dst, with PP2_TYPE_SSL (client bit set) when tls, and wsgate's secret TLV
// when secret is non-empty. It is what the TLS front sends (tls.go), and
// what tests send.
func appendProxyV2(dst []byte, src, to netip.AddrPort, tls bool, secret []byte) []byte {
	dst = append(dst, proxyV2Sig...)
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
		dst = append(dst, pp2TypeSSL, 0, 5, pp2ClientSSL, 0, 0, 0, 0)
	}
	if len(secret) > 0 {
		dst = append(dst, pp2TypeWsgate)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(secret)))
		dst = append(dst, secret...)
	}
	return dst
}

// Which header a connection must start with (clientConn.proxy).
const (
	proxyNone   uint8 = iota
	proxyPublic       // --proxy-protocol: any valid v1 or v2 header
	proxyFront        // from the TLS front: v2 with the front's secret
)

// readProxyHeader reads and consumes the PROXY header a connection must
// start with, and makes the client it names cc's client. It reports false
// when the connection is to be closed: no valid header by HeaderTimeout
// after accept, a malformed one, or (from the TLS front) a wrong secret;
// or the client is over --max-conns-per-ip.
func (s *Server) readProxyHeader(cc *clientConn) bool {
	mode := cc.proxy
	cc.proxy = proxyNone
	r := cc.conn.Reader()
	deadline := cc.acceptedAt.Add(s.cfg.HeaderTimeout)
	for {
		n := min(r.Len(), proxyV2Header+proxyV2MaxLen)
		buf, err := r.Peek(n)
		if err != nil {
			return false
		}
		h, perr := parseProxyHeader(buf)
		if perr == nil {
			if mode == proxyFront && (s.edge == nil || subtle.ConstantTimeCompare(h.secret, s.edge.secret[:]) != 1) {
				s.m.countProxyHeader(proxyResultBad)
				return false
			}
			r.Skip(h.n)
			s.m.countProxyHeader(proxyResultOK)
			if h.src.IsValid() {
				cc.setClient(h.src, s.trusted(h.src))
			}
			if h.tls {
				cc.fwd.Proto = "https"
			}
			return s.acquireIP(cc) // limits.go: --max-conns-per-ip with the real client
		}
		if perr != errProxyNeedMore {
			s.m.countProxyHeader(proxyResultBad)
			return false
		}
		cc.conn.SetReadDeadline(deadline)
		_, err = r.Peek(n + 1)
		cc.conn.SetReadDeadline(time.Time{})
		if err != nil {
			if errors.Is(err, netpoll.ErrReadTimeout) {
				s.m.countProxyHeader(proxyResultTimeout)
			} else {
				s.m.countProxyHeader(proxyResultBad)
			}
			return false
		}
	}
}

// setClient makes ip the connection's client address.
func (cc *clientConn) setClient(ip netip.Addr, trusted bool) {
	cc.clientIP = ip
	cc.fwd.ClientIP = []byte(ip.String())
	cc.fwd.Trusted = trusted
}
