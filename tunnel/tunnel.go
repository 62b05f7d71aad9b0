// Package tunnel relays the bytes of upgraded (WebSocket) connections after
// the HTTP handshake: two connected TCP sockets per tunnel, on the engine's
// own epoll loops (Linux only), with no goroutine, timer, buffer or pipe
// held by an idle tunnel.
//
// It knows nothing of HTTP. The caller hands over raw fds with Engine.Add
// and learns how each tunnel ended from its done callback (Stats).
//
// # Design
//
// Loops: Config.Loops goroutines, each with its own epoll fd, an eventfd
// for commands from other goroutines (Add, CloseAll), a slab of tunnel
// structs (chunks of 256, slots never move), a timer wheel and a pipe pool.
// A tunnel lives on the least-loaded loop and is touched by no other
// goroutine.
//
// Events: each fd is registered once, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET,
// and never re-armed. The 64-bit event data holds slot<<1|side and the
// slot's generation (no Go pointer); the generation moves on when a tunnel
// closes, so events already queued for it are dropped. Both fds leave
// epoll (EPOLL_CTL_DEL) before close(2), since the number may be reused at
// once. Edge-triggered means remembering: per side "readable" (until EAGAIN
// or a short read; with RDHUP seen, until read returns 0) and "writable"
// (until EAGAIN).
//
// Relay (per direction): read into the loop's scratch buffer and write to
// the other side at once. Only if the write is partial does the direction
// keep the buffer (pooled, ReadSize bytes) and stop reading its source;
// EPOLLOUT on the destination writes the rest, the buffer goes back and
// reading resumes from the remembered readable state. So the engine holds
// at most MaxPending per direction and TCP flow control stops the sender.
// A read that fills ReadSize (SpliceMin) switches the direction to
// splice(2) through a pipe from the loop's pool (src→pipe, pipe→dst, in
// chunks of at most MaxPending); when the source has nothing more (EAGAIN)
// and the pipe is empty, the pipe goes back and the direction returns to
// buffers. A pipe that still holds data when its tunnel closes is closed,
// never pooled. No pipe (EMFILE...) means buffers, with a retry a tick later.
//
// Frame boundaries (frames.go): each direction feeds what it reads (the
// plaintext, on TLS tunnels) to a WebSocket frame tracker that reads frame
// headers only and counts payloads down; a splicing direction splices at
// most the rest of the current frame's payload and reads the next header
// through a buffer. So the engine always knows whether a direction is
// between two frames.
//
// Half-close: read(2) returning 0 passes shutdown(SHUT_WR) to the other
// side once everything read before it is written; the other direction
// keeps flowing. The tunnel closes when both directions are finished
// (reason: the side that finished first), on an error before any FIN
// (Error, with an *OpError naming the side), or when the engine ends it on
// purpose: idle timeout (IdleTimeout), CloseSome/CloseSpread/CloseTagged
// and CloseAll/Close (Shutdown), CloseTaggedBefore (its reason, such as
// Rebalance). Those closes send WebSocket close frames at frame
// boundaries, then FIN, and wait briefly for the peers' FIN
// (close_linux.go); CloseAll and Close do not wait.
//
// Idle timeout: activity only stores lastActive (in ticks) in the tunnel.
// The wheel holds each tunnel once; when its slot fires, the tunnel either
// expires (no activity for the whole timeout) or is rescheduled at
// lastActive+timeout. epoll_wait sleeps until the next tick while the
// wheel holds anything.
//
// An idle tunnel holds its slab slot (176 bytes) and wheel links, nothing
// else: no buffer, pipe, goroutine or runtime timer.
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
	// Shutdown: Engine.CloseAll or Engine.Close, or a drain or removal
	// (CloseSome, CloseSpread, CloseTagged).
	Shutdown
	// Rebalance: closed to move its client to another backend
	// (CloseTaggedBefore with this reason).
	Rebalance
)

var reasonNames = [...]string{
	ClientClosed:  "client_closed",
	BackendClosed: "backend_closed",
	IdleTimeout:   "idle_timeout",
	Error:         "error",
	Shutdown:      "shutdown",
	Rebalance:     "rebalance",
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
	// CloseCode is the status code of the WebSocket close frame the engine
	// sent the client when it ended the tunnel on purpose (CodeServiceRestart,
	// CodeGoingAway); 0 when it sent none (a plain-close fallback, or a
	// tunnel its peers ended).
	CloseCode uint16
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
	DefaultFinTimeout  = 30 * time.Second
	DefaultReadSize    = 16 << 10
	DefaultMaxPending  = 64 << 10
	DefaultTick        = time.Second
	// DefaultCloseBoundaryWait and DefaultCloseFinWait: see Config.
	DefaultCloseBoundaryWait = time.Second
	DefaultCloseFinWait      = 2 * time.Second
)

// Config configures an Engine. Its zero value means defaults.
type Config struct {
	// IdleTimeout closes a tunnel when no byte moved in either direction
	// for this long (fired within one Tick after it). Default
	// DefaultIdleTimeout (300s); < 0 disables.
	IdleTimeout time.Duration
	// FinTimeout closes a half-closed tunnel (one side sent FIN) when the
	// other side stays silent this long, so that a peer that never
	// finishes does not keep the tunnel, and its backend's count, for the
	// whole IdleTimeout (HAProxy's "timeout client-fin"). The close reason
	// stays the side that finished first. Used only when shorter than
	// IdleTimeout. Default DefaultFinTimeout (30s); < 0 disables.
	FinTimeout time.Duration
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
	// CloseBoundaryWait: a tunnel the engine ends on purpose (idle
	// timeout, CloseTaggedBefore, CloseSome, CloseSpread, CloseTagged)
	// gets WebSocket close frames, each at a frame boundary of its
	// direction; a direction that reaches none within this wait (a frame
	// that stalls half-way) makes the whole tunnel fall back to a plain
	// close (wsgate_tunnel_close_fallbacks_total). Counted in ticks: the
	// wait is at least this and at most one Tick more. Default
	// DefaultCloseBoundaryWait (1s); < 0: no wait (fall back unless both
	// directions are at a boundary at once).
	CloseBoundaryWait time.Duration
	// CloseFinWait: after both close frames, each socket is half-closed
	// (shutdown SHUT_WR) and what the peers still send is read and
	// dropped until both have finished (FIN), for at most this long
	// (counted in ticks as CloseBoundaryWait), so that closing does not
	// reset a connection whose peer has not yet read the close frame.
	// Default DefaultCloseFinWait (2s); < 0: close at once.
	CloseFinWait time.Duration
	// Now is the clock (injected by tests). Default time.Now.
	Now func() time.Time
}

// normalized returns c with defaults filled in.
func (c Config) normalized() Config {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.FinTimeout == 0 {
		c.FinTimeout = DefaultFinTimeout
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
	if c.CloseBoundaryWait == 0 {
		c.CloseBoundaryWait = DefaultCloseBoundaryWait
	}
	if c.CloseFinWait == 0 {
		c.CloseFinWait = DefaultCloseFinWait
	}
	return c
}
