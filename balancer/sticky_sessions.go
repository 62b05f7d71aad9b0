package balancer

import (
	"sync"
	"sync/atomic"
	"time"
)

// pollTable counts Engine.IO sessions in their polling phase against their
// backends: each session holds one count (its unit) on its backend's Active
// from SessionStarted until its upgrade, until it has not been seen for its
// ttl, or until the table is full and it is the one due first.
//
// A request of a counted session shares the session's unit instead of adding
// its own (Join, Leave), and an upgrade passes the unit on to the tunnel
// (Upgraded): a session weighs exactly one from handshake to close, whether
// it is polling, has a long-poll pending, or is mid-upgrade. Without this a
// session in transition weighs two or three, and sessions that arrive while
// others are in transition are spread by a count that no longer holds a
// moment later (measured: 150 Engine.IO 3 clients arriving in batches landed
// 44/61/45 on three nodes; arriving one by one, or all at once, 50/50/50).
//
// Expiry is lazy: a min-heap of (sid, deadline) is popped while its top is
// due, on every table operation and on Sweep. SessionSeen only moves the
// session's deadline; when its old heap item comes due, it is pushed again
// with its new deadline. So the heap holds one item per session, and a
// session stops counting within one Sweep of its deadline.
type pollTable struct {
	mu  sync.Mutex          // guards m, h, seq, and every Session's mutable fields
	m   map[string]*Session // untagged sid → live session
	h   []pollItem          // min-heap by deadline; one item per session of m
	seq uint64

	n    atomic.Int64 // len(m), read without the lock
	next atomic.Int64 // deadline of the heap top (UnixNano); 0 when empty
}

// Session is an Engine.IO session counted in its polling phase, as a
// request that joined it holds it (Join). Opaque.
type Session struct {
	sid string   // immutable; untagged
	b   *Backend // immutable
	ttl int64    // immutable; ns

	// Guarded by the table's mu.
	seq      uint64 // matches the session's heap item while live
	deadline int64  // UnixNano
	joined   int    // requests in flight that share the unit (Join without Leave)
	state    uint8
}

// Session states.
const (
	sessLive     uint8 = iota // in the table; holds its unit
	sessOrphaned              // out of the table (expired, evicted, replaced) while joined: the last Leave releases the unit
	sessGone                  // out of the table; the unit is released or passed to a tunnel
)

type pollItem struct {
	sid      string
	seq      uint64
	deadline int64
}

// SessionStarted counts the Engine.IO session sid (untagged) against b
// until it upgrades, or until ttl passes without SessionSeen(sid) (ttl <= 0
// means DefaultPollingTTL). A sid already counted is replaced.
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
		t.dropLocked(key, old)
	}
	for len(t.m) >= s.max {
		t.evictLocked()
	}
	t.seq++
	e := &Session{sid: key, b: b, seq: t.seq, ttl: int64(ttl), deadline: now + int64(ttl)}
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
// tunnel, which counts by itself (for a request that joined the session,
// use Upgraded instead). A sid not counted is ignored.
func (s *Sticky) SessionUpgraded(sid []byte) {
	t := &s.polling
	if t.n.Load() == 0 {
		return
	}
	t.mu.Lock()
	if e := t.m[string(sid)]; e != nil {
		t.dropLocked(string(sid), e)
	}
	t.expireLocked(s.now().UnixNano())
	t.publishLocked()
	t.mu.Unlock()
}

// Join makes a request of session sid, just counted against b by Pin or
// Pick, share the session's unit instead: b's Active drops by one again.
// It returns nil (and changes nothing) when sid is not counted here or is
// counted against another backend. Every non-nil result must be given to
// exactly one Leave or Upgraded, after the request's own Release.
func (s *Sticky) Join(sid []byte, b *Backend) *Session {
	t := &s.polling
	if t.n.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[string(sid)]
	if e == nil || e.b != b {
		return nil
	}
	e.joined++
	b.active.Add(-1)
	return e
}

// Leave ends a Join once the request is over and its Pick is Released: the
// count the request gave up is restored (or, for the last request of an
// orphaned session, the session's unit goes instead).
func (s *Sticky) Leave(e *Session) {
	t := &s.polling
	t.mu.Lock()
	defer t.mu.Unlock()
	e.joined--
	if e.state == sessOrphaned && e.joined == 0 {
		e.state = sessGone // the unit and the restored count cancel out
		return
	}
	e.b.active.Add(1)
}

// Upgraded ends a Join whose request became a tunnel: the session stops
// counting as such and its unit becomes the tunnel's (released when the
// tunnel ends, like the request's own Pick would have been).
func (s *Sticky) Upgraded(e *Session) {
	t := &s.polling
	t.mu.Lock()
	defer t.mu.Unlock()
	e.joined--
	switch e.state {
	case sessLive:
		delete(t.m, e.sid)
	case sessGone:
		e.b.active.Add(1) // no unit left to pass on: restore the request's own
	}
	e.state = sessGone
	t.publishLocked()
}

// dropLocked takes e (live, under key) out of the table and releases its
// unit, or leaves that to the last request still joined.
func (t *pollTable) dropLocked(key string, e *Session) {
	delete(t.m, key)
	if e.joined > 0 {
		e.state = sessOrphaned
		return
	}
	e.state = sessGone
	e.b.Release()
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
		t.dropLocked(it.sid, e)
	}
}

// evictLocked releases the session due first (of equal deadlines, the
// oldest).
func (t *pollTable) evictLocked() {
	for len(t.h) > 0 {
		it := t.popLocked()
		if e := t.m[it.sid]; e != nil && e.seq == it.seq {
			t.dropLocked(it.sid, e)
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
