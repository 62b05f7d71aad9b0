package tlsrec

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"math"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/crypto/chacha20poly1305"
)

var suites = []struct {
	name string
	id   uint16
}{
	{"AES128GCM", tls.TLS_AES_128_GCM_SHA256},
	{"AES256GCM", tls.TLS_AES_256_GCM_SHA384},
	{"CHACHA20", tls.TLS_CHACHA20_POLY1305_SHA256},
}

func secretLen(suite uint16) int {
	if suite == tls.TLS_AES_256_GCM_SHA384 {
		return 48
	}
	return 32
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pair returns a sealing and an opening Half sharing a random secret.
func pair(t testing.TB, suite uint16) (w, r *Half, secret []byte) {
	t.Helper()
	secret = randBytes(secretLen(suite))
	w, err := NewHalf(suite, secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err = NewHalf(suite, secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	return w, r, secret
}

// refKeys derives key and iv independently of the package (hand-written
// HMAC-based HKDF-Expand), as a cross-check of the key schedule.
func refKeys(suite uint16, secret []byte) (aead cipher.AEAD, iv []byte) {
	var hf func() hash.Hash
	keyLen := 16
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		hf = sha256.New
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		hf, keyLen = sha256.New, 32
	case tls.TLS_AES_256_GCM_SHA384:
		hf, keyLen = sha512.New384, 32
	}
	expand := func(label string, n int) []byte {
		full := "tls13 " + label
		info := append([]byte{byte(n >> 8), byte(n), byte(len(full))}, full...)
		info = append(info, 0)
		var out, prev []byte
		for i := byte(1); len(out) < n; i++ {
			m := hmac.New(hf, secret)
			m.Write(prev)
			m.Write(info)
			m.Write([]byte{i})
			prev = m.Sum(nil)
			out = append(out, prev...)
		}
		return out[:n]
	}
	key := expand("key", keyLen)
	iv = expand("iv", 12)
	if suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		aead, _ = chacha20poly1305.New(key)
	} else {
		b, _ := aes.NewCipher(key)
		aead, _ = cipher.NewGCM(b)
	}
	return aead, iv
}

// handRecord seals inner (TLSInnerPlaintext, built by the caller) by hand
// with the reference keys at sequence number seq.
func handRecord(suite uint16, secret []byte, seq uint64, inner []byte) []byte {
	aead, iv := refKeys(suite, secret)
	nonce := bytes.Clone(iv)
	for i := 0; i < 8; i++ {
		nonce[11-i] ^= byte(seq >> (8 * i))
	}
	n := len(inner) + aead.Overhead()
	hdr := []byte{23, 3, 3, byte(n >> 8), byte(n)}
	return aead.Seal(hdr, nonce, inner, hdr)
}

func TestNewHalfErrors(t *testing.T) {
	if _, err := NewHalf(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, make([]byte, 32), 0); err == nil {
		t.Error("TLS 1.2 suite accepted")
	}
	if _, err := NewHalf(0, make([]byte, 32), 0); err == nil {
		t.Error("suite 0 accepted")
	}
	for _, s := range suites {
		for _, n := range []int{0, 16, 31, 33, 47, 48, 49, 64} {
			if n == secretLen(s.id) {
				continue
			}
			if _, err := NewHalf(s.id, make([]byte, n), 0); err == nil {
				t.Errorf("%s: secret of %d bytes accepted", s.name, n)
			}
		}
		h, err := NewHalf(s.id, make([]byte, secretLen(s.id)), 7)
		if err != nil || h.Suite() != s.id || h.Seq() != 7 {
			t.Errorf("%s: NewHalf = %v, %v", s.name, h, err)
		}
	}
	// Init with h's own secret (aliasing) restarts the same keys.
	for _, s := range suites {
		w, r, _ := pair(t, s.id)
		rec := w.Seal(nil, TypeApplicationData, []byte("x"))
		r.Seal(nil, TypeApplicationData, nil) // move r's seq
		if err := r.Init(s.id, r.secret[:r.secretLen], 0); err != nil {
			t.Fatal(err)
		}
		if _, c, err := r.Open(rec); err != nil || string(c) != "x" {
			t.Errorf("%s: Init from own secret: %v", s.name, err)
		}
	}
	// Init failure leaves the Half unchanged.
	h, _ := NewHalf(tls.TLS_AES_128_GCM_SHA256, make([]byte, 32), 3)
	if err := h.Init(tls.TLS_AES_256_GCM_SHA384, make([]byte, 32), 0); err == nil || h.Suite() != tls.TLS_AES_128_GCM_SHA256 || h.Seq() != 3 {
		t.Errorf("failed Init changed the Half: %v", err)
	}
}

// TestKeySchedule: records sealed by the package open with independently
// derived keys, and the reverse.
func TestKeySchedule(t *testing.T) {
	for _, s := range suites {
		secret := randBytes(secretLen(s.id))
		h, _ := NewHalf(s.id, secret, 1000)
		rec := h.Seal(nil, TypeApplicationData, []byte("hello"))
		aead, iv := refKeys(s.id, secret)
		nonce := bytes.Clone(iv)
		nonce[10] ^= 1000 >> 8
		nonce[11] ^= 1000 & 0xff
		got, err := aead.Open(nil, nonce, rec[5:], rec[:5])
		if err != nil || string(got) != "hello\x17" {
			t.Errorf("%s: reference open = %q, %v", s.name, got, err)
		}
		r, _ := NewHalf(s.id, secret, 1000)
		typ, c, err := r.Open(handRecord(s.id, secret, 1000, []byte("world\x16")))
		if err != nil || typ != TypeHandshake || string(c) != "world" {
			t.Errorf("%s: open of reference record = %d %q %v", s.name, typ, c, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		w, r, _ := pair(t, s.id)
		for _, n := range []int{0, 1, 2, 15, 16, 17, 64, 1000, MaxPlain - 1, MaxPlain} {
			for _, typ := range []uint8{TypeApplicationData, TypeHandshake, TypeAlert} {
				if n == 0 && typ != TypeApplicationData {
					continue
				}
				msg := randBytes(n)
				prefix := []byte("prefix")
				rec := w.Seal(bytes.Clone(prefix), typ, msg)
				if !bytes.Equal(rec[:len(prefix)], prefix) {
					t.Fatal("Seal clobbered dst")
				}
				rec = rec[len(prefix):]
				if len(rec) != w.SealedLen(n) {
					t.Fatalf("%s: len %d, SealedLen %d", s.name, len(rec), w.SealedLen(n))
				}
				if l, ok, err := RecordLen(rec); !ok || err != nil || l != len(rec) {
					t.Fatalf("RecordLen = %d %v %v", l, ok, err)
				}
				seq := r.Seq()
				gt, c, err := r.Open(rec)
				if err != nil || gt != typ || !bytes.Equal(c, msg) || c == nil {
					t.Fatalf("%s n=%d: Open = %d, %d bytes, %v", s.name, n, gt, len(c), err)
				}
				if r.Seq() != seq+1 || w.Seq() != r.Seq() {
					t.Fatalf("seq %d -> %d (writer %d)", seq, r.Seq(), w.Seq())
				}
			}
		}
	}
}

// TestSealInPlace: content read directly where its ciphertext goes.
func TestSealInPlace(t *testing.T) {
	for _, s := range suites {
		w, r, _ := pair(t, s.id)
		for _, grow := range []bool{false, true} {
			msg := randBytes(1000)
			capacity := 3 + w.SealedLen(len(msg))
			if grow {
				capacity = 3 + HeaderLen + len(msg) // room for the content, not the tag
			}
			buf := make([]byte, 3, capacity)
			copy(buf[3+HeaderLen:cap(buf)], msg)
			rec := w.Seal(buf, TypeApplicationData, buf[3+HeaderLen:3+HeaderLen+len(msg)])
			_, c, err := r.Open(rec[3:])
			if err != nil || !bytes.Equal(c, msg) {
				t.Fatalf("%s grow=%v: in-place seal broken: %v", s.name, grow, err)
			}
		}
	}
}

func TestSealPanics(t *testing.T) {
	w, _, _ := pair(t, tls.TLS_AES_128_GCM_SHA256)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Seal of MaxPlain+1 did not panic")
			}
		}()
		w.Seal(nil, TypeApplicationData, make([]byte, MaxPlain+1))
	}()
	if w.Seq() != 0 {
		t.Error("seq moved")
	}
	h, _ := NewHalf(tls.TLS_AES_128_GCM_SHA256, make([]byte, 32), math.MaxUint64)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Seal at seq 2^64-1 did not panic")
			}
		}()
		h.Seal(nil, TypeApplicationData, nil)
	}()
	rec := []byte{23, 3, 3, 0, 17}
	rec = append(rec, make([]byte, 17)...)
	if _, c, err := h.Open(rec); err != ErrSeqExhausted || c != nil {
		t.Errorf("Open at seq 2^64-1 = %v", err)
	}
}

func TestRecordLen(t *testing.T) {
	cases := []struct {
		b   []byte
		n   int
		ok  bool
		err error
	}{
		{nil, 0, false, nil},
		{[]byte{23, 3, 3, 0}, 0, false, nil},
		{[]byte{23, 3, 3, 0, 0}, 5, true, nil},
		{[]byte{23, 3, 3, 0x41, 0x00}, 5 + MaxCipher, true, nil},
		{[]byte{23, 3, 3, 0x41, 0x01}, 0, false, ErrRecordOverflow},
		{[]byte{23, 3, 3, 0xff, 0xff}, 0, false, ErrRecordOverflow},
		{[]byte{21, 3, 3, 0, 2}, 7, true, nil},
		{[]byte{20, 3, 3, 0, 1}, 6, true, nil},
		{[]byte{24, 3, 3, 0, 1}, 0, false, ErrUnexpectedType},
		{[]byte{19, 3, 3, 0, 1}, 0, false, ErrUnexpectedType},
		{[]byte{'G', 'E', 'T', ' ', '/'}, 0, false, ErrUnexpectedType},
		{[]byte{23, 3, 1, 0, 1}, 0, false, ErrBadVersion},
		{[]byte{23, 3, 4, 0, 1}, 0, false, ErrBadVersion},
		{[]byte{23, 2, 3, 0, 1}, 0, false, ErrBadVersion},
	}
	for _, c := range cases {
		n, ok, err := RecordLen(c.b)
		if n != c.n || ok != c.ok || err != c.err {
			t.Errorf("RecordLen(%v) = %d %v %v, want %d %v %v", c.b, n, ok, err, c.n, c.ok, c.err)
		}
		if err != nil && !errors.Is(err, ErrBadRecord) {
			t.Errorf("%v does not match ErrBadRecord", err)
		}
	}
}

// streamRecords cuts a byte stream into records with RecordLen, feeding it
// in chunks of the given sizes (cycled), as a non-blocking reader would.
func streamRecords(t testing.TB, stream []byte, chunks []int) [][]byte {
	var buf []byte
	var recs [][]byte
	pos, ci := 0, 0
	for pos < len(stream) || len(buf) > 0 {
		if pos < len(stream) {
			c := chunks[ci%len(chunks)]
			ci++
			if c > len(stream)-pos {
				c = len(stream) - pos
			}
			buf = append(buf, stream[pos:pos+c]...)
			pos += c
		}
		for {
			n, ok, err := RecordLen(buf)
			if err != nil {
				t.Fatalf("RecordLen: %v", err)
			}
			if !ok || len(buf) < n {
				break
			}
			recs = append(recs, bytes.Clone(buf[:n]))
			buf = buf[n:]
		}
		if pos == len(stream) && len(buf) > 0 {
			t.Fatalf("%d trailing bytes", len(buf))
		}
	}
	return recs
}

func TestSplitEveryBoundary(t *testing.T) {
	for _, s := range suites {
		w, _, secret := pair(t, s.id)
		var stream []byte
		var msgs [][]byte
		var types []uint8
		for i, n := range []int{0, 1, 300, 5, 2000, 0, 17} {
			typ := uint8(TypeApplicationData)
			if i == 4 {
				typ = TypeHandshake
			}
			m := randBytes(n)
			msgs = append(msgs, m)
			types = append(types, typ)
			stream = w.Seal(stream, typ, m)
		}
		check := func(recs [][]byte, what string) {
			r, _ := NewHalf(s.id, secret, 0)
			if len(recs) != len(msgs) {
				t.Fatalf("%s %s: %d records, want %d", s.name, what, len(recs), len(msgs))
			}
			for i, rec := range recs {
				typ, c, err := r.Open(rec)
				if err != nil || typ != types[i] || !bytes.Equal(c, msgs[i]) {
					t.Fatalf("%s %s: record %d: %v", s.name, what, i, err)
				}
			}
		}
		check(streamRecords(t, stream, []int{1}), "byte at a time")
		for split := 0; split <= len(stream); split++ {
			check(streamRecords(t, stream, []int{split, len(stream)}), fmt.Sprintf("split at %d", split))
		}
		check(streamRecords(t, stream, []int{3, 7, 1, 4096, 2}), "mixed chunks")
	}
}

func TestPadding(t *testing.T) {
	for _, s := range suites {
		secret := randBytes(secretLen(s.id))
		r, _ := NewHalf(s.id, secret, 5)
		for i, tc := range []struct {
			inner []byte
			typ   uint8
			want  string
		}{
			{[]byte("data\x17\x00"), 23, "data"},
			{append([]byte("data\x17"), make([]byte, 1000)...), 23, "data"},
			{append([]byte("\x17"), make([]byte, 200)...), 23, ""},
			{append([]byte("\x01\x00\x00\x15"), make([]byte, 30)...), 21, "\x01\x00\x00"}, // zeros inside content stay
			{append(bytes.Repeat([]byte{'a'}, MaxPlain), 0x17), 23, string(bytes.Repeat([]byte{'a'}, MaxPlain))},
			{append([]byte("x\x17"), make([]byte, MaxPlain-1)...), 23, "x"}, // inner = MaxPlain+1 exactly
		} {
			seq := r.Seq()
			typ, c, err := r.Open(handRecord(s.id, secret, seq, tc.inner))
			if err != nil || typ != tc.typ || string(c) != tc.want {
				t.Errorf("%s case %d: Open = %d %q %v", s.name, i, typ, c, err)
			}
		}
		for i, tc := range []struct {
			inner []byte
			err   error
		}{
			{nil, ErrNoContentType}, // ciphertext = tag only: too short
			{[]byte{0}, ErrNoContentType},
			{make([]byte, 500), ErrNoContentType},
			{[]byte("\x16"), ErrEmptyFragment},
			{[]byte("\x15\x00\x00"), ErrEmptyFragment},
			{[]byte("abc\x14"), ErrBadInnerType},
			{[]byte("abc\x18\x00"), ErrBadInnerType},
			{append([]byte("x\x17"), make([]byte, MaxPlain)...), ErrRecordOverflow}, // inner MaxPlain+2
		} {
			seq := r.Seq()
			rec := handRecord(s.id, secret, seq, tc.inner)
			typ, c, err := r.Open(rec)
			want := tc.err
			if len(tc.inner) == 0 {
				want = ErrShortRecord
			}
			if err != want || c != nil || typ != 0 || r.Seq() != seq {
				t.Errorf("%s bad case %d: Open = %d %q %v, want %v", s.name, i, typ, c, err, want)
			}
			if !errors.Is(err, ErrBadRecord) {
				t.Errorf("%v does not match ErrBadRecord", err)
			}
		}
	}
}

func TestBitFlip(t *testing.T) {
	for _, s := range suites {
		for _, n := range []int{0, 40, MaxPlain} {
			w, r, _ := pair(t, s.id)
			msg := randBytes(n)
			rec := w.Seal(nil, TypeApplicationData, msg)
			step := 1
			if n == MaxPlain {
				step = 97 // sample the big record
			}
			for i := 0; i < len(rec); i += step {
				for bit := 0; bit < 8; bit++ {
					bad := bytes.Clone(rec)
					bad[i] ^= 1 << bit
					typ, c, err := r.Open(bad)
					if err == nil || c != nil || typ != 0 || r.Seq() != 0 {
						t.Fatalf("%s n=%d: flip byte %d bit %d: Open = %d %d bytes %v seq %d", s.name, n, i, bit, typ, len(c), err, r.Seq())
					}
					if i >= HeaderLen && err != ErrBadRecordMAC {
						t.Fatalf("flip in ciphertext gave %v", err)
					}
				}
			}
			// Truncated and extended buffers are refused too.
			for _, bad := range [][]byte{rec[:len(rec)-1], append(bytes.Clone(rec), 0), rec[:HeaderLen]} {
				if _, c, err := r.Open(bytes.Clone(bad)); err == nil || c != nil {
					t.Fatalf("%s: wrong-length buffer accepted", s.name)
				}
			}
			// The genuine record still opens: nothing moved.
			if _, c, err := r.Open(rec); err != nil || !bytes.Equal(c, msg) || r.Seq() != 1 {
				t.Fatalf("%s: genuine record after flips: %v", s.name, err)
			}
			if _, _, err := r.Open(nil); err == nil {
				t.Fatal("empty buffer accepted")
			}
		}
	}
}

func TestReplayAndReorder(t *testing.T) {
	w, r, _ := pair(t, tls.TLS_CHACHA20_POLY1305_SHA256)
	a := w.Seal(nil, TypeApplicationData, []byte("a"))
	b := w.Seal(nil, TypeApplicationData, []byte("b"))
	if _, _, err := r.Open(bytes.Clone(b)); err != ErrBadRecordMAC {
		t.Errorf("reordered record: %v", err)
	}
	if _, _, err := r.Open(bytes.Clone(a)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Open(bytes.Clone(a)); err != ErrBadRecordMAC {
		t.Errorf("replayed record: %v", err)
	}
	if _, c, err := r.Open(b); err != nil || string(c) != "b" {
		t.Errorf("b: %q %v", c, err)
	}
}

func TestOpenHeaderErrors(t *testing.T) {
	w, r, _ := pair(t, tls.TLS_AES_128_GCM_SHA256)
	rec := w.Seal(nil, TypeApplicationData, []byte("abc"))
	for _, tc := range []struct {
		mod  func([]byte) []byte
		err  error
		alrt uint8
	}{
		{func(b []byte) []byte { b[0] = TypeHandshake; return b }, ErrUnexpectedType, AlertUnexpectedMessage},
		{func(b []byte) []byte { b[0] = TypeChangeCipherSpec; return b }, ErrUnexpectedType, AlertUnexpectedMessage},
		{func(b []byte) []byte { b[0] = 99; return b }, ErrUnexpectedType, AlertUnexpectedMessage},
		{func(b []byte) []byte { b[2] = 1; return b }, ErrBadVersion, AlertDecodeError},
		{func(b []byte) []byte { return []byte{23, 3, 3, 0, 16} }, ErrLengthMismatch, AlertDecodeError},
		{func(b []byte) []byte { return append([]byte{23, 3, 3, 0, 16}, make([]byte, 16)...) }, ErrShortRecord, AlertDecodeError},
		{func(b []byte) []byte { return append([]byte{23, 3, 3, 0x41, 0x01}, make([]byte, MaxCipher+1)...) }, ErrRecordOverflow, AlertRecordOverflow},
		{func(b []byte) []byte { b[len(b)-1]++; return b }, ErrBadRecordMAC, AlertBadRecordMAC},
	} {
		typ, c, err := r.Open(tc.mod(bytes.Clone(rec)))
		if err != tc.err || c != nil || typ != 0 || AlertFor(err) != tc.alrt {
			t.Errorf("Open = %d %q %v (alert %d), want %v (alert %d)", typ, c, err, AlertFor(err), tc.err, tc.alrt)
		}
	}
	if AlertFor(nil) != AlertCloseNotify || AlertFor(errors.New("x")) != AlertInternalError ||
		AlertFor(fmt.Errorf("wrapped: %w", ErrNoContentType)) != AlertUnexpectedMessage ||
		AlertFor(ErrBadRequestUpdate) != AlertIllegalParameter {
		t.Error("AlertFor mapping")
	}
	if errors.Is(ErrBadRecordMAC, ErrBadRecord) {
		t.Error("ErrBadRecordMAC must be distinct from ErrBadRecord")
	}
}

func TestUpdate(t *testing.T) {
	for _, s := range suites {
		w, r, secret := pair(t, s.id)
		w.Seal(nil, TypeApplicationData, []byte("x"))
		w.Update()
		if w.Seq() != 0 {
			t.Fatal("Update did not reset seq")
		}
		rec := w.Seal(nil, TypeApplicationData, []byte("after"))
		if _, _, err := r.Open(bytes.Clone(rec)); err != ErrBadRecordMAC {
			t.Fatalf("old key opened a new-key record: %v", err)
		}
		r.Update()
		if _, c, err := r.Open(rec); err != nil || string(c) != "after" {
			t.Fatalf("%s: after Update: %v", s.name, err)
		}
		// Independent derivation of the next secret.
		var hf func() hash.Hash = sha256.New
		if s.id == tls.TLS_AES_256_GCM_SHA384 {
			hf = sha512.New384
		}
		n := len(secret)
		info := append([]byte{0, byte(n), byte(len("tls13 traffic upd"))}, "tls13 traffic upd"...)
		info = append(info, 0)
		m := hmac.New(hf, secret)
		m.Write(info)
		m.Write([]byte{1})
		next := m.Sum(nil)[:n]
		ref, _ := NewHalf(s.id, next, 1)
		if _, c, err := ref.Open(w.Seal(nil, TypeApplicationData, []byte("ref"))); err != nil || string(c) != "ref" {
			t.Fatalf("%s: Update differs from reference: %v", s.name, err)
		}
	}
}

func TestNeedsUpdate(t *testing.T) {
	for _, s := range suites {
		limit := uint64(LimitAESGCM)
		if s.id == tls.TLS_CHACHA20_POLY1305_SHA256 {
			limit = LimitChaCha20
		}
		h, _ := NewHalf(s.id, make([]byte, secretLen(s.id)), limit-1)
		if h.NeedsUpdate() {
			t.Errorf("%s: NeedsUpdate at limit-1", s.name)
		}
		h.Seal(nil, TypeApplicationData, nil)
		if !h.NeedsUpdate() {
			t.Errorf("%s: !NeedsUpdate at limit", s.name)
		}
		h.Update()
		if h.NeedsUpdate() {
			t.Errorf("%s: NeedsUpdate after Update", s.name)
		}
		h.Init(s.id, make([]byte, secretLen(s.id)), math.MaxUint64)
		if !h.NeedsUpdate() {
			t.Errorf("%s: !NeedsUpdate at 2^64-1", s.name)
		}
	}
}

func TestHandshakeMessages(t *testing.T) {
	for _, req := range []bool{false, true} {
		ku := AppendKeyUpdate([]byte("pre"), req)[3:]
		typ, body, rest, err := NextHandshake(ku)
		if err != nil || typ != HandshakeKeyUpdate || len(rest) != 0 {
			t.Fatalf("NextHandshake(KeyUpdate) = %d %v %v", typ, rest, err)
		}
		if got, err := ParseKeyUpdate(body); err != nil || got != req {
			t.Fatalf("ParseKeyUpdate = %v %v", got, err)
		}
	}
	// A ticket then a KeyUpdate in one record.
	content := []byte{HandshakeNewSessionTicket, 0, 0, 3, 'a', 'b', 'c'}
	content = AppendKeyUpdate(content, true)
	typ, body, rest, err := NextHandshake(content)
	if err != nil || typ != HandshakeNewSessionTicket || string(body) != "abc" || len(rest) != 5 {
		t.Fatalf("NextHandshake = %d %q %v %v", typ, body, rest, err)
	}
	if typ, _, rest, err = NextHandshake(rest); err != nil || typ != HandshakeKeyUpdate || len(rest) != 0 {
		t.Fatal("second message")
	}
	// KeyUpdate not last.
	bad := AppendKeyUpdate(nil, false)
	bad = append(bad, HandshakeNewSessionTicket, 0, 0, 0)
	if _, _, _, err := NextHandshake(bad); err != ErrKeyUpdateNotLast {
		t.Errorf("KeyUpdate not last: %v", err)
	}
	for _, frag := range [][]byte{nil, {4}, {4, 0, 0}, {4, 0, 0, 5, 1, 2, 3, 4}, {24, 0, 0, 1}} {
		if _, body, _, err := NextHandshake(frag); err != ErrFragmented || body != nil {
			t.Errorf("NextHandshake(%v) = %v", frag, err)
		}
	}
	for _, b := range [][]byte{nil, {0, 0}, {2}, {255}} {
		if _, err := ParseKeyUpdate(b); err == nil {
			t.Errorf("ParseKeyUpdate(%v) accepted", b)
		}
	}
	if _, err := ParseKeyUpdate([]byte{2}); AlertFor(err) != AlertIllegalParameter {
		t.Error("request_update 2 must map to illegal_parameter")
	}
	a := AppendAlert(nil, AlertLevelWarning, AlertCloseNotify)
	if l, d, err := ParseAlert(a); err != nil || l != 1 || d != 0 || len(a) != 2 {
		t.Error("alert round trip")
	}
	for _, b := range [][]byte{nil, {1}, {1, 0, 1}} {
		if _, _, err := ParseAlert(b); err != ErrBadAlert {
			t.Errorf("ParseAlert(%v) = %v", b, err)
		}
	}
}

func TestParseKeyLogLine(t *testing.T) {
	l, cr, s, err := ParseKeyLogLine([]byte("CLIENT_TRAFFIC_SECRET_0 0a0b 00ff10\n"))
	if err != nil || l != "CLIENT_TRAFFIC_SECRET_0" || !bytes.Equal(cr, []byte{10, 11}) || !bytes.Equal(s, []byte{0, 255, 16}) {
		t.Errorf("ParseKeyLogLine = %q %x %x %v", l, cr, s, err)
	}
	for _, bad := range []string{"", "A B", "A zz 00", "A 00 0", "A 00 00 00"} {
		if _, _, _, err := ParseKeyLogLine([]byte(bad)); err == nil {
			t.Errorf("ParseKeyLogLine(%q) accepted", bad)
		}
	}
}

func TestAllocs(t *testing.T) {
	for _, s := range suites {
		for _, n := range []int{64, 16 << 10} {
			w, r, _ := pair(t, s.id)
			msg := randBytes(n)
			buf := make([]byte, 0, w.SealedLen(n))
			rec := make([]byte, w.SealedLen(n))
			_ = r
			if a := testing.AllocsPerRun(100, func() {
				buf = w.Seal(buf[:0], TypeApplicationData, msg)
			}); a != 0 {
				t.Errorf("%s Seal %d: %v allocs", s.name, n, a)
			}
			// Open: pre-sealed records, one per run (AllocsPerRun runs once more to warm up).
			w2, r2, _ := pair(t, s.id)
			recs := make([][]byte, 101)
			for i := range recs {
				recs[i] = w2.Seal(nil, TypeApplicationData, msg)
			}
			i := 0
			if a := testing.AllocsPerRun(100, func() {
				copy(rec, recs[i])
				i++
				if _, _, err := r2.Open(rec); err != nil {
					panic(err)
				}
			}); a != 0 {
				t.Errorf("%s Open %d: %v allocs", s.name, n, a)
			}
		}
	}
}

// TestHalfMemory measures the heap held by a Half (with its AEAD) over
// 10,000 Halves; the figures go into the package comment.
func TestHalfMemory(t *testing.T) {
	t.Logf("unsafe.Sizeof(Half{}) = %d", unsafe.Sizeof(Half{}))
	if unsafe.Sizeof(Half{}) > 144 {
		t.Errorf("Half grew to %d bytes", unsafe.Sizeof(Half{}))
	}
	const N = 10000
	for _, s := range suites {
		secret := randBytes(secretLen(s.id))
		hs := make([]*Half, N)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for i := range hs {
			hs[i], _ = NewHalf(s.id, secret, 0)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		per := float64(m1.HeapAlloc-m0.HeapAlloc) / N
		t.Logf("%s: %.0f heap bytes per Half", s.name, per)
		if per > 2048 {
			t.Errorf("%s: %.0f bytes per Half", s.name, per)
		}
		for _, h := range hs {
			h.Rest()
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		rest := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / N
		t.Logf("%s: %.0f heap bytes per Half at rest", s.name, rest)
		if rest > 192 {
			t.Errorf("%s: %.0f bytes per Half at rest, want the Half alone", s.name, rest)
		}
		runtime.KeepAlive(hs)
	}
}

func benchSeal(b *testing.B, suite uint16, n int) {
	w, _, _ := pair(b, suite)
	msg := randBytes(n)
	buf := make([]byte, 0, w.SealedLen(n))
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		buf = w.Seal(buf[:0], TypeApplicationData, msg)
	}
}

func benchOpen(b *testing.B, suite uint16, n int) {
	w, r, _ := pair(b, suite)
	msg := randBytes(n)
	// Pre-seal a batch; reopen them with a Half rewound to their seq each round.
	const batch = 256
	recs := make([][]byte, batch)
	for i := range recs {
		recs[i] = w.Seal(nil, TypeApplicationData, msg)
	}
	work := make([]byte, w.SealedLen(n))
	secret := r.secret[:r.secretLen]
	b.SetBytes(int64(n))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == batch {
			b.StopTimer()
			r.Init(suite, secret, 0)
			i = 0
			b.StartTimer()
		}
		copy(work, recs[i])
		if _, _, err := r.Open(work); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkSeal64(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) { benchSeal(b, s.id, 64) })
	}
}

func BenchmarkSeal16K(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) { benchSeal(b, s.id, 16<<10) })
	}
}

func BenchmarkOpen64(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) { benchOpen(b, s.id, 64) })
	}
}

func BenchmarkOpen16K(b *testing.B) {
	for _, s := range suites {
		b.Run(s.name, func(b *testing.B) { benchOpen(b, s.id, 16<<10) })
	}
}
