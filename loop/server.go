// Package loop is wsgate's reactor: it accepts client connections on
// cloudwego/netpoll, reads and checks each HTTP/1.1 request head, routes it
// through the balancer, relays the exchange with an upstream connection, and
// hands verified WebSocket upgrades to the tunnel engine.
//
// One request is served at a time per client connection, by the goroutine
// netpoll runs for it; pipelined requests are answered in order. A
// connection waiting for its next request holds no goroutine and no buffer:
// it sits in an idle wheel that closes it when --keepalive-timeout (or, for
// a connection that never sent a byte, --header-timeout) expires, because
// netpoll itself never closes idle connections.
package loop

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
	"github.com/wsgate/wsgate/loop/accesslog"
	"github.com/wsgate/wsgate/tunnel"
)

// Defaults for the zero values of Config.
const (
	DefaultListen           = ":8080"
	DefaultHeaderTimeout    = 10 * time.Second
	DefaultKeepAliveTimeout = 75 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultResponseTimeout  = 60 * time.Second
	DefaultMaxHeaderBytes   = 16 << 10
	DefaultMaxIdleUpstream  = 256 // per backend; below the client concurrency, keep-alive load re-dials (measured: a sixth of the CPU at 100 clients)
	DefaultUpstreamIdle     = 30 * time.Second
)

// Config configures a Server. Its zero value means the defaults above, except
// Balancer and Tunnels, which are required.
type Config struct {
	Listen []string // addresses to listen on; default DefaultListen

	Balancer *balancer.Balancer // required: where requests go
	Tunnels  *tunnel.Engine     // required: where upgraded connections go

	// HeaderTimeout bounds the time from a request's first byte (or from
	// accept, for a connection's first request) to the end of its head: 408.
	HeaderTimeout time.Duration
	// KeepAliveTimeout closes a client connection idle between requests.
	KeepAliveTimeout time.Duration
	// ConnectTimeout bounds dialing a backend; a failed dial tries the next one.
	ConnectTimeout time.Duration
	// QueueTimeout bounds the wait for a backend slot when every backend of
	// the pool is at its max-conns (queue.go): then 503 with Retry-After.
	// Default DefaultQueueTimeout; < 0 means no wait.
	QueueTimeout time.Duration
	// ResponseTimeout bounds the wait for a backend's response head (504), and
	// each later wait for progress on either side of an exchange.
	ResponseTimeout time.Duration
	// MaxHeaderBytes bounds a request head (431). Response heads get twice that.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body (413); 0 means no limit.
	MaxBodyBytes int64
	// TrustedProxies are peers whose X-Forwarded-* headers are kept and appended to.
	TrustedProxies []netip.Prefix
	// MaxIdleUpstream is the number of idle keep-alive connections kept per backend.
	MaxIdleUpstream int
	// UpstreamIdleTimeout drops pooled upstream connections idle this long.
	UpstreamIdleTimeout time.Duration

	// Sticky is the stickiness mode and token key (balancer/sticky.go); the
	// zero value is auto: Engine.IO sid affinity with derived keys.
	Sticky balancer.StickyConfig

	// Logf logs operational events; default log.Printf.
	Logf func(format string, args ...any)

	// AccessLog, when set, gets a line per request and per tunnel close
	// (record.go builds them); nil logs nothing.
	AccessLog *accesslog.Log

	// Edge: PROXY protocol, connection and rate limits, WebSocket origins,
	// TLS termination, redirect to https (edge.go); zero: none of it.
	Edge EdgeConfig
}

func (c *Config) normalize() error {
	if c.Balancer == nil || c.Tunnels == nil {
		return errors.New("loop: Config.Balancer and Config.Tunnels are required")
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{DefaultListen}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HeaderTimeout, DefaultHeaderTimeout)
	def(&c.KeepAliveTimeout, DefaultKeepAliveTimeout)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.ResponseTimeout, DefaultResponseTimeout)
	def(&c.UpstreamIdleTimeout, DefaultUpstreamIdle)
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	} else if c.QueueTimeout < 0 {
		c.QueueTimeout = 0 // PickWait: no wait
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxIdleUpstream <= 0 {
		c.MaxIdleUpstream = DefaultMaxIdleUpstream
	}
	if c.Logf == nil {
		c.Logf = log.Printf
	}
	return nil
}

// Server serves client connections on its listeners.
type Server struct {
	cfg     Config // immutable after New
	reqLim  http1.Limits
	respLim http1.Limits
	ups     upstreams
	idle    *idleWheel
	sticky  *balancer.Sticky // immutable after New

	mu      sync.Mutex // guards loops, lns
	loops   []netpoll.EventLoop
	lns     []net.Listener
	serving sync.WaitGroup

	open     atomic.Int64 // client connections open
	inflight atomic.Int64 // exchanges in progress
	// Handshakes that waited for the backend without the handler, and
	// those of them the tunnel engine's loop finished (await.go).
	awaitStarted, awaitOnLoop atomic.Int64
	draining                  atomic.Bool

	drainPhase atomic.Int32 // DrainPhase (drain.go)

	leaving       leavingCounts // rebalance.go: rebalancing closes in progress
	stopRebalance chan struct{} // closed by Shutdown; made by New

	edge *edgeState // edge.go; immutable after New

	m *serverMetrics // metrics.go; immutable after New
	// outOfFiles limits the "out of files" log line (upstream.go).
	outOfFiles struct {
		last       atomic.Int64 // unix nanoseconds of the last line
		suppressed atomic.Int64
	}
}

// New checks cfg and opens its listeners; Serve starts accepting.
func New(cfg Config) (*Server, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	useRunner() // runner.go: handlers on parked workers, not fresh goroutines
	s := &Server{cfg: cfg, m: newServerMetrics(), stopRebalance: make(chan struct{})}
	sticky, err := balancer.NewSticky(cfg.Sticky)
	if err != nil {
		return nil, err
	}
	s.sticky = sticky
	s.reqLim = http1.Limits{MaxHeaderBytes: cfg.MaxHeaderBytes}
	respMax := 2 * cfg.MaxHeaderBytes
	if respMax > bufSize {
		respMax = bufSize
	}
	s.respLim = http1.Limits{MaxHeaderBytes: respMax, MaxLineBytes: respMax}
	s.ups.init(cfg.MaxIdleUpstream, cfg.UpstreamIdleTimeout, s.m)
	if cfg.AccessLog != nil {
		s.m.set.NewGauge(`wsgate_access_log_dropped_total`, func() float64 { return float64(cfg.AccessLog.Dropped()) })
	}
	s.idle = newIdleWheel(min(cfg.HeaderTimeout, cfg.KeepAliveTimeout), max(cfg.HeaderTimeout, cfg.KeepAliveTimeout))
	for _, addr := range cfg.Listen {
		ln, err := listenProxy(addr) // listen.go: SO_REUSEPORT, TCP_DEFER_ACCEPT
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		s.lns = append(s.lns, ln)
	}
	if err := s.openEdge(); err != nil { // tls.go: edge state, TLS listeners
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Addrs are the addresses the server listens on, in Config.Listen order.
func (s *Server) Addrs() []net.Addr {
	a := make([]net.Addr, len(s.lns))
	for i, ln := range s.lns {
		a[i] = ln.Addr()
	}
	return a
}

// Serve accepts connections on every listener until Shutdown. It returns
// once the listeners are set up; errors of a listener are logged.
func (s *Server) Serve() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.lns {
		if err := s.serveLoop(ln, "listener "+ln.Addr().String()); err != nil {
			return err
		}
	}
	if err := s.serveFront(); err != nil { // tls.go: the TLS front
		return err
	}
	go s.idle.run()
	go s.runRebalance(s.stopRebalance) // rebalance.go
	return nil
}

// serveLoop starts a netpoll event loop accepting on ln; name is for its
// log line. s.mu held.
func (s *Server) serveLoop(ln net.Listener, name string) error {
	el, err := netpoll.NewEventLoop(s.onRequest,
		netpoll.WithOnPrepare(s.onPrepare),
		netpoll.WithWriteTimeout(s.cfg.ResponseTimeout),
		netpoll.WithReadThreshold(s.readThreshold()),
		// An accepted connection (TCP_DEFER_ACCEPT: its request is there)
		// is read at once and joins netpoll's epoll set only when it has
		// to wait (netpoll patch 9): a WebSocket handshake's client socket,
		// handed to the tunnel engine after its first request, never
		// does: no EPOLL_CTL_ADD and EPOLL_CTL_DEL for nothing.
		netpoll.WithDeferredRegister(true),
	)
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	s.loops = append(s.loops, el)
	sl, err := shedding(ln, s.m.refusedOutOfFiles) // accept.go: EMFILE without spinning
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := el.Serve(sl); err != nil && !s.draining.Load() {
			s.cfg.Logf("%s: %v", name, err)
		}
	}()
	return nil
}

// Shutdown stops accepting, closes idle client connections, waits for
// exchanges in progress until ctx is done, and then closes what is left.
// Tunnels are not touched: the caller drains the tunnel engine.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.draining.Swap(true) {
		close(s.stopRebalance)
	}
	s.handOver(ctx) // drain_linux.go: steer new connections to a successor first
	// tls.go: the same for the TLS listeners
	s.closeFront(ctx)
	s.mu.Lock()
	loops := s.loops
	s.loops = nil
	s.mu.Unlock()
	var err error
	for _, el := range loops { // all share ctx's deadline
		if e := el.Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	}
	s.idle.stop()
	s.ups.closeAll()
	return err
}

// readBuffered is how much unread input netpoll holds for a client before it
// stops reading it (third_party/netpoll/connection_pause.go): a request body
// going to a slow backend waits in the client's socket and, past its
// buffers, in the client, instead of in wsgate's memory. Each read is at
// most this much, so a connection holds under twice it.
const readBuffered = 64 << 10

// readThreshold is readBuffered, or more when a request head may be larger.
func (s *Server) readThreshold() int { return max(readBuffered, s.cfg.MaxHeaderBytes+1) }

// OpenConns is the number of client connections open (not counting tunnels).
func (s *Server) OpenConns() int64 { return s.open.Load() }

// InFlight is the number of exchanges in progress.
func (s *Server) InFlight() int64 { return s.inflight.Load() }
