//go:build !race

package loop

import (
	"bytes"
	"testing"

	"github.com/wsgate/wsgate/loop/eio"
)

// TestStickyParseZeroAlloc: the per-request work of sid affinity (parse the
// target, cut the token, look it up, rebuild the target) allocates nothing.
func TestStickyParseZeroAlloc(t *testing.T) {
	target := []byte("/socket.io/?EIO=4&transport=polling&t=OxYz&sid=lv_VI97HAXpY6yYWAAAC.AbCdEfGh-_01")
	dst := make([]byte, 0, 256)
	n := testing.AllocsPerRun(200, func() {
		q := eio.ParseTarget(target)
		v := target[q.SIDStart:q.SIDEnd]
		sid := v[:len(v)-13]
		dst = append(dst[:0], target[:q.SIDStart+len(sid)]...)
		dst = append(dst, target[q.SIDEnd:]...)
	})
	if n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
	if !bytes.HasSuffix(dst, []byte("sid=lv_VI97HAXpY6yYWAAAC")) {
		t.Fatalf("target %q", dst)
	}
}
