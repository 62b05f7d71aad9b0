package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/balancer"
)

func TestParseListenAddr(t *testing.T) {
	for _, v := range []string{":8080", ":0", "127.0.0.1:0", "0.0.0.0:65535", "[::]:80", "[::1]:80", "[fe80::1%lo]:80",
		"[::ffff:127.0.0.1]:80", "localhost:80", "example.com.:443", "a-b.c_d.example:1", "x1:80"} {
		if _, err := parseListenAddr("listen", v); err != nil {
			t.Errorf("%q: %v, want it accepted", v, err)
		}
	}
	for _, c := range []struct{ v, why string }{
		{"127.0.0.1:notaport", "port"}, {"127.0.0.1:65536", "port"}, {"127.0.0.1:-1", "port"}, {"127.0.0.1:+80", "port"},
		{"127.0.0.1:", "port"}, {"127.0.0.1:http", "port"},
		{"999.0.0.1:80", "IPv4"}, {"1.2.3:80", "IPv4"}, {"1.2.3.04:80", "IPv4"}, {"0:80", "IPv4"},
		{"[::1::2]:80", "IPv6"}, {"[1.2.3.4%x]:80", "IPv6"},
		{"bogus", "HOST:PORT"}, {"[::1", "HOST:PORT"}, {"::1:80", "HOST:PORT"}, {"", "HOST:PORT"},
		{"-bad.example:80", "host name"}, {"a..b:80", "host name"}, {"a b:80", "host name"}, {"host.123:80", "host name"},
		{strings.Repeat("a", 64) + ".example:80", "host name"},
	} {
		_, err := parseListenAddr("tls-listen", c.v)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", c.v, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, `"--tls-listen"`) || !strings.Contains(msg, c.why) || strings.Contains(msg, "\n") {
			t.Errorf("%q: %q, want one line naming \"--tls-listen\" and %s", c.v, msg, c.why)
		}
	}
}

// Two listeners on one address are refused; port 0 never conflicts.
func TestCheckOverlaps(t *testing.T) {
	lookup := func(name string) (netip.Addr, bool) {
		switch name {
		case "localhost":
			return netip.MustParseAddr("127.0.0.1"), true
		case "six.example":
			return netip.MustParseAddr("::1"), true
		}
		return netip.Addr{}, false
	}
	type la = [2]string // flag, value
	for _, c := range []struct {
		addrs []la
		flag  string // the flag the error names; "" for no error
	}{
		{[]la{{"listen", "127.0.0.1:8080"}, {"admin", "127.0.0.1:8080"}}, "admin"},
		{[]la{{"listen", ":8080"}, {"admin", "127.0.0.1:8080"}}, "admin"},
		{[]la{{"listen", "127.0.0.1:8080"}, {"admin", ":8080"}}, "admin"},
		{[]la{{"listen", "0.0.0.0:8080"}, {"tls-listen", "127.0.0.1:8080"}}, "tls-listen"},
		{[]la{{"listen", "[::]:8080"}, {"tls-listen", "127.0.0.1:8080"}}, "tls-listen"},
		{[]la{{"listen", "[::]:8080"}, {"listen", "0.0.0.0:8080"}}, "listen"},
		{[]la{{"listen", "127.0.0.1:8080"}, {"listen", "127.0.0.1:8080"}}, "listen"},
		{[]la{{"listen", "[::ffff:127.0.0.1]:8080"}, {"admin", "127.0.0.1:8080"}}, "admin"},
		{[]la{{"listen", "localhost:8080"}, {"admin", "127.0.0.1:8080"}}, "admin"},
		{[]la{{"listen", "LocalHost.:8080"}, {"admin", "localhost:8080"}}, "admin"},
		{[]la{{"listen", "unresolved.example:8080"}, {"admin", "Unresolved.Example:8080"}}, "admin"},
		{[]la{{"listen", "0.0.0.0:8080"}, {"admin", "localhost:8080"}}, "admin"},
		{[]la{{"listen", ":8080"}, {"admin", "unresolved.example:8080"}}, "admin"},
		{[]la{{"listen", "127.0.0.1:1"}, {"listen", "127.0.0.2:2"}, {"tls-listen", ":443"}, {"admin", "127.0.0.1:443"}}, "admin"},

		{[]la{{"listen", "127.0.0.1:0"}, {"listen", "127.0.0.1:0"}, {"tls-listen", ":0"}, {"admin", "127.0.0.1:0"}}, ""},
		{[]la{{"listen", "127.0.0.1:8080"}, {"admin", "127.0.0.2:8080"}}, ""},
		{[]la{{"listen", ":8080"}, {"admin", ":9090"}}, ""},
		{[]la{{"listen", "0.0.0.0:8080"}, {"admin", "[::1]:8080"}}, ""},
		{[]la{{"listen", "0.0.0.0:8080"}, {"admin", "six.example:8080"}}, ""},
		{[]la{{"listen", "localhost:8080"}, {"admin", "six.example:8080"}}, ""},
		{[]la{{"listen", "a.example:8080"}, {"admin", "b.example:8080"}}, ""},
	} {
		var addrs []listenAddr
		for _, a := range c.addrs {
			l, err := parseListenAddr(a[0], a[1])
			if err != nil {
				t.Fatalf("%v: %v", a, err)
			}
			addrs = append(addrs, l)
		}
		err := checkOverlaps(addrs, lookup)
		switch {
		case c.flag == "" && err != nil:
			t.Errorf("%v: %v, want no overlap", c.addrs, err)
		case c.flag == "":
		case err == nil:
			t.Errorf("%v: accepted, want an overlap named on --%s", c.addrs, c.flag)
		case !strings.HasPrefix(err.Error(), `"--`+c.flag+`" flag: `) || !strings.Contains(err.Error(), "refused"):
			t.Errorf("%v: %q, want one line naming \"--%s\"", c.addrs, err, c.flag)
		}
	}
}

func TestDerivedKeyNote(t *testing.T) {
	for _, c := range []struct {
		mode   balancer.StickyMode
		secret string
		note   bool
	}{
		{balancer.StickyAuto, "", true}, {balancer.StickySID, "", true}, {balancer.StickyCookie, "", true},
		{balancer.StickyIP, "", false}, {balancer.StickyNone, "", false},
		{balancer.StickyAuto, "0123456789abcdef", false}, {balancer.StickyCookie, "0123456789abcdef", false},
	} {
		n := derivedKeyNote(balancer.StickyConfig{Mode: c.mode, Secret: []byte(c.secret)})
		if (n != "") != c.note || n != "" && (!strings.Contains(n, "--sticky-secret") || strings.Contains(n, "\n")) {
			t.Errorf("--sticky %s, secret %q: note %q, want one: %v (one line naming --sticky-secret)", c.mode, c.secret, n, c.note)
		}
	}
}
