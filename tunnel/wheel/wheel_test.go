package wheel

import (
	"math/rand"
	"testing"
)

// fired collects ids fired by one Advance.
type fired []int32

func (f *fired) fire(id int32) { *f = append(*f, id) }

func TestFiresAtDeadlineNotBefore(t *testing.T) {
	w := New(8, 0)
	w.Schedule(1, 5)
	w.Schedule(2, 3)
	for now := int64(1); now <= 6; now++ {
		var f fired
		w.Advance(now, f.fire)
		switch now {
		case 3:
			if len(f) != 1 || f[0] != 2 {
				t.Fatalf("tick %d: fired %v, want [2]", now, f)
			}
		case 5:
			if len(f) != 1 || f[0] != 1 {
				t.Fatalf("tick %d: fired %v, want [1]", now, f)
			}
		default:
			if len(f) != 0 {
				t.Fatalf("tick %d: fired %v, want none", now, f)
			}
		}
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d, want 0", w.Len())
	}
}

func TestLongDeadlineWaitsForItsRevolution(t *testing.T) {
	w := New(4, 0) // 4 slots; deadline 10 shares slot 2 with ticks 2 and 6
	w.Schedule(7, 10)
	for now := int64(1); now <= 9; now++ {
		var f fired
		w.Advance(now, f.fire)
		if len(f) != 0 {
			t.Fatalf("tick %d: fired early %v", now, f)
		}
	}
	var f fired
	w.Advance(10, f.fire)
	if len(f) != 1 || f[0] != 7 {
		t.Fatalf("tick 10: fired %v, want [7]", f)
	}
}

func TestJumpAheadFiresEverythingDue(t *testing.T) {
	w := New(8, 0)
	for id := int32(0); id < 20; id++ {
		w.Schedule(id, int64(id)+1) // deadlines 1..20
	}
	var f fired
	w.Advance(1000, f.fire)
	if len(f) != 20 || w.Len() != 0 {
		t.Fatalf("fired %d, Len %d; want 20, 0", len(f), w.Len())
	}
	w.Advance(999, f.fire) // going back is a no-op
}

func TestRemoveAndReschedule(t *testing.T) {
	w := New(16, 0)
	w.Schedule(1, 4)
	w.Schedule(2, 4)
	w.Schedule(3, 4)
	w.Remove(2)
	w.Remove(2) // twice is fine
	w.Schedule(3, 9)
	if at, ok := w.Scheduled(3); !ok || at != 9 {
		t.Fatalf("Scheduled(3) = %d, %v", at, ok)
	}
	var f fired
	w.Advance(8, f.fire)
	if len(f) != 1 || f[0] != 1 {
		t.Fatalf("fired %v, want [1]", f)
	}
	w.Advance(9, f.fire)
	if len(f) != 2 || f[1] != 3 {
		t.Fatalf("fired %v, want [1 3]", f)
	}
}

func TestPastDeadlineFiresOnNextTick(t *testing.T) {
	w := New(8, 100)
	w.Schedule(0, 50)
	var f fired
	w.Advance(100, f.fire)
	if len(f) != 0 {
		t.Fatal("fired without time moving")
	}
	w.Advance(101, f.fire)
	if len(f) != 1 {
		t.Fatalf("fired %v, want [0]", f)
	}
}

// The idle-timeout pattern: fire re-inserts at lastActive+timeout, and may
// remove other ids of the same slot while the slot is being fired.
func TestFireMayScheduleAndRemove(t *testing.T) {
	w := New(8, 0)
	for id := int32(0); id < 6; id++ {
		w.Schedule(id, 3)
	}
	var got []int32
	w.Advance(3, func(id int32) {
		got = append(got, id)
		switch id {
		case 5:
			w.Remove(4) // not yet visited: must not fire
		case 3:
			w.Schedule(3, 3+8) // same slot, next revolution
		case 2:
			w.Schedule(2, 3) // due now: fires on the next tick, not in this walk
		}
	})
	for _, id := range got {
		if id == 4 {
			t.Fatal("removed id fired")
		}
	}
	if len(got) != 5 {
		t.Fatalf("fired %v, want 5 ids", got)
	}
	if w.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (ids 2 and 3)", w.Len())
	}
	var f fired
	w.Advance(4, f.fire)
	if len(f) != 1 || f[0] != 2 {
		t.Fatalf("tick 4 fired %v, want [2]", f)
	}
	w.Advance(10, f.fire)
	if len(f) != 1 {
		t.Fatalf("fired early: %v", f)
	}
	w.Advance(11, f.fire)
	if len(f) != 2 || f[1] != 3 {
		t.Fatalf("tick 11 fired %v, want [2 3]", f)
	}
}

// Randomised check against a plain map: every id fires exactly once, at the
// first Advance whose tick is >= its deadline.
func TestRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	w := New(SlotsFor(37, 64), 0)
	model := map[int32]int64{}
	now := int64(0)
	for step := 0; step < 20000; step++ {
		switch r := rng.Intn(10); {
		case r < 5:
			id := int32(rng.Intn(300))
			at := now + int64(rng.Intn(100)) - 5
			w.Schedule(id, at)
			if at <= now {
				at = now + 1
			}
			model[id] = at
		case r < 6:
			id := int32(rng.Intn(300))
			w.Remove(id)
			delete(model, id)
		default:
			now += int64(rng.Intn(4))
			w.Advance(now, func(id int32) {
				at, ok := model[id]
				if !ok {
					t.Fatalf("fired unscheduled id %d", id)
				}
				if at > now {
					t.Fatalf("id %d fired at %d before deadline %d", id, now, at)
				}
				delete(model, id)
			})
			for id, at := range model {
				if at <= now {
					t.Fatalf("id %d due at %d not fired by %d", id, at, now)
				}
			}
		}
		if w.Len() != len(model) {
			t.Fatalf("Len %d, model %d", w.Len(), len(model))
		}
	}
}

func BenchmarkScheduleAdvance(b *testing.B) {
	b.ReportAllocs()
	w := New(512, 0)
	for id := int32(0); id < 4096; id++ {
		w.Schedule(id, int64(id%300)+1)
	}
	now := int64(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now++
		w.Advance(now, func(id int32) { w.Schedule(id, now+300) })
	}
}
