// Package wheel is a hashed timing wheel for idle timeouts, keyed by small
// integer ids (slab indexes) so that it holds no pointers and allocates
// nothing once its arrays have grown to the largest id.
//
// Time is counted in ticks (int64, never wrapping in practice); the caller
// chooses what a tick is and feeds the current tick to Advance. The wheel
// has a fixed number of slots (a power of two); an id scheduled more than
// one revolution ahead stays in its slot and is skipped until its round
// comes, so any deadline works, and a wheel with at least timeout+2 slots
// visits each entry exactly once.
//
// Idle-timeout use: do not reschedule on activity. Keep lastActive next to
// the entry; when the entry fires, either expire it or Schedule it again at
// lastActive+timeout. That makes activity O(1) with no wheel work at all.
//
// A Wheel is not safe for concurrent use; each epoll loop owns one.
package wheel

const none = -1

// Wheel is a single-level hashed timing wheel. The zero value is not
// usable; call New.
type Wheel struct {
	mask  int64   // len(heads)-2; slot of tick t is t&mask
	heads []int32 // list head per slot; heads[len-1] is the list being fired
	cur   int64   // last tick processed by Advance; deadlines <= cur fire at once (next Advance)
	n     int     // ids scheduled

	// Per id, grown on demand by Schedule. where[id] == none: not scheduled.
	next, prev, where []int32
	at                []int64
}

// New returns a wheel with at least slots slots (rounded up to a power of
// two, minimum 2) whose current tick is start.
func New(slots int, start int64) *Wheel {
	size := 2
	for size < slots {
		size <<= 1
	}
	w := &Wheel{mask: int64(size - 1), heads: make([]int32, size+1), cur: start}
	for i := range w.heads {
		w.heads[i] = none
	}
	return w
}

// SlotsFor returns a slot count that makes every deadline up to
// timeoutTicks+1 ahead fire in its first revolution, capped at max.
func SlotsFor(timeoutTicks int64, max int) int {
	if timeoutTicks+2 > int64(max) {
		return max
	}
	return int(timeoutTicks + 2)
}

// Len returns the number of scheduled ids.
func (w *Wheel) Len() int { return w.n }

// Cur returns the last tick processed by Advance.
func (w *Wheel) Cur() int64 { return w.cur }

// Scheduled reports whether id is in the wheel, and its deadline.
func (w *Wheel) Scheduled(id int32) (at int64, ok bool) {
	if int(id) >= len(w.where) || w.where[id] == none {
		return 0, false
	}
	return w.at[id], true
}

func (w *Wheel) grow(id int32) {
	for int(id) >= len(w.where) {
		w.next = append(w.next, none)
		w.prev = append(w.prev, none)
		w.where = append(w.where, none)
		w.at = append(w.at, 0)
	}
}

// Schedule puts id in the wheel to fire at tick at (moving it if it was
// already scheduled). A deadline at or before the current tick fires on the
// next Advance that moves time forward. id must be >= 0.
func (w *Wheel) Schedule(id int32, at int64) {
	if int(id) >= len(w.where) {
		w.grow(id)
	}
	if w.where[id] != none {
		w.unlink(id)
	}
	if at <= w.cur {
		at = w.cur + 1
	}
	w.at[id] = at
	w.link(id, int32(at&w.mask))
}

// Remove takes id out of the wheel; it is a no-op if id is not scheduled.
func (w *Wheel) Remove(id int32) {
	if int(id) < len(w.where) && w.where[id] != none {
		w.unlink(id)
	}
}

func (w *Wheel) link(id, slot int32) {
	h := w.heads[slot]
	w.next[id] = h
	w.prev[id] = none
	if h != none {
		w.prev[h] = id
	}
	w.heads[slot] = id
	w.where[id] = slot
	w.n++
}

func (w *Wheel) unlink(id int32) {
	slot := w.where[id]
	p, n := w.prev[id], w.next[id]
	if p != none {
		w.next[p] = n
	} else {
		w.heads[slot] = n
	}
	if n != none {
		w.prev[n] = p
	}
	w.next[id], w.prev[id], w.where[id] = none, none, none
	w.n--
}

// Advance moves the wheel to tick now and calls fire for every id whose
// deadline is <= now, each once, after removing it from the wheel. fire may
// Schedule or Remove any id (including the one fired and ones not yet
// visited). Ticks that were skipped (now jumped ahead) are all processed. A
// now at or before the current tick does nothing.
func (w *Wheel) Advance(now int64, fire func(id int32)) {
	if now <= w.cur {
		return
	}
	from := w.cur + 1
	if now-from > w.mask { // jumped more than a revolution: each slot once
		from = now - w.mask
	}
	w.cur = now
	firing := int32(len(w.heads) - 1)
	for t := from; t <= now; t++ {
		slot := int32(t & w.mask)
		if w.heads[slot] == none {
			continue
		}
		// Move the slot's list to the firing list, so that fire may
		// Schedule into this slot (next revolution) or Remove anything
		// without disturbing the walk.
		w.heads[firing] = w.heads[slot]
		w.heads[slot] = none
		for id := w.heads[firing]; id != none; id = w.next[id] {
			w.where[id] = firing
		}
		for w.heads[firing] != none {
			id := w.heads[firing]
			w.unlink(id)
			if w.at[id] > now { // a later revolution: back in its slot
				w.link(id, int32(w.at[id]&w.mask))
				continue
			}
			fire(id)
		}
	}
}
