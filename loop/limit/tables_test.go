package limit

import (
	"net/netip"
	"testing"
	"time"
)

// Token buckets on an injected clock: burst, refill, Retry-After.
func TestBucketRefill(t *testing.T) {
	tb := NewBucketTable(2, 3) // 2/s, burst 3
	k := KeyOf(netip.MustParseAddr("192.0.2.1"))
	sec := int64(time.Second)
	for i := range 3 {
		if ok, _ := tb.Take(k, 0); !ok {
			t.Fatalf("take %d within the burst refused", i+1)
		}
	}
	if ok, retry := tb.Take(k, 0); ok || retry != 1 {
		t.Fatalf("fourth: ok %v retry %d, want refused, 1 s", ok, retry)
	}
	if ok, _ := tb.Take(k, sec/2); !ok { // one token back after 0.5 s
		t.Fatal("refused after refill")
	}
	if ok, _ := tb.Take(k, sec/2); ok {
		t.Fatal("second take after 0.5 s allowed")
	}
	if ok, _ := tb.Take(KeyOf(netip.MustParseAddr("192.0.2.2")), sec/2); !ok {
		t.Fatal("another address refused")
	}
}

// IPv6 clients are counted by /64.
func TestKeyOfIPv6Prefix(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	c := netip.MustParseAddr("2001:db8:1:3::1")
	if KeyOf(a) != KeyOf(b) || KeyOf(a) == KeyOf(c) {
		t.Fatal("IPv6 keys are not by /64")
	}
	if KeyOf(netip.MustParseAddr("::ffff:192.0.2.1")) != KeyOf(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("mapped IPv4 differs from IPv4")
	}
}

// A flood from more addresses than the table holds keeps it bounded, and
// buckets that refilled are swept.
func TestBucketTableBounded(t *testing.T) {
	tb := NewBucketTable(1, 1)
	limit := bucketShardMax * tableShards
	for i := range 3 * limit {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tb.Take(KeyOf(ip), 0)
	}
	if n := tb.Len(); n > limit {
		t.Fatalf("%d buckets after %d addresses, limit %d", n, 3*limit, limit)
	}
	// Two minutes later every bucket has refilled: the next takes sweep them.
	later := 2 * int64(time.Minute)
	for i := range tableShards * 4 {
		tb.Take(KeyOf(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})), later)
	}
	if n := tb.Len(); n > tableShards*4 {
		t.Fatalf("%d buckets after the sweep, want only the %d new ones", n, tableShards*4)
	}
}
