package tunnel

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

// refFrames is the reference parser the tracker is checked against: it
// parses a whole stream at once, the plain way.
type refFrames struct {
	boundary  map[int]bool // offsets between two frames (0 included)
	payloads  [][2]uint64  // [start, end) of each payload seen (the last may end past the stream)
	closeEnd  int          // end of the first close frame's header; -1: none
	badAt     int          // offset of the first byte that makes it invalid; -1: none
	completes int          // offset of the last boundary
}

func refParse(b []byte) refFrames {
	r := refFrames{boundary: map[int]bool{0: true}, closeEnd: -1, badAt: -1}
	i := 0
	for i < len(b) {
		h := i
		op := b[h] & 0x0f
		fin := b[h]&0x80 != 0
		ctrl := op >= 8
		if !(op <= 2 || (op >= 8 && op <= 10)) || (ctrl && !fin) {
			r.badAt = h
			return r
		}
		if h+1 >= len(b) {
			return r
		}
		masked := b[h+1]&0x80 != 0
		l7 := uint64(b[h+1] & 0x7f)
		if ctrl && l7 > 125 {
			r.badAt = h + 1
			return r
		}
		n := h + 2
		var length uint64
		switch l7 {
		case 126:
			if n+2 > len(b) {
				return r
			}
			length = uint64(binary.BigEndian.Uint16(b[n:]))
			n += 2
		case 127:
			if n < len(b) && b[n]&0x80 != 0 {
				r.badAt = n
				return r
			}
			if n+8 > len(b) {
				return r
			}
			length = binary.BigEndian.Uint64(b[n:])
			n += 8
		default:
			length = l7
		}
		if masked {
			n += 4
		}
		if n > len(b) {
			return r
		}
		if op == 8 && r.closeEnd < 0 {
			r.closeEnd = n
		}
		end := uint64(n) + length
		if length > 0 {
			r.payloads = append(r.payloads, [2]uint64{uint64(n), end})
		}
		if end > uint64(len(b)) {
			return r
		}
		i = int(end)
		r.boundary[i] = true
		r.completes = i
	}
	return r
}

// payloadEnd returns the end of the payload that offset k is in.
func (r *refFrames) payloadEnd(k int) (uint64, bool) {
	for _, p := range r.payloads {
		if p[0] <= uint64(k) && uint64(k) < p[1] {
			return p[1], true
		}
	}
	return 0, false
}

// check feeds stream to a tracker in the chunks that splits gives (offsets,
// increasing) and compares its state with ref's after every chunk; every
// chunk is also fed once with stop to a copy, which must stop at the next
// boundary.
func checkTracker(t *testing.T, stream []byte, splits []int) {
	t.Helper()
	ref := refParse(stream)
	var f frames
	at := 0
	for _, next := range append(splits, len(stream)) {
		if next < at || next > len(stream) {
			continue
		}
		// With stop, from here: the next boundary after at, within the chunk.
		g := f
		got := g.feed(stream[at:next], true)
		want := next - at
		if ref.badAt < 0 || at <= ref.badAt {
			for k := at + 1; k <= next; k++ {
				if ref.boundary[k] && (ref.badAt < 0 || k <= ref.badAt) {
					want = k - at
					break
				}
			}
		}
		if got != want {
			t.Fatalf("feed(stop) of [%d:%d] took %d, want %d (stream % x)", at, next, got, want, stream)
		}
		if n := f.feed(stream[at:next], false); n != next-at {
			t.Fatalf("feed of [%d:%d] took %d", at, next, n)
		}
		at = next
		wantBad := ref.badAt >= 0 && at > ref.badAt
		if f.bad() != wantBad {
			t.Fatalf("after %d bytes: bad %v, want %v (stream % x)", at, f.bad(), wantBad, stream)
		}
		if wantBoundary := ref.boundary[at] && !wantBad; f.boundary() != wantBoundary {
			t.Fatalf("after %d bytes: boundary %v, want %v (stream % x, splits %v)", at, f.boundary(), wantBoundary, stream, splits)
		}
		if !wantBad {
			if end, ok := ref.payloadEnd(at); ok {
				if !f.inPayload() || uint64(f.rem) != end-uint64(at) {
					t.Fatalf("after %d bytes: inPayload %v rem %d, want rem %d", at, f.inPayload(), f.rem, end-uint64(at))
				}
			} else if f.inPayload() {
				t.Fatalf("after %d bytes: in a payload, want not", at)
			}
			if seen := f.st&wsCloseSeen != 0; seen != (ref.closeEnd >= 0 && at >= ref.closeEnd) {
				t.Fatalf("after %d bytes: close seen %v", at, seen)
			}
		}
	}
}

// frame builds one frame with a payload of n bytes (the payload's bytes are
// 0x81, which would be a valid header if it were misread as one... almost).
func frame(fin bool, op byte, n int, masked bool, enc int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var mb byte
	if masked {
		mb = 0x80
	}
	out := []byte{b0}
	switch {
	case enc == 7 || (enc == 0 && n < 126):
		out = append(out, mb|byte(n))
	case enc == 16 || (enc == 0 && n < 1<<16):
		out = append(out, mb|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mb|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if masked {
		out = append(out, 0x11, 0x22, 0x33, 0x44)
	}
	for range n {
		out = append(out, 0x82)
	}
	return out
}

// Every split point of headers with 7-, 16- and 64-bit lengths, masked and
// not: the tracker sees the same boundaries whatever the chunks.
func TestFramesEverySplit(t *testing.T) {
	for _, masked := range []bool{false, true} {
		for _, c := range []struct {
			n, enc int
		}{{0, 7}, {5, 7}, {125, 7}, {126, 16}, {300, 16}, {70000, 0}, {3, 64}, {3, 16}} {
			stream := append(frame(true, 2, c.n, masked, c.enc), frame(true, 1, 1, masked, 7)...)
			stream = append(stream, frame(true, 9, 0, masked, 7)...)
			hdrEnd := len(frame(true, 2, 0, masked, c.enc)) + 2 // past the first header, into the payload
			for i := 0; i <= hdrEnd && i <= len(stream); i++ {
				for j := i; j <= hdrEnd+2 && j <= len(stream); j++ {
					checkTracker(t, stream, []int{i, j})
				}
			}
			// And around the second and third headers.
			second := len(stream) - len(frame(true, 1, 1, masked, 7)) - len(frame(true, 9, 0, masked, 7))
			for i := second - 1; i <= len(stream); i++ {
				checkTracker(t, stream, []int{i})
			}
		}
	}
}

// Byte by byte, a message fragmented with control frames (ping, pong)
// between its fragments, zero-length frames, and a close.
func TestFramesByteByByte(t *testing.T) {
	for _, masked := range []bool{false, true} {
		var stream []byte
		stream = append(stream, frame(false, 1, 10, masked, 0)...)  // text, first fragment
		stream = append(stream, frame(true, 9, 4, masked, 0)...)    // ping between fragments
		stream = append(stream, frame(false, 0, 0, masked, 0)...)   // empty continuation
		stream = append(stream, frame(true, 10, 0, masked, 0)...)   // empty pong
		stream = append(stream, frame(true, 0, 200, masked, 0)...)  // last fragment
		stream = append(stream, frame(true, 2, 0, masked, 64)...)   // empty binary, 64-bit length
		stream = append(stream, frame(true, 8, 2, masked, 0)...)    // close
		stream = append(stream, frame(true, 2, 1000, masked, 0)...) // after the close (still frames)
		splits := make([]int, len(stream))
		for i := range splits {
			splits[i] = i
		}
		checkTracker(t, stream, splits)
		var f frames
		boundaries := 0
		for i := range stream {
			f.feed(stream[i:i+1], false)
			if f.boundary() {
				boundaries++
			}
		}
		if boundaries != 8 || f.st&wsCloseSeen == 0 {
			t.Fatalf("masked %v: %d boundaries, close seen %v; want 8, true", masked, boundaries, f.st&wsCloseSeen != 0)
		}
	}
}

// Invalid framing makes the direction untrackable, whatever the split.
func TestFramesInvalid(t *testing.T) {
	long64 := frame(true, 2, 0, false, 64)
	long64[2] = 0x80 // the 64-bit length's most significant bit
	for name, bad := range map[string][]byte{
		"reserved opcode 3":    {0x83, 0x00},
		"reserved opcode 0xb":  {0x8b, 0x00},
		"fragmented ping":      {0x09, 0x00},
		"control of 126 bytes": {0x89, 126, 0, 126},
		"64-bit length MSB":    long64,
	} {
		stream := append(frame(true, 1, 3, true, 7), bad...)
		for i := 0; i <= len(stream); i++ {
			checkTracker(t, stream, []int{i})
		}
		var f frames
		f.feed(stream, false)
		if !f.bad() || f.boundary() {
			t.Fatalf("%s: bad %v boundary %v", name, f.bad(), f.boundary())
		}
		// Untrackable for good.
		f.feed(frame(true, 1, 0, false, 7), false)
		if !f.bad() || f.boundary() {
			t.Fatalf("%s: trackable again", name)
		}
	}
}

func TestSkipHTTPHead(t *testing.T) {
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
	for _, c := range []struct {
		in, rest string
		ok       bool
	}{
		{head, "", true},
		{head + "\x81\x02hi", "\x81\x02hi", true},
		{"\x81\x02hi", "\x81\x02hi", true},
		{"HTTP/1.1 101 Switching", "", false},
		{"", "", true},
	} {
		rest, ok := skipHTTPHead([]byte(c.in))
		if string(rest) != c.rest || ok != c.ok {
			t.Fatalf("skipHTTPHead(%q) = %q, %v", c.in, rest, ok)
		}
	}
}

func TestCloseFrameBytes(t *testing.T) {
	if got := appendCloseFrame(nil, 1012, false, [4]byte{}); string(got) != "\x88\x02\x03\xf4" {
		t.Fatalf("unmasked 1012: % x", got)
	}
	got := appendCloseFrame(nil, 1001, true, [4]byte{1, 2, 3, 4})
	if string(got[:6]) != "\x88\x82\x01\x02\x03\x04" || got[6]^1 != 0x03 || got[7]^2 != 0xe9 {
		t.Fatalf("masked 1001: % x", got)
	}
	var f frames
	if f.feed(got, false); !f.boundary() || f.st&wsCloseSeen == 0 {
		t.Fatal("the tracker does not take our own close frame as one")
	}
}

// Random streams of valid frames (and a little noise), random chunks.
func TestFramesRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for range 300 {
		var stream []byte
		for range 1 + rng.Intn(8) {
			op := []byte{0, 1, 2, 8, 9, 10}[rng.Intn(6)]
			n := rng.Intn(140)
			if op >= 8 {
				n = rng.Intn(126)
			} else if rng.Intn(4) == 0 {
				n = rng.Intn(70000)
			}
			stream = append(stream, frame(op >= 8 || rng.Intn(2) == 0, op, n, rng.Intn(2) == 0, []int{0, 0, 16, 64}[rng.Intn(4)])...)
		}
		if rng.Intn(5) == 0 {
			stream = append(stream, byte(rng.Intn(256)), byte(rng.Intn(256)), byte(rng.Intn(256)))
		}
		var splits []int
		for k := 0; k < len(stream); k += 1 + rng.Intn(20) {
			splits = append(splits, k)
		}
		checkTracker(t, stream, splits)
	}
}

// FuzzFrames compares the tracker with the reference parser: the first two
// bytes choose the chunk sizes, the rest is the stream.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{3, 7, 0x81, 0x05, 'h', 'e', 'l', 'l', 'o', 0x89, 0x80, 1, 2, 3, 4})
	f.Add(append([]byte{1, 1}, frame(false, 2, 300, true, 0)...))
	f.Add(append([]byte{2, 5}, frame(true, 2, 3, false, 64)...))
	f.Add([]byte{0, 0, 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		a, b := int(data[0])%17+1, int(data[1])%29+1
		stream := data[2:]
		var splits []int
		for k, i := 0, 0; k < len(stream); i++ {
			splits = append(splits, k)
			if i%2 == 0 {
				k += a
			} else {
				k += b
			}
		}
		checkTracker(t, stream, splits)
	})
}

// BenchmarkFramesFeed: the tracker's cost per read: a 64 B echo frame
// (header and payload in one read), and a 16 KiB read in the middle of a
// big frame's payload.
func BenchmarkFramesFeed(b *testing.B) {
	small := frame(true, 2, 58, true, 0)
	b.Run("64B", func(b *testing.B) {
		var f frames
		for i := 0; i < b.N; i++ {
			f.feed(small, false)
		}
		if !f.boundary() {
			b.Fatal("not at a boundary")
		}
	})
	b.Run("16KiB-payload", func(b *testing.B) {
		f := frames{rem: 1 << 62}
		buf := make([]byte, 16<<10)
		for i := 0; i < b.N; i++ {
			f.feed(buf, false)
		}
	})
}
