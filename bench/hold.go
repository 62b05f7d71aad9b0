package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The hold scenario keeps N WebSocket connections open and reconnects each
// one that closes (close frame, TCP close or error) after a jittered delay,
// as Socket.IO and most WebSocket clients do. It measures reconnect storms
// (a backend killed, every client coming back) and rebalancing (a proxy
// closing tunnels with 1012 so that clients move).
//
// Idle connections cost no goroutine: their fds sit in the epoll holder
// (holder_linux.go), which answers pings, notes close codes and reports
// every end. wss connections (no fd of their own) and other platforms get a
// reading goroutine each.

// Defaults for HoldConfig's zero fields.
const (
	DefaultReconnectDelayMin = 200 * time.Millisecond
	DefaultReconnectDelayMax = time.Second
	// NoHeader is the count-header value of a 101 without the header.
	NoHeader = "(none)"
	// maxStormsKept bounds HoldReport.Storms.
	maxStormsKept = 1000
)

// HoldConfig describes one hold run. The zero value of each field means its
// default.
type HoldConfig struct {
	// URL is ws:// or wss:// (http:// and https:// work too).
	URL string
	// Conns is how many connections to keep open. Default DefaultConns.
	Conns int
	// Duration is how long the run lasts after the ramp (every connection's
	// first attempt finished); 0 runs until ctx ends or Stop is called.
	Duration time.Duration
	// Ramp starts first connections at this many per second; 0 starts them
	// as fast as DialConcurrency allows.
	Ramp float64
	// ReconnectDelayMin and ReconnectDelayMax bound the delay between
	// seeing a connection end (or a reconnect fail) and the next attempt:
	// uniform between the two. Both zero means DefaultReconnectDelayMin to
	// DefaultReconnectDelayMax; Max below Min is an error; equal means fixed.
	// (A tiny Max such as time.Nanosecond reconnects at once.)
	ReconnectDelayMin, ReconnectDelayMax time.Duration
	// SourceIPs are local addresses, bound round-robin by connection number.
	SourceIPs []netip.Addr
	// Headers are added to every handshake.
	Headers []Header
	// HandshakeTimeout bounds dial plus handshake. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DialConcurrency bounds handshakes in flight, ramp and reconnects
	// together. Default DefaultDialConcurrency.
	DialConcurrency int
	// Ping, when positive, sends a ping on each connection once per Ping;
	// a plain ws:// connection that sent nothing for a whole interval after
	// a ping is dropped (kind "no pong") and reconnected.
	Ping time.Duration
	// CountHeader names a header of the 101 (X-Backend, say) whose values
	// are counted: handshakes per value, and connections open now per value.
	CountHeader string
	// InsecureTLS skips certificate checks for wss://.
	InsecureTLS bool
	// Progress receives one line per ProgressInterval; nil for none.
	Progress io.Writer
	// ProgressInterval also sets the timeline's resolution. Default
	// DefaultProgressInterval.
	ProgressInterval time.Duration

	// noEpoll gives every connection a reading goroutine, as wss gets
	// (tests measure what that costs).
	noEpoll bool
}

func (c HoldConfig) withDefaults() (HoldConfig, error) {
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.ReconnectDelayMin == 0 && c.ReconnectDelayMax == 0 {
		c.ReconnectDelayMin, c.ReconnectDelayMax = DefaultReconnectDelayMin, DefaultReconnectDelayMax
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
	switch {
	case c.Conns < 0:
		return c, errors.New("bench: conns must be positive")
	case c.Duration < 0:
		return c, errors.New("bench: duration must not be negative")
	case c.Ramp < 0:
		return c, errors.New("bench: ramp must be positive")
	case c.ReconnectDelayMin < 0 || c.ReconnectDelayMax < c.ReconnectDelayMin:
		return c, fmt.Errorf("bench: reconnect delay %v-%v: want 0 <= min <= max", c.ReconnectDelayMin, c.ReconnectDelayMax)
	case c.HandshakeTimeout < 0 || c.DialConcurrency < 0 || c.Ping < 0 || c.ProgressInterval < 0:
		return c, errors.New("bench: handshake timeout, dial concurrency, ping and progress interval must be positive")
	case strings.ContainsAny(c.CountHeader, " \t\r\n:"):
		return c, fmt.Errorf("bench: bad count header name %q", c.CountHeader)
	}
	if _, err := ParseTarget(c.URL); err != nil {
		return c, err
	}
	return c, nil
}

// ParseDelayRange parses "200ms-1s" (uniform between the two) or "500ms"
// (fixed).
func ParseDelayRange(s string) (lo, hi time.Duration, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, fmt.Errorf("bad delay %q: want a duration like 500ms or a range like 200ms-1s", s)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("bad delay %q: want a duration like 500ms or a range like 200ms-1s", s)
		}
	}
	if lo < 0 || hi < lo {
		return 0, 0, fmt.Errorf("bad delay %q: want 0 <= min <= max", s)
	}
	return lo, hi, nil
}

// HoldSnapshot is a running hold's state at one moment.
type HoldSnapshot struct {
	ElapsedS float64 `json:"elapsed_s"`
	Wanted   int     `json:"wanted"`
	// Open is how many connections are open now; Peak the most at once.
	Open int64 `json:"open"`
	Peak int64 `json:"peak"`
	// Connecting is handshakes in flight; Waiting is connections waiting
	// out a reconnect delay.
	Connecting int64 `json:"connecting"`
	Waiting    int64 `json:"waiting"`
	// RampDone: every connection's first attempt has finished.
	RampDone bool `json:"ramp_done"`
	// Closes counts connections the server (or the network) ended: by close
	// code for those that came with a close frame (1005: a close frame
	// without a code), and NoCloseFrame for the rest (TCP close or reset,
	// read errors, missing pongs).
	Closes       int64         `json:"closes"`
	ClosesByCode map[int]int64 `json:"closes_by_code"`
	NoCloseFrame int64         `json:"no_close_frame"`
	// Reconnects: handshakes after a close (or after a failed reconnect)
	// that succeeded and that failed; failures by reason.
	Reconnects        int64            `json:"reconnects"`
	ReconnectFailed   int64            `json:"reconnect_failed"`
	ReconnectFailures map[string]int64 `json:"reconnect_failures,omitempty"`
	// InitialFailed counts failed first attempts (retried after the delay).
	InitialFailed int64 `json:"initial_failed"`
	// OpenByHeader counts open connections per value of CountHeader.
	OpenByHeader map[string]int64 `json:"open_by_header,omitempty"`
	// Storms is how many storms began; InStorm whether one is going on.
	Storms  int  `json:"storms"`
	InStorm bool `json:"in_storm"`
}

// ErrNoPong ends a held connection that sent nothing between two pings.
var ErrNoPong = errors.New("bench: no pong (nothing received for a whole ping interval)")

// Holder is a running hold scenario; Start returns one.
type Holder struct {
	cfg    HoldConfig
	tgt    Target
	dial   dialer
	start  time.Time
	ctx    context.Context // ends at Stop, the duration, or the caller's ctx
	cancel context.CancelFunc
	sem    chan struct{} // handshakes in flight
	hold   *holder       // nil where unavailable
	hs     *recorder     // every successful handshake
	recon  *recorder     // close seen → the replacement's 101
	rhs    *recorder     // a reconnect's own handshake: dial → 101 (storms, without the delay)

	rampDone chan struct{} // closed when every first attempt finished
	firstWG  sync.WaitGroup
	inflight sync.WaitGroup // attempts and the ramp; Add only under mu while !stopped
	readers  sync.WaitGroup // goroutine-held connections
	done     chan struct{}  // closed when the report is ready
	report   *HoldReport
	changed  chan struct{} // closed and replaced at every state change; mu

	ru0 syscall.Rusage

	mu    sync.Mutex
	st    holdState
	slots []holdSlot
}

// holdState is everything counted; mu must be held.
type holdState struct {
	stopped                bool
	open, peak, minAfter   int64
	connecting, waiting    int64
	rampEnd                time.Time
	closes, noClose        int64
	byCode                 map[int]int64
	noCloseKinds           map[string]int64
	initAttempts, initOK   int64
	initFailed             int64
	initFailures           map[string]int64
	recAttempts, recOK     int64
	recFailed              int64
	recFailures            map[string]int64
	openBy, servedBy       map[string]int64
	everFull               bool
	storm                  *HoldStorm // the storm going on, if any
	storms                 []HoldStorm
	stormCount             int
	longest                float64 // longest finished storm's recovery, seconds
	heldByEpoll, heldByGor int64
	timeline               []HoldSample
	lastSample             holdCounts
}

// holdCounts are the cumulative counts a timeline sample takes differences of.
type holdCounts struct{ closes, reconnects, failed, connected int64 }

// holdSlot is one of the N connections; mu must be held.
type holdSlot struct {
	hdr      string    // CountHeader value of the open connection
	closedAt time.Time // when the last close was seen; zero before the first connection
	ever     bool      // has been connected once
	tried    bool      // its first attempt has finished
	timer    *time.Timer
	conn     *Conn // goroutine-held connection, for the end
}

// Hold runs the hold scenario until its duration is over or ctx ends, and
// returns the report.
func Hold(ctx context.Context, cfg HoldConfig) (*HoldReport, error) {
	h, err := StartHold(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return h.Wait(), nil
}

// StartHold starts the hold scenario and returns at once; watch it with
// Snapshot or WaitUntil, end it early with Stop, and collect the report
// with Wait.
func StartHold(ctx context.Context, cfg HoldConfig) (*Holder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Holder{cfg: cfg, sem: make(chan struct{}, cfg.DialConcurrency), hs: newRecorder(), recon: newRecorder(), rhs: newRecorder(),
		rampDone: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
		slots: make([]holdSlot, cfg.Conns)}
	h.tgt, _ = ParseTarget(cfg.URL)
	h.dial = dialer{sources: toIPs(cfg.SourceIPs), timeout: cfg.HandshakeTimeout}
	if h.tgt.TLS {
		h.dial.tls = &tls.Config{InsecureSkipVerify: cfg.InsecureTLS}
	} else if !cfg.noEpoll {
		h.hold, _ = newHolder(h.closed, cfg.Ping)
	}
	h.st.byCode, h.st.noCloseKinds = map[int]int64{}, map[string]int64{}
	h.st.initFailures, h.st.recFailures = map[string]int64{}, map[string]int64{}
	h.st.openBy, h.st.servedBy = map[string]int64{}, map[string]int64{}
	syscall.Getrusage(syscall.RUSAGE_SELF, &h.ru0)
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.start = time.Now()
	h.firstWG.Add(cfg.Conns)
	h.inflight.Add(1)
	go h.ramp()
	go func() { h.firstWG.Wait(); close(h.rampDone) }()
	go h.run()
	return h, nil
}

// Stop ends the run early (as the end of the duration would); Wait then
// returns the report.
func (h *Holder) Stop() { h.cancel() }

// Wait waits for the run to end and returns its report.
func (h *Holder) Wait() *HoldReport {
	<-h.done
	return h.report
}

// Done is closed when the run has ended and Wait returns at once.
func (h *Holder) Done() <-chan struct{} { return h.done }

// WaitUntil waits until cond holds for a snapshot (checked at every change
// of state), ctx ends or the run ends; it returns the last snapshot and
// whether cond held.
func (h *Holder) WaitUntil(ctx context.Context, cond func(HoldSnapshot) bool) (HoldSnapshot, bool) {
	for {
		h.mu.Lock()
		ch := h.changed
		s := h.snapshotLocked()
		h.mu.Unlock()
		if cond(s) {
			return s, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s, false
		case <-h.done:
			h.mu.Lock()
			s = h.snapshotLocked()
			h.mu.Unlock()
			return s, cond(s)
		}
	}
}

// Snapshot returns the run's state now.
func (h *Holder) Snapshot() HoldSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshotLocked()
}

func (h *Holder) snapshotLocked() HoldSnapshot {
	st := &h.st
	s := HoldSnapshot{
		ElapsedS: time.Since(h.start).Seconds(), Wanted: h.cfg.Conns,
		Open: st.open, Peak: st.peak, Connecting: st.connecting, Waiting: st.waiting,
		RampDone: !st.rampEnd.IsZero(), Closes: st.closes, ClosesByCode: maps.Clone(st.byCode), NoCloseFrame: st.noClose,
		Reconnects: st.recOK, ReconnectFailed: st.recFailed, ReconnectFailures: maps.Clone(st.recFailures),
		InitialFailed: st.initFailed, Storms: st.stormCount, InStorm: st.storm != nil,
	}
	if h.cfg.CountHeader != "" {
		s.OpenByHeader = map[string]int64{}
		for k, v := range st.openBy {
			if v != 0 {
				s.OpenByHeader[k] = v
			}
		}
	}
	return s
}

// notifyLocked wakes WaitUntil callers; mu must be held.
func (h *Holder) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// ramp starts every connection's first attempt.
func (h *Holder) ramp() {
	defer h.inflight.Done()
	n := h.cfg.Conns
	for i := range n {
		haveSem := false
		if h.cfg.Ramp > 0 {
			due := h.start.Add(time.Duration(float64(i) / h.cfg.Ramp * float64(time.Second)))
			if !sleepUntil(h.ctx, due) {
				h.firstWG.Add(i - n) // never started
				return
			}
		} else {
			select {
			case h.sem <- struct{}{}:
				haveSem = true
			case <-h.ctx.Done():
				h.firstWG.Add(i - n)
				return
			}
		}
		h.mu.Lock()
		if h.st.stopped {
			h.mu.Unlock()
			if haveSem {
				<-h.sem
			}
			h.firstWG.Add(i - n)
			return
		}
		h.inflight.Add(1)
		h.st.connecting++
		h.mu.Unlock()
		go h.attempt(i, haveSem)
	}
}

// reconnectLater schedules slot's next attempt after a jittered delay; mu
// must be held.
func (h *Holder) reconnectLater(slot int) {
	lo, hi := h.cfg.ReconnectDelayMin, h.cfg.ReconnectDelayMax
	d := lo
	if hi > lo {
		d += time.Duration(rand.Int64N(int64(hi - lo + 1)))
	}
	h.st.waiting++
	h.slots[slot].timer = time.AfterFunc(d, func() {
		h.mu.Lock()
		if h.st.stopped {
			h.mu.Unlock()
			return
		}
		h.st.waiting--
		h.st.connecting++
		h.slots[slot].timer = nil
		h.inflight.Add(1)
		h.mu.Unlock()
		h.attempt(slot, false)
	})
}

// attempt dials and upgrades slot once, then hands the connection to the
// holder, or schedules a retry. inflight was added for it.
func (h *Holder) attempt(slot int, haveSem bool) {
	defer h.inflight.Done()
	defer h.firstFinished(slot)
	if !haveSem {
		select {
		case h.sem <- struct{}{}:
		case <-h.ctx.Done():
			h.mu.Lock()
			h.st.connecting--
			h.mu.Unlock()
			return
		}
	}
	t0 := time.Now()
	c, resp, err := h.open(slot)
	<-h.sem
	now := time.Now()

	h.mu.Lock()
	st, s := &h.st, &h.slots[slot]
	st.connecting--
	if st.stopped || h.ctx.Err() != nil {
		h.mu.Unlock()
		if c != nil {
			c.CloseGracefully(0)
		}
		return
	}
	if err != nil {
		kind := errKind(err)
		if s.ever {
			st.recAttempts++
			st.recFailed++
			st.recFailures[kind]++
		} else {
			st.initAttempts++
			st.initFailed++
			st.initFailures[kind]++
		}
		h.reconnectLater(slot)
		h.notifyLocked()
		h.mu.Unlock()
		return
	}
	h.hs.record(slot, now.Sub(t0))
	if s.ever {
		st.recAttempts++
		st.recOK++
		h.recon.record(slot, now.Sub(s.closedAt))
		h.rhs.record(slot, now.Sub(t0))
	} else {
		st.initAttempts++
		st.initOK++
	}
	s.ever = true
	if h.cfg.CountHeader != "" {
		s.hdr = resp.Get(h.cfg.CountHeader)
		if s.hdr == "" {
			s.hdr = NoHeader
		}
		st.openBy[s.hdr]++
		st.servedBy[s.hdr]++
	}
	st.open++
	st.peak = max(st.peak, st.open)
	if st.open == int64(h.cfg.Conns) {
		st.everFull = true
		if st.storm != nil {
			st.storm.RecoveryS = now.Sub(h.start).Seconds() - st.storm.StartS
			st.storm.Recovered = true
			st.longest = max(st.longest, st.storm.RecoveryS)
			if len(st.storms) < maxStormsKept {
				st.storms = append(st.storms, *st.storm)
			}
			st.storm = nil
		}
	}
	if h.hold != nil {
		st.heldByEpoll++
	} else {
		st.heldByGor++
	}
	h.notifyLocked()
	h.mu.Unlock()
	// The bookkeeping is done before the holder can report the end.
	// closeAll waits for inflight, so the holder is still running here.
	if h.hold != nil {
		if h.hold.add(c, slot) == nil {
			return
		}
		h.mu.Lock()
		st.heldByEpoll--
		st.heldByGor++
		h.mu.Unlock()
	}
	h.mu.Lock()
	if st.stopped {
		h.mu.Unlock()
		c.CloseGracefully(0)
		return
	}
	s.conn = c
	h.readers.Add(1)
	h.mu.Unlock()
	go h.read(slot, c)
}

// firstFinished counts slot's first attempt as finished, once.
func (h *Holder) firstFinished(slot int) {
	h.mu.Lock()
	first := !h.slots[slot].tried
	h.slots[slot].tried = true
	h.mu.Unlock()
	if first {
		h.firstWG.Done()
	}
}

// read holds a connection the epoll holder cannot (wss, other platforms):
// one goroutine reading, plus a ping timer when pings are on.
func (h *Holder) read(slot int, c *Conn) {
	defer h.readers.Done()
	var (
		pmu    sync.Mutex
		pinger *time.Timer // pmu must be held
	)
	if h.cfg.Ping > 0 {
		ping := func() {
			if c.writeWithin(opPing, nil, time.Second) == nil {
				pmu.Lock()
				if pinger != nil {
					pinger.Reset(h.cfg.Ping)
				}
				pmu.Unlock()
			}
		}
		pmu.Lock()
		pinger = time.AfterFunc(h.cfg.Ping, ping)
		pmu.Unlock()
	}
	var err error
	for err == nil {
		_, _, _, err = c.ReadMessage(false)
	}
	pmu.Lock()
	if pinger != nil {
		pinger.Stop()
		pinger = nil
	}
	pmu.Unlock()
	h.mu.Lock()
	stopped := h.st.stopped
	h.slots[slot].conn = nil
	h.mu.Unlock()
	if stopped {
		c.nc.SetDeadline(time.Time{})
		c.CloseGracefully(time.Second)
		return
	}
	c.nc.Close()
	h.closed(slot, err)
}

// open dials and upgrades one connection for slot.
func (h *Holder) open(slot int) (*Conn, *Response, error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := h.dial.dial(ctx, h.tgt, slot)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, resp, err := handshake(nc, h.tgt, h.cfg.Headers, 256)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, err
	}
	return c, resp, nil
}

// closed notes that slot's connection ended for err (the holder's onDrop,
// or a reader's end) and schedules its reconnect.
func (h *Holder) closed(slot int, err error) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	st, s := &h.st, &h.slots[slot]
	if st.stopped {
		return
	}
	st.closes++
	var ce *CloseError
	if errors.As(err, &ce) {
		st.byCode[ce.Code]++
	} else {
		st.noClose++
		st.noCloseKinds[closeKind(err)]++
	}
	if h.cfg.CountHeader != "" {
		st.openBy[s.hdr]--
	}
	if st.everFull && st.storm == nil {
		st.storm = &HoldStorm{StartS: now.Sub(h.start).Seconds(), MinOpen: st.open}
		st.stormCount++
	}
	st.open--
	if st.storm != nil {
		st.storm.Closes++
		st.storm.MinOpen = min(st.storm.MinOpen, st.open)
	}
	if !st.rampEnd.IsZero() {
		st.minAfter = min(st.minAfter, st.open)
	}
	s.closedAt = now
	h.reconnectLater(slot)
	h.notifyLocked()
}

// closeKind names why a connection ended without a close frame.
func closeKind(err error) string {
	switch {
	case errors.Is(err, ErrNoPong):
		return "no pong"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "TCP close (EOF)"
	case errors.Is(err, syscall.ECONNRESET):
		return "TCP reset"
	}
	return errKind(err)
}

// run waits for the ramp, then the duration (or ctx), then ends everything
// and builds the report.
func (h *Holder) run() {
	rep := h.startSampler()
	select {
	case <-h.rampDone:
		h.mu.Lock()
		h.st.rampEnd = time.Now()
		h.st.minAfter = h.st.open
		h.notifyLocked()
		h.mu.Unlock()
		if h.cfg.Duration > 0 {
			tm := time.NewTimer(h.cfg.Duration)
			select {
			case <-tm.C:
			case <-h.ctx.Done():
			}
			tm.Stop()
		} else {
			<-h.ctx.Done()
		}
	case <-h.ctx.Done():
	}
	end := time.Now()

	h.mu.Lock()
	h.st.stopped = true
	openAtEnd := h.st.open
	for i := range h.slots {
		if t := h.slots[i].timer; t != nil {
			t.Stop()
		}
	}
	var goroutineHeld []*Conn
	for i := range h.slots {
		if c := h.slots[i].conn; c != nil {
			goroutineHeld = append(goroutineHeld, c)
		}
	}
	h.mu.Unlock()
	goroutines := runtime.NumGoroutine()
	h.cancel()
	h.inflight.Wait()
	if h.hold != nil {
		h.hold.closeAll(time.Second)
	}
	for _, c := range goroutineHeld {
		c.nc.SetReadDeadline(time.Unix(1, 0)) // the reader closes it politely
	}
	h.readers.Wait()
	rep.stop()
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)

	h.mu.Lock()
	h.report = h.buildReport(end, openAtEnd, goroutines, &ru1)
	h.notifyLocked()
	h.mu.Unlock()
	close(h.done)
}

// sampler takes one timeline sample per interval and writes the progress line.
type sampler struct {
	stopc, done chan struct{}
}

func (h *Holder) startSampler() *sampler {
	sp := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		tick := time.NewTicker(h.cfg.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				h.sample(now)
			case <-sp.stopc:
				h.sample(time.Now())
				return
			}
		}
	}()
	return sp
}

func (sp *sampler) stop() {
	close(sp.stopc)
	<-sp.done
}

// sample appends one timeline sample; the sampler goroutine owns the
// recorders' flush.
func (h *Holder) sample(now time.Time) {
	hv := h.hs.flush()
	rv := h.recon.flush()
	h.rhs.flush()
	h.mu.Lock()
	st := &h.st
	cur := holdCounts{closes: st.closes, reconnects: st.recOK, failed: st.recFailed + st.initFailed, connected: st.recOK + st.initOK}
	d := holdCounts{cur.closes - st.lastSample.closes, cur.reconnects - st.lastSample.reconnects,
		cur.failed - st.lastSample.failed, cur.connected - st.lastSample.connected}
	st.lastSample = cur
	s := HoldSample{T: now.Sub(h.start).Seconds(), Open: st.open, Waiting: st.waiting, Connecting: st.connecting,
		Closes: d.closes, Reconnects: d.reconnects, Failed: d.failed, Connected: d.connected,
		HandshakeP99MS: ms(hv.ValueAtQuantile(99)), ReconnectP99MS: ms(rv.ValueAtQuantile(99))}
	if len(st.timeline) < 100_000 {
		st.timeline = append(st.timeline, s)
	}
	totalFailed := st.recFailed + st.initFailed
	h.mu.Unlock()
	if w := h.cfg.Progress; w != nil {
		fmt.Fprintf(w, "wsbench hold %6.1fs  open %d/%d  closes %d (+%d)  reconnected %d  failed %d  waiting %d  connecting %d\n",
			s.T, s.Open, h.cfg.Conns, cur.closes, d.closes, cur.reconnects, totalFailed, s.Waiting, s.Connecting)
	}
}
