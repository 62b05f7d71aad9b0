// Package limit holds the edge's per-client limits: connection counts and
// token buckets per client address (an IPv6 client by its /64), the
// --rate-limit and --allowed-origin rules and their matching (balancer's
// Matcher, the rules of --route). Tables guard themselves; rules are
// immutable once built. No I/O.
package limit

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Key is a client address as a table key: IPv4 (mapped) as is, IPv6 by
// its /64, since one host usually holds a whole /64.
type Key [16]byte

// KeyOf is ip as a table key.
func KeyOf(ip netip.Addr) Key {
	k := ip.Unmap().As16()
	if ip.Unmap().Is6() {
		clear(k[8:])
	}
	return k
}

const tableShards = 64

func shardOf(k Key) int {
	h := uint32(2166136261) // FNV-1a
	for _, c := range k {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % tableShards)
}

// ConnTable counts open connections per client address. An entry exists
// only while its count is above zero, so its size is bounded by the open
// connections.
type ConnTable struct {
	shards [tableShards]struct {
		mu sync.Mutex // guards m
		m  map[Key]int32
		_  [40]byte // keep shards on their own cache lines
	}
}

// Acquire counts one more connection for k unless it already has limit.
func (t *ConnTable) Acquire(k Key, limit int) bool {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[Key]int32)
	}
	if int(sh.m[k]) >= limit {
		return false
	}
	sh.m[k]++
	return true
}

// Release counts one connection of k fewer.
func (t *ConnTable) Release(k Key) {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	if sh.m[k] <= 1 {
		delete(sh.m, k)
	} else {
		sh.m[k]--
	}
	sh.mu.Unlock()
}

// BucketTable holds token buckets per client address for one rate limit.
// A bucket that has refilled to its burst is the same as no bucket, so
// full ones are dropped: on a sweep at most once a minute per shard, and
// whenever a shard reaches bucketShardMax entries. When a shard is still
// full after that (a flood from more addresses than fit), an arbitrary
// entry goes: memory stays bounded (about 64 bytes × 65,536 per rule), at
// worst a client in that flood gets a fresh burst.
type BucketTable struct {
	rate  float64 // tokens per second; immutable
	burst float64 // immutable
	start time.Time

	shards [tableShards]struct {
		mu    sync.Mutex // guards m and swept
		m     map[Key]bucket
		swept int64 // nanoseconds since start of the last sweep
	}
}

const (
	bucketShardMax = 1024 // × tableShards = 65,536 addresses per rule
	bucketSweep    = int64(time.Minute)
)

type bucket struct {
	tokens float64
	at     int64 // nanoseconds since start when tokens was computed
}

// NewBucketTable is a table of buckets of burst tokens refilled at rate per second.
func NewBucketTable(rate float64, burst int) *BucketTable {
	return &BucketTable{rate: rate, burst: float64(burst), start: time.Now()}
}

// Now is the table's clock, for Take.
func (t *BucketTable) Now() int64 { return int64(time.Since(t.start)) }

// Take takes a token for k at now (nanoseconds since t.start). When none is
// left it returns false and the seconds until one will be.
func (t *BucketTable) Take(k Key, now int64) (ok bool, retryAfter int) {
	sh := &t.shards[shardOf(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[Key]bucket)
	}
	b, found := sh.m[k]
	if !found {
		if len(sh.m) >= bucketShardMax || now-sh.swept > bucketSweep {
			t.sweepLocked(sh.m, now)
			sh.swept = now
			for k2 := range sh.m {
				if len(sh.m) < bucketShardMax {
					break
				}
				delete(sh.m, k2)
			}
		}
		b = bucket{tokens: t.burst, at: now}
	}
	b.tokens = min(t.burst, b.tokens+float64(now-b.at)/1e9*t.rate)
	b.at = now
	if b.tokens < 1 {
		sh.m[k] = b
		return false, int(math.Ceil((1 - b.tokens) / t.rate))
	}
	b.tokens--
	sh.m[k] = b
	return true, 0
}

// sweepLocked drops the buckets that have refilled.
func (t *BucketTable) sweepLocked(m map[Key]bucket, now int64) {
	for k, b := range m {
		if b.tokens+float64(now-b.at)/1e9*t.rate >= t.burst {
			delete(m, k)
		}
	}
}

// Len is the number of buckets held.
func (t *BucketTable) Len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].m)
		t.shards[i].mu.Unlock()
	}
	return n
}
