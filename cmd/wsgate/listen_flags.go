package main

// Listener addresses: --listen, --tls-listen and --admin are checked when
// the flags are parsed, so that --check and a start refuse exactly the same
// command lines (one line naming the flag, exit status 2 for a start); two
// listeners of this process on one address are refused the same way; and
// --ready-file reports the addresses once every listener is bound.
//
// Every listener is opened with SO_REUSEPORT (loop/listen.go) so that a
// successor process can bind next to this one during a restart. The kernel
// therefore no longer stops one process from binding one address twice
// (-l :8080 --admin 127.0.0.1:8080 would split the port's connections
// between the proxy and the admin server), so that check is done here.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// listenAddr is one listener address of the command line.
type listenAddr struct {
	flag  string // "listen", "tls-listen" or "admin"
	value string // as given
	host  string // "" for every address
	port  int
}

// parseListenAddr checks one listener address: HOST:PORT where HOST is
// empty, an IP literal (IPv6 in brackets) or a host name, and PORT is a
// number 0–65535. Errors are *usageError naming the flag.
func parseListenAddr(flag, v string) (listenAddr, error) {
	bad := func(format string, a ...any) error {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--%s\" flag: %s", v, flag, fmt.Sprintf(format, a...))}
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return listenAddr{}, bad("want HOST:PORT, e.g. :8080, 127.0.0.1:8080 or [::1]:8080")
	}
	p, err := strconv.Atoi(port)
	if err != nil || port == "" || port[0] < '0' || port[0] > '9' || p < 0 || p > 65535 {
		return listenAddr{}, bad("port %q is not a number 0-65535", port)
	}
	if err := checkListenHost(host); err != nil {
		return listenAddr{}, bad("host %q %v", host, err)
	}
	return listenAddr{flag: flag, value: v, host: host, port: p}, nil
}

// checkListenHost accepts "", an IP address, or a host name (RFC 1123
// labels; the last one not all digits, so 999.0.0.1 is a bad IPv4 address
// rather than a name).
func checkListenHost(h string) error {
	if h == "" {
		return nil
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.ContainsAny(h, ":%") {
		return errors.New("is not an IPv6 address")
	}
	if strings.Trim(h, "0123456789.") == "" {
		return errors.New("is not an IPv4 address")
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return errors.New("is not a host name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("is not a host name")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return errors.New("is not a host name")
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("is not a host name (its last label is all digits)")
	}
	return nil
}

// listenAddrs checks every listener address of o, in the order --listen,
// --tls-listen, --admin, and refuses two that would share an address.
func (o *options) listenAddrs() ([]listenAddr, error) {
	var out []listenAddr
	add := func(flag string, vs ...string) error {
		for _, v := range vs {
			a, err := parseListenAddr(flag, v)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	}
	if err := add("listen", o.listen...); err != nil {
		return nil, err
	}
	if err := add("tls-listen", o.edge.tlsListen...); err != nil {
		return nil, err
	}
	if o.adminOn() {
		if err := add("admin", o.admin); err != nil {
			return nil, err
		}
	}
	return out, checkOverlaps(out, lookupListenHost)
}

// adminOn reports whether --admin names a listener ("off" and "" do not).
func (o *options) adminOn() bool { return o.admin != "off" && o.admin != "" }

// lookupListenHost is the address a listener on a host name binds: the
// one net.Listen picks (the first IPv4 address, else the first).
func lookupListenHost(name string) (netip.Addr, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil || len(ips) == 0 {
		return netip.Addr{}, false // the listener's own error says why
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip.Unmap(), true
		}
	}
	return ips[0], true
}

// hostKind is what a listener's host covers.
type hostKind struct {
	all  bool       // "", "::": every address (Linux binds [::] dual-stack)
	all4 bool       // "0.0.0.0": every IPv4 address
	ip   netip.Addr // a single address, when resolved
	name string     // a host name that did not resolve, lower case
}

func classifyHost(h string, lookup func(string) (netip.Addr, bool)) hostKind {
	if h == "" {
		return hostKind{all: true}
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap()
		switch {
		case ip == netip.IPv6Unspecified():
			return hostKind{all: true}
		case ip == netip.IPv4Unspecified():
			return hostKind{all4: true}
		}
		return hostKind{ip: ip}
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if ip, ok := lookup(name); ok {
		return classifyHost(ip.String(), func(string) (netip.Addr, bool) { return netip.Addr{}, false })
	}
	return hostKind{name: name}
}

// wildcard says which addresses a wildcard host covers; "" when it is
// not one.
func (k hostKind) wildcard() string {
	switch {
	case k.all:
		return "every address"
	case k.all4:
		return "every IPv4 address"
	}
	return ""
}

// overlap reports whether listeners on a and b (same port) would share an
// address.
func overlap(a, b hostKind) bool {
	switch {
	case a.all || b.all:
		return true
	case a.all4 && b.all4:
		return true
	case a.all4:
		return b.ip.IsValid() && b.ip.Is4()
	case b.all4:
		return a.ip.IsValid() && a.ip.Is4()
	case a.ip.IsValid() && b.ip.IsValid():
		return a.ip.WithZone("") == b.ip.WithZone("")
	case a.name != "" && b.name != "":
		return a.name == b.name
	}
	return false
}

// checkOverlaps refuses two listeners on one address: the same address
// twice, or a wildcard (:P, 0.0.0.0:P, [::]:P) and any other address on
// port P. Port 0 (the kernel picks a free port) never overlaps. The error
// names the later flag, and the earlier listener.
func checkOverlaps(addrs []listenAddr, lookup func(string) (netip.Addr, bool)) error {
	kinds := make([]hostKind, len(addrs))
	for i, a := range addrs {
		if a.port != 0 {
			kinds[i] = classifyHost(a.host, lookup)
		}
	}
	for j := range addrs {
		for i := range j {
			a, b := addrs[i], addrs[j]
			if a.port == 0 || a.port != b.port || !overlap(kinds[i], kinds[j]) {
				continue
			}
			var how string
			switch {
			case kinds[j].wildcard() != "":
				how = fmt.Sprintf("%s (%s on port %d) covers --%s %s", b.value, kinds[j].wildcard(), b.port, a.flag, a.value)
			case kinds[i].wildcard() != "":
				how = fmt.Sprintf("%s is covered by --%s %s (%s on port %d)", b.value, a.flag, a.value, kinds[i].wildcard(), a.port)
			default:
				how = fmt.Sprintf("%s is the address of --%s %s too", b.value, a.flag, a.value)
			}
			return &usageError{fmt.Sprintf("\"--%s\" flag: %s; two listeners of one process on one address are refused (SO_REUSEPORT is for a successor process only)", b.flag, how)}
		}
	}
	return nil
}

// checkReadyFile refuses a --ready-file whose directory does not exist, or
// that is a directory itself.
func checkReadyFile(path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--ready-file\" flag: no directory %s", path, dir)}
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--ready-file\" flag: a directory", path)}
	}
	return nil
}

// removeStaleReadyFile removes what an earlier run left at path, so that
// the file exists only once this process's listeners are bound.
func removeStaleReadyFile(path string) {
	if st, err := os.Lstat(path); err == nil && !st.IsDir() {
		os.Remove(path)
	}
}

// writeReadyFile writes lines (one per listener: "listen ADDR", "tls ADDR",
// "admin ADDR") to path atomically: a temporary file in the same directory,
// renamed into place, so a reader sees all of it or nothing.
func writeReadyFile(path string, lines []string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
