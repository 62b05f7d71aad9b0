// Package tunnel relays the bytes of upgraded (WebSocket) connections after
// the HTTP handshake: two connected TCP sockets per tunnel, on the engine's
// own epoll loops (Linux only), with no goroutine, timer, buffer or pipe
// held by an idle tunnel.
//
// It knows nothing of HTTP. The caller hands over raw fds with Engine.Add
// and learns how each tunnel ended from its done callback (Stats).
package tunnel

import (
	"errors"
	"runtime"
	"time"
)

// Reason says why a tunnel closed. Every tunnel has exactly one.
type Reason uint8

const (
	// ClientClosed: the client finished first (sent FIN, seen as read(2)
	// returning 0), whatever happened after that.
	ClientClosed Reason = iota + 1
	// BackendClosed: the backend finished first (FIN).
	BackendClosed
	// IdleTimeout: no byte moved in either direction for Config.IdleTimeout
	// (also when one direction had already finished).
	IdleTimeout
	// Error: a read/write/poll error before either side sent FIN, e.g. a
	// reset (ECONNRESET on read or write, EPIPE, EPOLLERR). Stats.Err is an
	// *OpError naming the side.
	Error
	// Shutdown: Engine.CloseAll or Engine.Close.
	Shutdown
)

var reasonNames = [...]string{
	ClientClosed:  "client_closed",
	BackendClosed: "backend_closed",
	IdleTimeout:   "idle_timeout",
	Error:         "error",
	Shutdown:      "shutdown",
}

// String returns the reason as used in logs and metric labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "unknown"
}

// Stats describes a closed tunnel; it is passed to the done callback.
type Stats struct {
	Reason          Reason
	Err             error // cause when Reason == Error (an *OpError)
	ClientToBackend int64 // bytes written to the backend, including the initial toBackend bytes
	BackendToClient int64 // bytes written to the client, including the initial toClient bytes
	Duration        time.Duration
}

// Side names one end of a tunnel.
type Side uint8

const (
	SideClient Side = iota
	SideBackend
)

// String returns "client" or "backend".
func (s Side) String() string {
	if s == SideClient {
		return "client"
	}
	return "backend"
}

// OpError is the Stats.Err of a tunnel closed with Reason Error: which side
// failed, in which operation ("read", "write", "poll"), and the errno.
type OpError struct {
	Side Side
	Op   string
	Err  error
}

func (e *OpError) Error() string {
	return "tunnel: " + e.Op + " " + e.Side.String() + ": " + e.Err.Error()
}
func (e *OpError) Unwrap() error { return e.Err }

var (
	// ErrClosed is returned by Add after Close.
	ErrClosed = errors.New("tunnel: engine closed")
	// ErrBadFd is returned by Add for a negative or duplicate fd.
	ErrBadFd = errors.New("tunnel: bad file descriptor")
	// ErrUnsupported is returned by New where there is no epoll.
	ErrUnsupported = errors.New("tunnel: engine needs Linux (epoll, splice)")
)

// Defaults for the zero Config.
const (
	DefaultIdleTimeout = 300 * time.Second
	DefaultReadSize    = 16 << 10
	DefaultMaxPending  = 64 << 10
	DefaultTick        = time.Second
)

// Config configures an Engine. Its zero value means defaults.
type Config struct {
	// IdleTimeout closes a tunnel when no byte moved in either direction
	// for this long (fired within one Tick after it). Default
	// DefaultIdleTimeout (300s); < 0 disables.
	IdleTimeout time.Duration
	// Loops is the number of epoll loops (goroutines); tunnels go to the
	// least-loaded one. Default runtime.GOMAXPROCS(0).
	Loops int
	// ReadSize is the bytes read per read(2) into a pooled buffer. Default
	// DefaultReadSize (16 KiB); clamped to MaxPending.
	ReadSize int
	// MaxPending bounds the bytes the engine holds per direction (buffer or
	// pipe) while the destination cannot take more; reading from the
	// source stops until they are written. It is also the splice chunk
	// (the pipe size is raised to it when above the 64 KiB default).
	// Default DefaultMaxPending (64 KiB). Initial bytes given to Add are
	// held in addition.
	MaxPending int
	// SpliceMin: a direction whose read(2) returns at least this many
	// bytes switches to splice(2) through a pooled pipe until the source
	// has nothing more to read. 0 means ReadSize (a whole read); a value
	// above ReadSize is clamped to it; < 0 disables splice.
	SpliceMin int
	// Tick is the timer wheel's resolution. Default DefaultTick (1s).
	Tick time.Duration
	// Now is the clock (injected by tests). Default time.Now.
	Now func() time.Time
}

// normalized returns c with defaults filled in.
func (c Config) normalized() Config {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Loops <= 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.ReadSize <= 0 {
		c.ReadSize = DefaultReadSize
	}
	if c.ReadSize > c.MaxPending {
		c.ReadSize = c.MaxPending
	}
	if c.SpliceMin == 0 || c.SpliceMin > c.ReadSize {
		c.SpliceMin = c.ReadSize
	}
	if c.Tick <= 0 {
		c.Tick = DefaultTick
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
