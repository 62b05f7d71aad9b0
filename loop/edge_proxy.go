package loop

import (
	"crypto/subtle"
	"errors"
	"net/netip"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/loop/proxyproto"
)

// PROXY protocol on accepted connections (loop/proxyproto parses it): an L4
// balancer in front of wsgate (or wsgate's own TLS front, tls.go) sends one
// header before the first byte of HTTP naming the client's address. With
// Config.Edge.ProxyProtocol every connection of the plain listeners must
// start with one: a missing, malformed or truncated header closes the
// connection without an answer (it may not even be HTTP that follows), and
// a header that trickles in is bounded by HeaderTimeout, counted from
// accept. The address it names replaces the TCP peer for everything that
// follows: X-Forwarded-For, X-Real-IP and Forwarded, the --trusted-proxies
// check, --sticky ip, --max-conns-per-ip, --rate-limit and the access log.
// A v1 "UNKNOWN" or v2 LOCAL header (the balancer's own health check) keeps
// the TCP peer. A v2 header with the PP2_TYPE_SSL TLV and its
// PP2_CLIENT_SSL bit (HAProxy's send-proxy-v2-ssl) marks the connection as
// https (X-Forwarded-Proto, no --redirect-https).

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
		n := min(r.Len(), proxyproto.V2HeaderLen+proxyproto.V2MaxLen)
		buf, err := r.Peek(n)
		if err != nil {
			return false
		}
		h, perr := proxyproto.Parse(buf)
		if perr == nil {
			if mode == proxyFront && (s.edge == nil || subtle.ConstantTimeCompare(h.Secret, s.edge.secret[:]) != 1) {
				s.m.countProxyHeader(proxyResultBad)
				return false
			}
			r.Skip(h.N)
			if mode == proxyFront {
				cc.frontID = h.ConnID // tlsfront.Takeover, when it becomes a tunnel (exchange.go)
			}
			s.m.countProxyHeader(proxyResultOK)
			if h.Src.IsValid() {
				cc.setClient(h.Src, s.trusted(h.Src))
			}
			if h.TLS {
				cc.fwd.Proto = "https"
			}
			return s.acquireIP(cc) // edge.go: --max-conns-per-ip with the real client
		}
		if perr != proxyproto.ErrNeedMore {
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
	cc.fwd.ClientIP = ip.AppendTo(cc.ipText[:0])
	cc.fwd.Trusted = trusted
}
