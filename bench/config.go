// Package bench is the load generator behind wsbench: raw WebSocket and
// Socket.IO scenarios, ramp and arrival-rate models, latency histograms,
// reports, and a probe that explains why a proxy does not pass WebSockets.
// Hold (StartHold) keeps N connections open and reconnects each one that
// closes, for reconnect storms and rebalancing; tests can watch it run.
//
// It imports nothing of wsgate's own code, so that it checks the proxy
// honestly; its WebSocket client is its own, frame by frame.
package bench

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mode is a wsbench scenario.
type Mode string

// Scenarios.
const (
	ModeConnect   Mode = "connect"   // open and hold connections
	ModeEcho      Mode = "echo"      // message round trips
	ModeHandshake Mode = "handshake" // open and close as fast as possible
	ModeSocketIO  Mode = "socketio"  // Socket.IO clients emitting with acks
)

// Defaults for Config's zero fields.
const (
	DefaultConns            = 10
	DefaultDuration         = 10 * time.Second
	DefaultSize             = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialConcurrency  = 256
	DefaultProgressInterval = time.Second
	DefaultSocketIOPath     = "/socket.io/"
	DefaultEvent            = "echo"
)

// Config describes one run. The zero value of each field means its default.
type Config struct {
	Mode Mode
	// URL is ws://, wss://, http:// or https://. For socketio, a URL without a
	// path (or with "/") gets SocketIOPath.
	URL string
	// Conns is how many connections (echo, connect, socketio) or concurrent
	// workers (handshake) run. Default DefaultConns.
	Conns int
	// Duration is how long the run lasts after the last connection was
	// opened (the ramp); for handshake, the whole run. Default DefaultDuration.
	Duration time.Duration
	// Ramp opens connections at this many per second; 0 opens them as fast
	// as DialConcurrency allows.
	Ramp float64
	// Size is the payload of each message in bytes. Default DefaultSize.
	Size int
	// Rate, when set, is the total messages per second (echo, socketio) or
	// handshakes per second (handshake) across all connections: an open
	// model whose latency counts from when each message was due, so a
	// stalled server shows in the percentiles. 0 means closed loop.
	Rate float64
	// Text sends text frames instead of binary ones (echo).
	Text bool
	// SourceIPs are local addresses bound round-robin per connection.
	SourceIPs []netip.Addr
	// Headers are added to every handshake (and every Socket.IO request).
	Headers []Header
	// HandshakeTimeout bounds dial plus handshake. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DialConcurrency bounds handshakes in flight while ramping. Default
	// DefaultDialConcurrency.
	DialConcurrency int
	// InsecureTLS skips certificate checks for wss:// and https://.
	InsecureTLS bool

	// Transport is the Socket.IO transport: "polling" (Engine.IO handshake
	// over polling, then upgrade to websocket; the default) or "websocket".
	Transport string
	// EIO is the Engine.IO protocol version: 4 (Socket.IO 3 and 4; default)
	// or 3 (Socket.IO 2).
	EIO int
	// Event is the Socket.IO event emitted with an ack. Default DefaultEvent.
	Event string
	// Namespace is the Socket.IO namespace. Default "/".
	Namespace string
	// SocketIOPath is the Engine.IO path. Default DefaultSocketIOPath.
	SocketIOPath string

	// Progress receives one line per ProgressInterval while the run goes on;
	// nil for none.
	Progress io.Writer
	// ProgressInterval defaults to DefaultProgressInterval.
	ProgressInterval time.Duration
}

// withDefaults returns c with zero fields set to their defaults, or an error
// naming the first bad field.
func (c Config) withDefaults() (Config, error) {
	switch c.Mode {
	case ModeConnect, ModeEcho, ModeHandshake, ModeSocketIO:
	default:
		return c, fmt.Errorf("bench: unknown mode %q", c.Mode)
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = DefaultDialConcurrency
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.Transport == "" {
		c.Transport = "polling"
	}
	if c.EIO == 0 {
		c.EIO = 4
	}
	if c.Event == "" {
		c.Event = DefaultEvent
	}
	if c.Namespace == "" {
		c.Namespace = "/"
	}
	if c.SocketIOPath == "" {
		c.SocketIOPath = DefaultSocketIOPath
	}
	switch {
	case c.Conns < 0:
		return c, fmt.Errorf("bench: conns must be positive")
	case c.Duration < 0:
		return c, fmt.Errorf("bench: duration must be positive")
	case c.Size < 0:
		return c, fmt.Errorf("bench: size must be positive")
	case c.Ramp < 0 || c.Rate < 0:
		return c, fmt.Errorf("bench: ramp and rate must be positive")
	case c.Transport != "polling" && c.Transport != "websocket":
		return c, fmt.Errorf("bench: transport must be polling or websocket, not %q", c.Transport)
	case c.EIO != 3 && c.EIO != 4:
		return c, fmt.Errorf("bench: Engine.IO version must be 3 or 4, not %d", c.EIO)
	}
	if _, err := ParseTarget(c.URL); err != nil {
		return c, err
	}
	return c, nil
}

// ParseRate parses "500/s", "500", "30/m" or "2/ms" into events per second.
func ParseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad rate %q: want a number per second, like 500/s", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "s":
		return v, nil
	case "m", "min":
		return v / 60, nil
	case "ms":
		return v * 1000, nil
	}
	return 0, fmt.Errorf("bad rate %q: unit must be /s, /m or /ms", s)
}

// ParseSize parses a byte count: "64", "16KiB", "1MiB", "1KB", "2k".
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q: want bytes, like 64 or 16KiB", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1, "B": 1,
		"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "KB": 1e3, "kB": 1e3,
		"m": 1 << 20, "M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
		"GiB": 1 << 30, "GB": 1e9,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("bad size %q: unit must be B, KiB, MiB, GiB, KB, MB or GB", s)
	}
	n := v * mult
	if n > 1<<40 {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return int(n), nil
}

// ParseSourceIPs parses a comma-separated list of addresses and ranges,
// "127.0.0.1-127.0.0.8" or "10.0.0.5,10.0.0.9-10.0.0.12".
func ParseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("bad source address %q", lo)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("bad source address %q", hi)
			}
			if a.Is4() != b.Is4() || b.Less(a) {
				return nil, fmt.Errorf("bad source range %q: end before start", part)
			}
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 65536 {
				return nil, fmt.Errorf("bad source range %q: more than 65536 addresses", part)
			}
			if x == b {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no source addresses in %q", s)
	}
	return out, nil
}

func toIPs(as []netip.Addr) []net.IP {
	var out []net.IP
	for _, a := range as {
		out = append(out, net.IP(a.AsSlice()))
	}
	return out
}
