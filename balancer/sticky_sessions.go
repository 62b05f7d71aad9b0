package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// pollTable counts Engine.IO sessions in their polling phase against their
// backends. A session holds one count on its backend's Active from
// SessionStarted until SessionUpgraded, until it has not been seen for its
// ttl, or until the table is full and it is the one due first.
//
// Expiry is lazy: a min-heap of (sid, deadline) is popped while its top is
// due, on every table operation and on Sweep. SessionSeen only moves the
// entry's deadline; when its old heap item comes due, the entry is pushed
// again with its new deadline. So the heap holds one item per session, and
// a session stops counting within one Sweep of its deadline.
type pollTable struct {
	mu  sync.Mutex            // guards m, h, seq
	m   map[string]*pollEntry // untagged sid → entry
	h   []pollItem            // min-heap by deadline; one item per entry of m
	seq uint64

	n    atomic.Int64 // len(m), read without the lock
	next atomic.Int64 // deadline of the heap top (UnixNano); 0 when empty
}

type pollEntry struct {
	b        *Backend
	seq      uint64 // matches the entry's heap item
	ttl      int64  // ns
	deadline int64  // UnixNano
}

type pollItem struct {
	sid      string
	seq      uint64
	deadline int64
}

// SessionStarted counts the Engine.IO session sid (untagged) against b
// until SessionUpgraded(sid), or until ttl passes without SessionSeen(sid)
// (ttl <= 0 means DefaultPollingTTL). A sid already counted is moved to b.
func (s *Sticky) SessionStarted(sid []byte, b *Backend, ttl time.Duration) {
	if ttl <= 0 {
		ttl = DefaultPollingTTL
	}
	now := s.now().UnixNano()
	t := &s.polling
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
	key := string(sid)
	if old := t.m[key]; old != nil {
		old.b.Release()
		delete(t.m, key)
	}
	for len(t.m) >= s.max {
		t.evictLocked()
	}
	t.seq++
	e := &pollEntry{b: b, seq: t.seq, ttl: int64(ttl), deadline: now + int64(ttl)}
	t.m[key] = e
	t.pushLocked(pollItem{sid: key, seq: e.seq, deadline: e.deadline})
	b.active.Add(1)
	t.publishLocked()
}

// SessionSeen extends the polling session sid by its ttl from now; a sid not
// counted is ignored. It does not allocate.
func (s *Sticky) SessionSeen(sid []byte) {
	t := &s.polling
	if t.n.Load() == 0 {
		return
	}
	now := s.now().UnixNano()
	t.mu.Lock()
	if e := t.m[string(sid)]; e != nil {
		e.deadline = now + e.ttl
	}
	t.expireLocked(now)
	t.publishLocked()
	t.mu.Unlock()
}

// SessionUpgraded stops counting the polling session sid: it became a
// tunnel, which counts by itself. A sid not counted is ignored.
func (s *Sticky) SessionUpgraded(sid []byte) {
	t := &s.polling
	if t.n.Load() == 0 {
		return
	}
	t.mu.Lock()
	if e := t.m[string(sid)]; e != nil {
		e.b.Release()
		delete(t.m, string(sid))
	}
	t.expireLocked(s.now().UnixNano())
	t.publishLocked()
	t.mu.Unlock()
}

// Sweep stops counting polling sessions whose time is up. It is cheap when
// nothing is due (two atomic loads and a clock read), so a caller may run it
// before every pick.
func (s *Sticky) Sweep() {
	t := &s.polling
	next := t.next.Load()
	if next == 0 {
		return
	}
	now := s.now().UnixNano()
	if now < next {
		return
	}
	t.mu.Lock()
	t.expireLocked(now)
	t.publishLocked()
	t.mu.Unlock()
}

// PollingSessions returns the number of sessions counted in polling phase.
func (s *Sticky) PollingSessions() int { return int(s.polling.n.Load()) }

// expireLocked pops due heap items, releasing their sessions or pushing
// them again when they were seen since.
func (t *pollTable) expireLocked(now int64) {
	for len(t.h) > 0 && t.h[0].deadline <= now {
		it := t.popLocked()
		e := t.m[it.sid]
		if e == nil || e.seq != it.seq {
			continue // upgraded or replaced
		}
		if e.deadline > now {
			t.pushLocked(pollItem{sid: it.sid, seq: e.seq, deadline: e.deadline})
			continue
		}
		e.b.Release()
		delete(t.m, it.sid)
	}
}

// evictLocked releases the session due first (of equal deadlines, the
// oldest).
func (t *pollTable) evictLocked() {
	for len(t.h) > 0 {
		it := t.popLocked()
		if e := t.m[it.sid]; e != nil && e.seq == it.seq {
			e.b.Release()
			delete(t.m, it.sid)
			return
		}
	}
}

// before orders the heap: by deadline, then by age.
func (a pollItem) before(b pollItem) bool {
	return a.deadline < b.deadline || a.deadline == b.deadline && a.seq < b.seq
}

func (t *pollTable) pushLocked(it pollItem) {
	t.h = append(t.h, it)
	i := len(t.h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !t.h[i].before(t.h[p]) {
			break
		}
		t.h[p], t.h[i] = t.h[i], t.h[p]
		i = p
	}
}

func (t *pollTable) popLocked() pollItem {
	top := t.h[0]
	last := len(t.h) - 1
	t.h[0] = t.h[last]
	t.h[last] = pollItem{}
	t.h = t.h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && t.h[l].before(t.h[m]) {
			m = l
		}
		if r < last && t.h[r].before(t.h[m]) {
			m = r
		}
		if m == i {
			break
		}
		t.h[m], t.h[i] = t.h[i], t.h[m]
		i = m
	}
	if cap(t.h) > 1024 && len(t.h) < cap(t.h)/4 {
		t.h = append([]pollItem(nil), t.h...)
	}
	return top
}

func (t *pollTable) publishLocked() {
	t.n.Store(int64(len(t.m)))
	if len(t.h) > 0 {
		t.next.Store(t.h[0].deadline)
	} else {
		t.next.Store(0)
	}
}
