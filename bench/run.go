package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is what a run measured. Latencies are in milliseconds.
type Result struct {
	Mode     Mode      `json:"mode"`
	URL      string    `json:"url"`
	Conns    int       `json:"conns"`
	Size     int       `json:"size,omitempty"`
	Rate     float64   `json:"rate,omitempty"` // 0: closed loop
	Started  time.Time `json:"started"`
	ElapsedS float64   `json:"elapsed_s"`
	// RunS is the measured window: from the start to the end for handshake,
	// from the end of the ramp to the end for the others.
	RampS float64 `json:"ramp_s"`

	Attempts  int64 `json:"attempts"`  // handshakes attempted
	Connected int64 `json:"connected"` // handshakes that succeeded
	Failed    int64 `json:"failed"`    // handshakes that failed
	MaxOpen   int64 `json:"max_open"`  // most connections open at once
	OpenAtEnd int64 `json:"open_at_end"`
	Dropped   int64 `json:"dropped"` // established connections lost before the end

	Messages          int64   `json:"messages"` // round trips (echo) or acks (socketio)
	MessagesPerSecond float64 `json:"messages_per_second"`
	Bytes             int64   `json:"bytes"` // payload bytes, both ways
	HandshakesPerSec  float64 `json:"handshakes_per_second"`

	// Latency is the message round trip (echo), the ack (socketio) or the
	// handshake (connect, handshake). With a rate it counts from when each
	// message was due.
	Latency          LatencySummary    `json:"latency"`
	HandshakeLatency LatencySummary    `json:"handshake_latency"`
	Distribution     []PercentilePoint `json:"distribution"`
	Timeline         []Sample          `json:"timeline"`

	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`
	Unsolicited int64            `json:"unsolicited,omitempty"` // messages that answered nothing sent

	// Socket.IO.
	Transport      string           `json:"transport,omitempty"`
	Upgraded       int64            `json:"upgraded,omitempty"`
	SessionUnknown int64            `json:"session_id_unknown,omitempty"`
	Nodes          map[string]int64 `json:"nodes,omitempty"` // acks per node, when the server names itself

	// wsbench's own cost.
	CPUSeconds      float64 `json:"cpu_s"`
	CPUPerOpUS      float64 `json:"cpu_per_op_us"` // per message (echo, socketio) or handshake
	MaxRSSKiB       int64   `json:"max_rss_kib"`
	MemPerConnKiB   float64 `json:"mem_per_conn_kib,omitempty"`  // Go heap + stacks per open connection (connect)
	RSSPerConnKiB   float64 `json:"rss_per_conn_kib,omitempty"`  // process RSS per open connection (connect)
	GoroutinesAtEnd int     `json:"goroutines_at_end,omitempty"` // before connections close
}

// session is one client connection as a scenario sees it.
type session interface {
	// roundTrip sends one message and waits for its answer.
	roundTrip() error
	// hold reads (answering pings) until the connection ends or fails.
	hold() error
	// netConnDeadline unblocks any read or write in progress.
	interrupt()
	// close ends the session politely, waiting up to wait for the peer.
	close(wait time.Duration)
}

// run is the state of one Run.
type run struct {
	cfg   Config
	tgt   Target
	dial  dialer
	c     counters
	lat   *recorder // messages, acks
	hs    *recorder // handshakes
	start time.Time
	// open is how a worker connects; set per mode.
	open func(ctx context.Context, i int) (session, error)
	// hold keeps connect's idle connections without a goroutine each; nil
	// where unavailable (then each worker holds its own).
	hold *holder
}

// Run runs one scenario until its duration is over or ctx is cancelled.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, lat: newRecorder(), hs: newRecorder()}
	if cfg.Mode == ModeSocketIO {
		if err := r.setupSocketIO(); err != nil {
			return nil, err
		}
	} else {
		r.tgt, _ = ParseTarget(cfg.URL)
		r.open = r.openWS
	}
	r.dial = dialer{sources: toIPs(cfg.SourceIPs), timeout: cfg.HandshakeTimeout}
	if r.tgt.TLS {
		r.dial.tls = &tls.Config{InsecureSkipVerify: cfg.InsecureTLS}
	}

	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	r.start = time.Now()
	rep := r.startReporter()

	res := &Result{Mode: cfg.Mode, URL: cfg.URL, Conns: cfg.Conns, Rate: cfg.Rate, Started: r.start}
	if cfg.Mode == ModeEcho || cfg.Mode == ModeSocketIO {
		res.Size = cfg.Size
	}
	var rampEnd time.Time
	switch cfg.Mode {
	case ModeHandshake:
		r.runHandshakes(ctx)
		rampEnd = r.start
	default:
		rampEnd = r.runConns(ctx, res)
	}
	end := time.Now()
	rep.stop()

	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	r.fillResult(res, rampEnd, end, &ru0, &ru1, rep.samples)
	return res, nil
}

// openWS dials and upgrades connection i.
func (r *run) openWS(ctx context.Context, i int) (session, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	nc, err := r.dial.dial(ctx, r.tgt, i)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	bufSize := 256
	if r.cfg.Mode == ModeEcho {
		bufSize = min(r.cfg.Size+16, 64<<10)
	}
	c, _, err := handshake(nc, r.tgt, r.cfg.Headers, bufSize)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	s := &wsSession{c: c, size: r.cfg.Size, op: opBinary, uns: &r.c.unsolicited}
	if r.cfg.Text {
		s.op = opText
	}
	if r.cfg.Mode == ModeEcho {
		s.payload = make([]byte, r.cfg.Size)
		for j := range s.payload {
			s.payload[j] = 'a' + byte(j%26)
		}
	}
	return s, nil
}

// wsSession is a raw WebSocket echo client.
type wsSession struct {
	c       *Conn
	payload []byte
	size    int
	op      byte
	uns     *atomic.Int64 // the run's unsolicited count
}

func (s *wsSession) roundTrip() error {
	if err := s.c.WriteMessage(s.op, s.payload); err != nil {
		return err
	}
	for {
		_, n, _, err := s.c.ReadMessage(false)
		if err != nil {
			return err
		}
		if n == s.size {
			return nil
		}
		s.uns.Add(1) // a greeting or a push: not our echo
	}
}

func (s *wsSession) hold() error {
	for {
		if _, _, _, err := s.c.ReadMessage(false); err != nil {
			return err
		}
	}
}

func (s *wsSession) interrupt()               { s.c.nc.SetDeadline(time.Unix(1, 0)) }
func (s *wsSession) close(wait time.Duration) { s.c.CloseGracefully(wait) }

// runConns opens cfg.Conns sessions at the ramp rate, runs each until the
// duration after the ramp is over, and returns when the ramp ended.
func (r *run) runConns(ctx context.Context, res *Result) time.Time {
	cfg := r.cfg
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		opened sync.WaitGroup // handshakes finished, either way
		done   sync.WaitGroup // workers finished
		sem    = make(chan struct{}, cfg.DialConcurrency)
	)
	var memBase memSnapshot
	if cfg.Mode == ModeConnect {
		memBase = readMem()
		r.hold, _ = newHolder(func(_ int, err error) {
			r.c.open.Add(-1)
			r.c.dropped.Add(1)
			r.c.fail(errKind(err))
		}, 0)
	}
	opened.Add(cfg.Conns)
	done.Add(cfg.Conns)
	// Messages flow as soon as a connection is open; the timeline shows the ramp.
	go func() {
		for i := range cfg.Conns {
			if cfg.Ramp > 0 {
				due := r.start.Add(time.Duration(float64(i) / cfg.Ramp * float64(time.Second)))
				if !sleepUntil(stopCtx, due) {
					for range cfg.Conns - i {
						opened.Done()
						done.Done()
					}
					return
				}
			} else {
				select {
				case sem <- struct{}{}:
				case <-stopCtx.Done():
					for range cfg.Conns - i {
						opened.Done()
						done.Done()
					}
					return
				}
			}
			go r.worker(stopCtx, i, &opened, &done, sem)
		}
	}()
	opened.Wait()
	rampEnd := time.Now()
	if cfg.Mode == ModeConnect && r.c.open.Load() > 0 {
		// Let the connections settle, then weigh them.
		sleepUntil(stopCtx, time.Now().Add(min(cfg.Duration/2, time.Second)))
		m := readMem()
		if n := r.c.open.Load(); n > 0 {
			res.MemPerConnKiB = float64(m.goBytes-memBase.goBytes) / 1024 / float64(n)
			res.RSSPerConnKiB = float64(m.rss-memBase.rss) / 1024 / float64(n)
		}
	}
	sleepUntil(stopCtx, rampEnd.Add(cfg.Duration))
	res.OpenAtEnd = r.c.open.Load()
	res.GoroutinesAtEnd = runtime.NumGoroutine()
	stop()
	done.Wait()
	if r.hold != nil {
		r.c.open.Add(-int64(r.hold.closeAll(time.Second)))
	}
	return rampEnd
}

// worker opens session i, then runs the mode's loop until stopCtx ends.
func (r *run) worker(stopCtx context.Context, i int, opened, done *sync.WaitGroup, sem chan struct{}) {
	defer done.Done()
	cfg := r.cfg
	t0 := time.Now()
	r.c.attempts.Add(1)
	s, err := r.open(stopCtx, i)
	if cfg.Ramp == 0 {
		<-sem
	}
	opened.Done()
	if err != nil {
		if !stopping(stopCtx) {
			r.c.failed.Add(1)
			r.c.fail(errKind(err))
		}
		return
	}
	r.hs.record(i, time.Since(t0))
	r.c.connected.Add(1)
	r.c.opened()
	if ws, ok := s.(*wsSession); ok && cfg.Mode == ModeConnect && r.hold != nil && r.hold.add(ws.c, i) == nil {
		return // the holder has it now, and counts its end
	}
	defer r.c.open.Add(-1)
	unblock := context.AfterFunc(stopCtx, s.interrupt)
	defer unblock()

	switch cfg.Mode {
	case ModeConnect:
		err = s.hold()
	default:
		err = r.loop(stopCtx, i, s)
	}
	if err != nil && !stopping(stopCtx) {
		r.c.dropped.Add(1)
		r.c.fail(errKind(err))
		s.close(0)
		return
	}
	unblock()
	s.close(time.Second)
}

// loop runs round trips on s: back to back (closed loop), or each at its due
// time when a rate is set. With a rate, latency counts from the due time, so
// time spent waiting behind a stalled answer is counted (coordinated
// omission corrected as wrk2 does: one message in flight per connection;
// messages that fell due meanwhile go out back to back).
func (r *run) loop(stopCtx context.Context, i int, s session) error {
	var interval time.Duration
	var due time.Time
	var timer *time.Timer
	if r.cfg.Rate > 0 {
		perConn := r.cfg.Rate / float64(r.cfg.Conns)
		interval = time.Duration(float64(time.Second) / perConn)
		// Spread the connections' phases over one interval.
		due = time.Now().Add(time.Duration(rand.Int64N(int64(interval) + 1)))
		timer = time.NewTimer(time.Hour)
		defer timer.Stop()
	}
	for stopCtx.Err() == nil {
		var t0 time.Time
		if interval > 0 {
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-stopCtx.Done():
					return nil
				}
			}
			t0 = due
			due = due.Add(interval)
		} else {
			t0 = time.Now()
		}
		if err := s.roundTrip(); err != nil {
			return err
		}
		r.lat.record(i, time.Since(t0))
	}
	return nil
}

// runHandshakes opens and closes connections from cfg.Conns workers until
// the duration is over: back to back, or at cfg.Rate in total.
func (r *run) runHandshakes(ctx context.Context) {
	cfg := r.cfg
	// A plain cancel, not a deadline: a child context with its own copy of
	// the deadline could fire first and make the end look like a timeout.
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	endTimer := time.AfterFunc(time.Until(r.start.Add(cfg.Duration)), stop)
	defer endTimer.Stop()
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Go(func() {
			var interval time.Duration
			due := time.Now()
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.Conns) / cfg.Rate)
				due = due.Add(time.Duration(rand.Int64N(int64(interval) + 1)))
			}
			for n := w; stopCtx.Err() == nil; n += cfg.Conns {
				t0 := time.Now()
				if interval > 0 {
					if !sleepUntil(stopCtx, due) {
						return
					}
					t0 = due
					due = due.Add(interval)
				}
				r.c.attempts.Add(1)
				s, err := r.open(stopCtx, n)
				if err != nil {
					if !stopping(stopCtx) {
						r.c.failed.Add(1)
						r.c.fail(errKind(err))
					}
					continue
				}
				r.hs.record(w, time.Since(t0))
				r.c.connected.Add(1)
				s.close(time.Second)
			}
		})
	}
	wg.Wait()
}

// stopping reports whether ctx has ended or reached its deadline: a child
// context keeps its own timer for an inherited deadline and may fire a moment
// before ctx itself does, so a failure at that moment is the end of the run,
// not an error.
func stopping(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// sleepUntil waits until t or until ctx ends; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fillResult completes res from the counters, histograms and samples.
func (r *run) fillResult(res *Result, rampEnd, end time.Time, ru0, ru1 *syscall.Rusage, samples []Sample) {
	res.ElapsedS = end.Sub(r.start).Seconds()
	res.RampS = rampEnd.Sub(r.start).Seconds()
	res.Attempts = r.c.attempts.Load()
	res.Connected = r.c.connected.Load()
	res.Failed = r.c.failed.Load()
	res.MaxOpen = r.c.maxOpen.Load()
	res.Dropped = r.c.dropped.Load()
	res.Errors = r.c.errors.Load()
	res.Unsolicited = r.c.unsolicited.Load()
	res.Upgraded = r.c.upgraded.Load()
	res.SessionUnknown = r.c.sidUnknown.Load()
	res.ErrorKinds, res.Nodes = r.c.snapshot()
	res.Messages = r.lat.total.TotalCount()
	res.Bytes = 2 * int64(r.cfg.Size) * res.Messages
	if el := res.ElapsedS; el > 0 {
		res.MessagesPerSecond = float64(res.Messages) / el
		res.HandshakesPerSec = float64(res.Connected) / el
	}
	res.HandshakeLatency = summarize(r.hs.total)
	if r.cfg.Mode == ModeConnect || r.cfg.Mode == ModeHandshake {
		res.Latency = res.HandshakeLatency
		res.Distribution = distribution(r.hs.total)
	} else {
		res.Latency = summarize(r.lat.total)
		res.Distribution = distribution(r.lat.total)
	}
	if r.cfg.Mode == ModeSocketIO {
		res.Transport = r.cfg.Transport
	}
	res.Timeline = samples
	cpu := tvSeconds(ru1.Utime) + tvSeconds(ru1.Stime) - tvSeconds(ru0.Utime) - tvSeconds(ru0.Stime)
	res.CPUSeconds = cpu
	ops := res.Messages
	if r.cfg.Mode == ModeConnect || r.cfg.Mode == ModeHandshake {
		ops = res.Connected
	}
	if ops > 0 {
		res.CPUPerOpUS = cpu / float64(ops) * 1e6
	}
	res.MaxRSSKiB = ru1.Maxrss
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// reporter samples the counters and histograms once per interval, writes the
// progress line, and keeps the timeline.
type reporter struct {
	stopc   chan struct{}
	done    chan struct{}
	samples []Sample // owned by the reporter goroutine until done is closed
}

func (r *run) startReporter() *reporter {
	rep := &reporter{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rep.done)
		tick := time.NewTicker(r.cfg.ProgressInterval)
		defer tick.Stop()
		last := time.Now()
		var lastConnected, lastErrors int64
		sample := func(now time.Time) {
			iv := r.lat.flush()
			hv := r.hs.flush()
			secs := now.Sub(last).Seconds()
			last = now
			s := Sample{
				T:          now.Sub(r.start).Seconds(),
				Open:       r.c.open.Load(),
				Messages:   iv.TotalCount(),
				P50MS:      ms(iv.ValueAtQuantile(50)),
				P90MS:      ms(iv.ValueAtQuantile(90)),
				P99MS:      ms(iv.ValueAtQuantile(99)),
				MaxMS:      ms(iv.Max()),
				HandshakeP: ms(hv.ValueAtQuantile(99)),
			}
			conn, errs := r.c.connected.Load(), r.c.errors.Load()
			s.Connected, s.Errors = conn-lastConnected, errs-lastErrors
			lastConnected, lastErrors = conn, errs
			if r.cfg.Mode == ModeConnect || r.cfg.Mode == ModeHandshake {
				s.Messages = hv.TotalCount()
				s.P50MS, s.P90MS = ms(hv.ValueAtQuantile(50)), ms(hv.ValueAtQuantile(90))
				s.P99MS, s.MaxMS = s.HandshakeP, ms(hv.Max())
			}
			if secs > 0 {
				s.PerSecond = float64(s.Messages) / secs
			}
			rep.samples = append(rep.samples, s)
			if w := r.cfg.Progress; w != nil {
				unit := "msgs/s"
				if r.cfg.Mode == ModeConnect || r.cfg.Mode == ModeHandshake {
					unit = "hs/s"
				}
				fmt.Fprintf(w, "wsbench %s %6.1fs  open %d  %s %.0f  errors %d  p99 %s\n",
					r.cfg.Mode, s.T, s.Open, unit, s.PerSecond, errs, fmtMS(s.P99MS))
			}
		}
		for {
			select {
			case now := <-tick.C:
				sample(now)
			case <-rep.stopc:
				if time.Since(last) > r.cfg.ProgressInterval/10 {
					sample(time.Now())
				} else {
					r.lat.flush()
					r.hs.flush()
				}
				return
			}
		}
	}()
	return rep
}

func (rep *reporter) stop() {
	close(rep.stopc)
	<-rep.done
}

// fmtMS formats milliseconds for people: 0.042ms, 1.21ms, 350ms, 2.5s.
func fmtMS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.3fms", v)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}

// memSnapshot is the process's memory at one moment.
type memSnapshot struct {
	goBytes uint64 // heap in use + goroutine stacks
	rss     uint64
}

func readMem() memSnapshot {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{goBytes: ms.HeapInuse + ms.StackInuse, rss: readRSS()}
}
