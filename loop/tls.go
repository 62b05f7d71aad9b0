package loop

import (
	"context"
	"net"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop/tlsfront"
	"github.com/wsgate/wsgate/tunnel"
)

// TLS termination is done by loop/tlsfront, in front of the plain path.
// TLS 1.3 connections (records by tunnel/tlsrec) are served in the front's
// goroutine by this Server's own onPrepare/onRequest on a
// netpoll.Connection over the client's socket (tlsfront.Conn13); TLS 1.2
// ones (and 1.3 ones whose keys are not known) are relayed as plaintext to
// an inner listener that this Server serves like --listen. Both start
// with a PROXY v2 header naming the client (edge_proxy.go).

// TLSConfig configures TLS termination; no Listen means none.
type TLSConfig struct {
	Listen []string    // TLS listener addresses (SO_REUSEPORT, like --listen)
	Certs  []CertFiles // certificate and key files; the first is the default, others chosen by SNI
}

// CertFiles is one --tls-cert/--tls-key pair of PEM files.
type CertFiles = tlsfront.CertFiles

// openFront sets up the TLS front for tc.
func openFront(s *Server, tc TLSConfig) (*tlsfront.Front, error) {
	return tlsfront.Open(tlsfront.Config{
		Listen:          tc.Listen,
		Certs:           tc.Certs,
		ListenFunc:      listenProxy, // TCP_DEFER_ACCEPT: the ClientHello comes with the accept
		HeaderTimeout:   s.cfg.HeaderTimeout,
		ResponseTimeout: s.cfg.ResponseTimeout,
		Secret:          s.edge.secret[:],
		Admit: func(handshaking int64) bool {
			m := s.edge.cfg.MaxConns
			return m <= 0 || s.Connections()+handshaking < int64(m)
		},
		Logf:          s.cfg.Logf,
		OutOfFiles:    s.logOutOfFiles,
		Refused:       s.m.refusedMaxConns,
		Handshakes:    s.m.tlsHandshakes,
		HandshakeErrs: s.m.tlsHandshakeErrs,
		TLS12:         s.m.tlsConns12,
		TLS13Front:    s.m.tlsConns13Front,
		TLS13Engine:   s.m.tlsConns13Engine,
		Takeovers:     s.m.tlsTakeovers,
		TakeoverFails: s.m.tlsTakeoverFails,
		// TLS 1.3 connections are served by the front's goroutine with
		// this server's handlers (tlsfront.Conn13): no inner socket.
		Prepare: s.onPrepare,
		Request: s.onRequest,
	})
}

// TLSAddrs are the TLS listeners' addresses, in Config order.
func (s *Server) TLSAddrs() []net.Addr {
	if s.edge == nil || s.edge.tls == nil {
		return nil
	}
	return s.edge.tls.Addrs()
}

// ReloadCertificates re-reads every --tls-cert/--tls-key pair. New
// handshakes use the new set at once; connections already up keep theirs.
// On any error the running set stays.
func (s *Server) ReloadCertificates() error {
	if s.edge == nil || s.edge.tls == nil {
		return nil
	}
	if err := s.edge.tls.Reload(); err != nil {
		s.m.tlsReloadErrs.Inc()
		return err
	}
	s.m.tlsReloads.Inc()
	return nil
}

// takeOverTLS moves a TLS 1.3 connection from the front to the tunnel
// engine as a wss tunnel to b (upfd): the engine then holds the client's
// own socket and its record state, and the inner connection (c, whose
// close callback this runs in) ends. toBackend is what netpoll had read of
// c; toClient the plaintext the engine seals first. false: the front
// would not hand it over (the caller tunnels the inner connection, as for
// TLS 1.2); upfd and the backend's count are then still the caller's.
func (s *Server) takeOverTLS(cc *clientConn, c netpoll.Connection, b *balancer.Backend, upfd int, toBackend, toClient []byte, done func(tunnel.Stats)) bool {
	if s.edge == nil || s.edge.tls == nil {
		return false
	}
	c13, ok := c.(*tlsfront.Conn13) // TLS 1.3 served without an inner socket: c is the client's own
	if !ok {
		return false // relayed by crypto/tls over the inner socket (TLS 1.2): the caller tunnels that
	}
	h, ok := c13.Takeover()
	if !ok {
		return false
	}
	// Order: what netpoll read from the inner socket, what was left in it,
	// what the front had opened and not written. (A new slice: toBackend
	// points into netpoll's buffer.)
	tb := make([]byte, 0, len(toBackend)+len(h.ToBackend))
	tb = append(append(tb, toBackend...), h.ToBackend...)
	t := &tunnel.TLS{Read: h.Read, Write: h.Write, Pending: h.Pending}
	if err := s.addTLSTunnel(b, h.Fd, upfd, tb, toClient, t, done); err != nil { // tunnel.go: counts the tunnel on b
		s.logTunnelErr(err)
	}
	return true
}

// isFrontConn reports whether conn came in on the inner listener.
func (s *Server) isFrontConn(conn netpoll.Connection) bool {
	return s.edge != nil && s.edge.tls != nil && s.edge.tls.IsInner(conn.LocalAddr())
}

// serveFront starts the inner listener's event loop and the TLS accept
// loops. Called by Serve with s.mu held.
func (s *Server) serveFront() error {
	if s.edge == nil || s.edge.tls == nil {
		return nil
	}
	f := s.edge.tls
	if err := s.serveLoop(f.Inner(), "tls inner listener"); err != nil {
		return err
	}
	f.Start()
	return nil
}

// closeFront stops accepting TLS connections: new ones are steered to a
// successor (drain_linux.go), and the listeners close once their accept
// queues are empty. Relays in progress go on until their inner
// connections end; connections the front serves itself (TLS 1.3) close
// when idle, until none is left or ctx is done.
func (s *Server) closeFront(ctx context.Context) {
	if s.edge == nil || s.edge.tls == nil {
		return
	}
	f := s.edge.tls
	for _, ln := range f.Listeners() {
		steerAway(ln)
	}
	deadline := time.Now().Add(handoverMax)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		q := 0
		for _, ln := range f.Listeners() {
			controlListener(ln, func(fd int) error {
				info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
				if err == nil {
					q += int(info.Unacked)
				}
				return err
			})
		}
		if q == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.Close()
	// TLS 1.3 connections served by the front itself: idle ones close,
	// busy ones after their exchange (as netpoll's Shutdown does for the
	// inner listener's).
	f.Drain(ctx)
}
