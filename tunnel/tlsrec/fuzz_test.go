package tlsrec

import (
	"bytes"
	"testing"
)

// FuzzRecordStream feeds arbitrary bytes to RecordLen and Open (which must
// never panic, and never return content or move seq on error), then builds
// a stream of valid records from the same input, cuts it at input-chosen
// points, and requires it to parse back exactly.
func FuzzRecordStream(f *testing.F) {
	zero := make([]byte, 48)
	h0, _ := NewHalf(suites[0].id, zero[:32], 0)
	f.Add([]byte{0, 23, 3, 3, 0, 17, 1, 2, 3})
	f.Add(h0.Seal([]byte{0}, TypeApplicationData, []byte("hello")))
	f.Add(append([]byte{2}, bytes.Repeat([]byte{23, 3, 3, 0, 20}, 10)...))
	f.Add([]byte{1, 23, 3, 3, 0x41, 0x00, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		s := suites[int(data[0])%len(suites)]
		data = data[1:]

		// 1. Arbitrary bytes as a record stream.
		h, _ := NewHalf(s.id, zero[:secretLen(s.id)], 0)
		rest := data
		for {
			n, ok, err := RecordLen(rest)
			if err != nil {
				if ok || n != 0 {
					t.Fatalf("RecordLen error with n=%d ok=%v", n, ok)
				}
				break
			}
			if !ok {
				if len(rest) >= HeaderLen {
					t.Fatal("RecordLen not ok with a full header")
				}
				break
			}
			if n < HeaderLen || n > HeaderLen+MaxCipher {
				t.Fatalf("RecordLen = %d", n)
			}
			if len(rest) < n {
				// An incomplete record: Open must refuse it too.
				seq := h.Seq()
				if typ, c, err := h.Open(bytes.Clone(rest)); err == nil || c != nil || typ != 0 || h.Seq() != seq {
					t.Fatal("Open accepted an incomplete record")
				}
				break
			}
			seq := h.Seq()
			typ, c, err := h.Open(bytes.Clone(rest[:n]))
			if err != nil {
				if c != nil || typ != 0 || h.Seq() != seq {
					t.Fatalf("Open error %v with typ %d, %d content bytes, seq %d->%d", err, typ, len(c), seq, h.Seq())
				}
				if AlertFor(err) == AlertInternalError {
					t.Fatalf("unexpected error %v", err)
				}
			} else if h.Seq() != seq+1 || len(c) > MaxPlain {
				t.Fatal("bad success")
			}
			rest = rest[n:]
		}

		// 2. A valid stream built from the input, cut at input-chosen points.
		w, _ := NewHalf(s.id, zero[:secretLen(s.id)], 0)
		var stream []byte
		var msgs [][]byte
		for i := 0; i < len(data); {
			// Each message: a length byte (scaled so big records appear too), then content.
			l := int(data[i])
			if l >= 250 {
				l = MaxPlain - (255 - l)
			}
			i++
			m := make([]byte, l)
			copy(m, data[i:])
			i += l
			msgs = append(msgs, m)
			stream = w.Seal(stream, TypeApplicationData, m)
			if len(msgs) == 8 {
				break
			}
		}
		chunks := make([]int, 0, len(data))
		for _, b := range data {
			chunks = append(chunks, int(b)*int(b)/16+1)
		}
		if len(chunks) == 0 {
			chunks = append(chunks, 1)
		}
		recs := streamRecords(t, stream, chunks)
		if len(recs) != len(msgs) {
			t.Fatalf("%d records, want %d", len(recs), len(msgs))
		}
		r, _ := NewHalf(s.id, zero[:secretLen(s.id)], 0)
		for i, rec := range recs {
			typ, c, err := r.Open(rec)
			if err != nil || typ != TypeApplicationData || !bytes.Equal(c, msgs[i]) {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	})
}
