package tunnel

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// Kernel TLS (linux/tls.h): where the kernel has the "tls" upper-layer
// protocol, a TLS 1.3 socket can carry plaintext once its keys are
// installed with setsockopt(SOL_TLS, TLS_TX/TLS_RX); splice then works on
// it again. This file detects the ULP and lays out the crypto_info
// structures; the layouts are checked against the C header by a test that
// compiles one (ktls_linux_test.go).

// Values from linux/tls.h.
const (
	ktlsTX          = 1
	ktlsRX          = 2
	ktlsVersion13   = 0x0304
	ktlsAESGCM128   = 51
	ktlsAESGCM256   = 52
	ktlsChaCha20    = 54
	ktlsRecSeqSize  = 8
	ktlsAESGCMIV    = 8 // the explicit part of the nonce; the implicit 4 bytes are the salt
	ktlsAESGCMSalt  = 4
	ktlsChaChaIV    = 12
	ktlsInfoHdrSize = 4 // struct tls_crypto_info { __u16 version; __u16 cipher_type; }
)

// ErrNoKTLS is returned where the kernel has no "tls" ULP.
var ErrNoKTLS = errors.New("tunnel: the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\")")

// appendCryptoInfo appends the struct tls12_crypto_info_* for a TLS 1.3
// direction: suite, its key and 12-byte IV (as the key schedule derives
// them) and the sequence number of the next record.
func appendCryptoInfo(dst []byte, suite uint16, key []byte, iv [12]byte, seq uint64) ([]byte, error) {
	var cipher uint16
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		cipher = ktlsAESGCM128
	case tls.TLS_AES_256_GCM_SHA384:
		cipher = ktlsAESGCM256
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		cipher = ktlsChaCha20
	default:
		return dst, fmt.Errorf("tunnel: kTLS: suite %#04x", suite)
	}
	if want := map[uint16]int{ktlsAESGCM128: 16, ktlsAESGCM256: 32, ktlsChaCha20: 32}[cipher]; len(key) != want {
		return dst, fmt.Errorf("tunnel: kTLS: key of %d bytes, want %d", len(key), want)
	}
	dst = binary.NativeEndian.AppendUint16(dst, ktlsVersion13)
	dst = binary.NativeEndian.AppendUint16(dst, cipher)
	if cipher == ktlsChaCha20 {
		// { info; iv[12]; key[32]; rec_seq[8]; } (no salt)
		dst = append(dst, iv[:]...)
		dst = append(dst, key...)
	} else {
		// { info; iv[8]; key[16|32]; salt[4]; rec_seq[8]; }: the kernel
		// builds the nonce as salt || iv, then XORs the sequence number in
		// as TLS 1.3 does, so the derived IV splits into salt and iv.
		dst = append(dst, iv[ktlsAESGCMSalt:]...)
		dst = append(dst, key...)
		dst = append(dst, iv[:ktlsAESGCMSalt]...)
	}
	return binary.BigEndian.AppendUint64(dst, seq), nil
}

var ktlsProbe struct {
	once sync.Once
	err  error
}

// KTLSAvailable reports whether this kernel can carry TLS records itself:
// it sets the "tls" ULP on a connected loopback socket once per process.
// The error says why not (ErrNoKTLS where the ULP is missing).
func KTLSAvailable() error {
	ktlsProbe.once.Do(func() { ktlsProbe.err = probeKTLS() })
	return ktlsProbe.err
}

func probeKTLS() error {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("tunnel: kTLS probe: %w", err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return fmt.Errorf("tunnel: kTLS probe: %w", err)
	}
	defer c.Close()
	if s, err := ln.AcceptTCP(); err == nil {
		defer s.Close()
	}
	sc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_ULP, "tls") }); err != nil {
		return err
	}
	if errors.Is(serr, unix.ENOENT) || errors.Is(serr, unix.ENOPROTOOPT) || errors.Is(serr, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: %v", ErrNoKTLS, serr)
	}
	return serr
}

// installKTLS sets the tls ULP on fd and installs one direction's keys
// (dir ktlsTX or ktlsRX).
func installKTLS(fd int, dir int, info []byte) error {
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_ULP, "tls"); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return unix.SetsockoptString(fd, unix.SOL_TLS, dir, string(info))
}
