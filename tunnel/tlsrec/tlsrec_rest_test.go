package tlsrec

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// A Half at rest keeps its keys: records sealed and opened across Rest
// match a Half that never rested, for every suite, and Rest really drops
// the AEAD.
func TestRest(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		secret := bytes.Repeat([]byte{7}, 32)
		if suite == tls.TLS_AES_256_GCM_SHA384 {
			secret = bytes.Repeat([]byte{7}, 48)
		}
		a, _ := NewHalf(suite, secret, 5)
		b, _ := NewHalf(suite, secret, 5)
		c, _ := NewHalf(suite, secret, 5)
		for i := range 4 {
			if i == 2 {
				a.Update()
				b.Update()
				c.Update()
			}
			a.Rest()
			c.Rest()
			if !a.Resting() {
				t.Fatal("Rest kept the AEAD")
			}
			msg := []byte{byte(i), 1, 2, 3}
			ra := a.Seal(nil, TypeApplicationData, msg)
			rb := b.Seal(nil, TypeApplicationData, msg)
			if !bytes.Equal(ra, rb) {
				t.Fatalf("%s: a record sealed after Rest differs", tls.CipherSuiteName(suite))
			}
			_, got, err := c.Open(ra)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%s: open after Rest: %q %v", tls.CipherSuiteName(suite), got, err)
			}
			if a.Resting() || c.Resting() {
				t.Fatal("Seal/Open did not rebuild the AEAD")
			}
		}
	}
}
