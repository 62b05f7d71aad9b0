package main

import (
	"github.com/wsgate/wsgate/loop/limit"

	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/loop"
)

// edgeOptions are the flags of the public edge: TLS, redirect, PROXY
// protocol, connection and rate limits, WebSocket origins.
type edgeOptions struct {
	tlsListen      []string
	tlsCert        []string
	tlsKey         []string
	redirectHTTPS  bool
	proxyProtocol  bool
	maxConns       int
	maxConnsPerIP  int
	rateLimits     []string
	allowedOrigins []string
}

func (e *edgeOptions) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&e.tlsListen, "tls-listen", nil, "TLS (https/wss) listener `ADDR`, repeatable")
	fs.StringArrayVar(&e.tlsCert, "tls-cert", nil, "certificate chain `FILE` (PEM), repeatable; paired in order with --tls-key, chosen by SNI (the first is the default); re-read on SIGHUP")
	fs.StringArrayVar(&e.tlsKey, "tls-key", nil, "private key `FILE` (PEM) of the --tls-cert in the same position")
	fs.BoolVar(&e.redirectHTTPS, "redirect-https", false, "answer plain-HTTP requests (WebSocket handshakes too) with 301 to https://, on the --tls-listen port")
	fs.BoolVar(&e.proxyProtocol, "proxy-protocol", false, "require a PROXY protocol v1 or v2 header on every --listen connection; the client address comes from it")
	fs.IntVar(&e.maxConns, "max-conns", 0, "most client connections open, tunnels included; more are closed at once (0: no limit)")
	fs.IntVar(&e.maxConnsPerIP, "max-conns-per-ip", 0, "most connections open per client address (IPv6 by /64); more are closed at once (0: no limit)")
	fs.StringArrayVar(&e.rateLimits, "rate-limit", nil, "`[HOST]/PREFIX=N/s[,burst=B]` requests per client address on a route (429 with Retry-After; N/m per minute), repeatable")
	fs.StringArrayVar(&e.allowedOrigins, "allowed-origin", nil, "`[HOST]/PREFIX=ORIGIN`: WebSocket handshakes on the route from another Origin get 403, repeatable")
}

// config checks the edge flags and builds loop.EdgeConfig; errors are
// *usageError naming the flag.
func (e *edgeOptions) config() (loop.EdgeConfig, error) {
	var c loop.EdgeConfig
	bad := func(flag, v string, err error) error {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--%s\" flag: %v", v, flag, err)}
	}
	if len(e.tlsCert) != len(e.tlsKey) {
		return c, &usageError{fmt.Sprintf("\"--tls-key\" flag: %d --tls-cert but %d --tls-key; give them in pairs", len(e.tlsCert), len(e.tlsKey))}
	}
	if len(e.tlsListen) > 0 && len(e.tlsCert) == 0 {
		return c, &usageError{"\"--tls-listen\" flag: needs at least one --tls-cert/--tls-key pair"}
	}
	if len(e.tlsListen) == 0 && len(e.tlsCert) > 0 {
		return c, &usageError{"\"--tls-cert\" flag: no --tls-listen to use it on"}
	}
	c.TLS.Listen = e.tlsListen
	for i := range e.tlsCert {
		if err := checkCertPair(e.tlsCert[i], e.tlsKey[i]); err != nil {
			return c, err
		}
		c.TLS.Certs = append(c.TLS.Certs, loop.CertFiles{Cert: e.tlsCert[i], Key: e.tlsKey[i]})
	}
	if e.maxConns < 0 {
		return c, bad("max-conns", fmt.Sprint(e.maxConns), fmt.Errorf("must be 0 or more"))
	}
	if e.maxConnsPerIP < 0 {
		return c, bad("max-conns-per-ip", fmt.Sprint(e.maxConnsPerIP), fmt.Errorf("must be 0 or more"))
	}
	c.RedirectHTTPS, c.ProxyProtocol = e.redirectHTTPS, e.proxyProtocol
	c.MaxConns, c.MaxConnsPerIP = e.maxConns, e.maxConnsPerIP
	for _, v := range e.rateLimits {
		rl, err := limit.ParseRateLimit(v)
		if err != nil {
			return c, bad("rate-limit", v, err)
		}
		c.RateLimits = append(c.RateLimits, rl)
	}
	for _, v := range e.allowedOrigins {
		ao, err := limit.ParseAllowedOrigin(v)
		if err != nil {
			return c, bad("allowed-origin", v, err)
		}
		c.AllowedOrigins = append(c.AllowedOrigins, ao)
	}
	return c, nil
}

// checkCertPair loads one --tls-cert/--tls-key pair the way the TLS front
// loads it at start (loop/tls.go: tls.LoadX509KeyPair, then the leaf
// certificate parsed), so a pair the start would refuse is a bad flag, for
// --check as for a start. The error names the file at fault: a certificate
// file that holds no certificate (or a key: the two swapped), a key file
// that holds no key, or a key that is not the certificate's.
func checkCertPair(certPath, keyPath string) error {
	bad := func(flag, v string, format string, a ...any) error {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--%s\" flag: %s", v, flag, fmt.Sprintf(format, a...))}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return bad("tls-cert", certPath, "cannot read it: %v", pathErr(err))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return bad("tls-key", keyPath, "cannot read it: %v", pathErr(err))
	}
	var leaf *pem.Block
	var keyFound bool
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" && leaf == nil {
			leaf = b
		}
		keyFound = keyFound || strings.HasSuffix(b.Type, "PRIVATE KEY")
	}
	switch {
	case leaf == nil && keyFound:
		return bad("tls-cert", certPath, "holds a private key, not a certificate (are --tls-cert and --tls-key swapped?)")
	case leaf == nil:
		return bad("tls-cert", certPath, "holds no PEM certificate")
	}
	if _, err := x509.ParseCertificate(leaf.Bytes); err != nil {
		return bad("tls-cert", certPath, "its certificate does not parse: %v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return bad("tls-key", keyPath, "not the private key of --tls-cert %s: %v", certPath, err)
	}
	if _, err := x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return bad("tls-cert", certPath, "its certificate does not parse: %v", err)
	}
	return nil
}

// pathErr is err without the path, which the message gives already.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// watchCertReload re-reads the TLS certificates on every SIGHUP (beside
// watchReload's --backends-file). A pair that does not load keeps the
// running set.
func watchCertReload(srv *loop.Server, logf func(string, ...any)) {
	if len(srv.TLSAddrs()) == 0 {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for range hup {
		if err := srv.ReloadCertificates(); err != nil {
			logf("SIGHUP: TLS certificates rejected, keeping the previous ones: %v", err)
			continue
		}
		logf("SIGHUP: TLS certificates re-read")
	}
}
