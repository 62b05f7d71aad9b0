package tunnel

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crypto_info layouts, checked against linux/tls.h by a C program that
// prints each structure's size and field offsets (skipped without a C
// compiler or the header).
func TestKTLSCryptoInfoLayout(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	if _, err := os.Stat("/usr/include/linux/tls.h"); err != nil {
		t.Skip("no linux/tls.h")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "l.c")
	os.WriteFile(src, []byte(`#include <stdio.h>
#include <stddef.h>
#include <linux/tls.h>
#define S(T, name) printf(name " %zu %zu %zu %zu %zu\n", sizeof(struct T), offsetof(struct T, iv), offsetof(struct T, key), offsetof(struct T, salt), offsetof(struct T, rec_seq))
int main(void) {
	printf("consts %d %d %d %d %d %d\n", TLS_TX, TLS_RX, TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256, TLS_CIPHER_CHACHA20_POLY1305);
	S(tls12_crypto_info_aes_gcm_128, "4865");
	S(tls12_crypto_info_aes_gcm_256, "4866");
	S(tls12_crypto_info_chacha20_poly1305, "4867");
	return 0;
}
`), 0o644)
	bin := filepath.Join(dir, "l")
	if out, err := exec.Command(cc, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		n := make([]int, len(f)-1)
		for i := range n {
			n[i], _ = strconv.Atoi(f[i+1])
		}
		if f[0] == "consts" {
			want := []int{ktlsTX, ktlsRX, ktlsVersion13, ktlsAESGCM128, ktlsAESGCM256, ktlsChaCha20}
			for i := range want {
				if n[i] != want[i] {
					t.Errorf("constant %d: header %d, Go %d", i, n[i], want[i])
				}
			}
			continue
		}
		id, _ := strconv.Atoi(f[0])
		suite := uint16(id)
		size, ivOff, keyOff, saltOff, seqOff := n[0], n[1], n[2], n[3], n[4]
		keyLen := 32
		if suite == tls.TLS_AES_128_GCM_SHA256 {
			keyLen = 16
		}
		key := bytes.Repeat([]byte{0xAA}, keyLen)
		var iv [12]byte
		for i := range iv {
			iv[i] = byte(i + 1)
		}
		info, err := appendCryptoInfo(nil, suite, key, iv, 0x0102030405060708)
		if err != nil {
			t.Fatal(err)
		}
		if len(info) != size {
			t.Fatalf("%s: %d bytes, header says %d", tls.CipherSuiteName(suite), len(info), size)
		}
		if binary.NativeEndian.Uint16(info[2:]) == 0 || binary.NativeEndian.Uint16(info[0:]) != ktlsVersion13 {
			t.Errorf("%s: info header %x", tls.CipherSuiteName(suite), info[:4])
		}
		if !bytes.Equal(info[keyOff:keyOff+keyLen], key) {
			t.Errorf("%s: key not at offset %d", tls.CipherSuiteName(suite), keyOff)
		}
		if binary.BigEndian.Uint64(info[seqOff:]) != 0x0102030405060708 {
			t.Errorf("%s: rec_seq not at offset %d", tls.CipherSuiteName(suite), seqOff)
		}
		// The nonce the kernel builds, salt || iv (AES-GCM) or iv
		// (ChaCha20), must be the derived 12-byte IV.
		var nonce []byte
		if suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
			nonce = info[ivOff : ivOff+12]
		} else {
			nonce = append(append([]byte{}, info[saltOff:saltOff+4]...), info[ivOff:ivOff+8]...)
		}
		if !bytes.Equal(nonce, iv[:]) {
			t.Errorf("%s: salt||iv %x, want %x", tls.CipherSuiteName(suite), nonce, iv)
		}
	}
}

// Detection: here the kernel has no tls ULP; wherever it is missing,
// installing keys fails and the socket is untouched (the engine's own
// records are the fallback).
func TestKTLSDetection(t *testing.T) {
	err := KTLSAvailable()
	t.Logf("kTLS: %v", err)
	if err == nil {
		t.Skip("this kernel has kTLS: the fallback is not exercised here")
	}
	if !errors.Is(err, ErrNoKTLS) {
		t.Fatalf("probe failed for another reason: %v", err)
	}
	r := newRig(t)
	p, cfd, bfd := r.conns(t)
	defer p.close()
	defer closeFd(bfd)
	defer closeFd(cfd)
	info, _ := appendCryptoInfo(nil, tls.TLS_AES_128_GCM_SHA256, make([]byte, 16), [12]byte{}, 0)
	if err := installKTLS(cfd, ktlsTX, info); err == nil {
		t.Fatal("installKTLS succeeded where the probe found no ULP")
	}
	// The socket still carries bytes as they are.
	p.client.Write([]byte("plain"))
	buf := make([]byte, 5)
	n, _ := readFd(cfd, buf)
	if string(buf[:n]) != "plain" {
		t.Fatalf("after the failed install: %q", buf[:n])
	}
}

// readFd reads from a non-blocking fd, waiting up to a few seconds for input.
func readFd(fd int, b []byte) (int, error) {
	for i := 0; i < 500; i++ {
		n, err := unix.Read(fd, b)
		if err != unix.EAGAIN {
			return n, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, unix.EAGAIN
}
