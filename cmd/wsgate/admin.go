package main

// Operations (issue 8): the flags of the access log, --check and the drain
// spread; the access log's sink; metrics computed when scraped (drain
// state, per-backend health, tunnels and in-flight requests); the drain
// on SIGTERM/SIGINT.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/loop/accesslog"
	"github.com/wsgate/wsgate/tunnel"
)

// opsOptions are the flags of the access log, --check and the drain.
type opsOptions struct {
	accessLog   string
	check       bool
	drainSpread time.Duration
	readyFile   string
}

func (p *opsOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&p.accessLog, "access-log", "off", "`FILE|-|off`: one JSON line per request and per tunnel close, to FILE (appended), - (stdout) or nowhere")
	fs.BoolVar(&p.check, "check", false, "validate flags and --backends-file, resolve names, probe each backend once, print the effective configuration; exit 0 or 1")
	fs.DurationVar(&p.drainSpread, "drain-spread", 0, "the last part of --drain-timeout over which the tunnels still open are closed, evenly (default a quarter of --drain-timeout)")
	fs.StringVar(&p.readyFile, "ready-file", "", "once every listener is bound, write `FILE` (atomically) with one line per listener: \"listen ADDR\", \"tls ADDR\", \"admin ADDR\" (with port 0, the port the kernel chose)")
}

// check validates the values; errors name the flag.
func (p *opsOptions) validate(drainTO time.Duration) error {
	if p.drainSpread < 0 || p.drainSpread > drainTO {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--drain-spread\" flag: must be 0..--drain-timeout (%v)", p.drainSpread, drainTO)}
	}
	if p.accessLog == "" {
		return &usageError{`invalid argument "" for "--access-log" flag: use FILE, - or off`}
	}
	return checkReadyFile(p.readyFile) // listen_flags.go
}

// openAccessLog opens the --access-log sink; nil when it is "off".
func (p *opsOptions) openAccessLog(stdout io.Writer) (*accesslog.Log, io.Closer, error) {
	switch p.accessLog {
	case "off":
		return nil, nil, nil
	case "-":
		return accesslog.New(stdout, 0), nil, nil
	}
	f, err := os.OpenFile(p.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, &usageError{fmt.Sprintf("invalid argument %q for \"--access-log\" flag: %v", p.accessLog, err)}
	}
	return accesslog.New(f, 0), f, nil
}

// wantsCheck reports whether the command line asks for --check.
func wantsCheck(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--check" || a == "--check=true" || a == "--check=1" {
			return true
		}
	}
	return false
}

// startedAt is when the process started, for the status page.
var startedAt = time.Now()

// opsState is what the status page shows besides the balancer.
type opsState struct {
	srv       *loop.Server
	engine    *tunnel.Engine
	accessLog *accesslog.Log // nil when off
}

var ops atomic.Pointer[opsState]

// registerOpsMetrics adds the metrics computed when scraped: drain state,
// access log drops, and per backend its state, live tunnels, in-flight
// requests, failures and checks (for every backend present at the time of
// the scrape, so backends added by a reload or DNS appear too).
func registerOpsMetrics(srv *loop.Server, engine *tunnel.Engine, bal *balancer.Balancer, alog *accesslog.Log) {
	ops.Store(&opsState{srv: srv, engine: engine, accessLog: alog})
	metrics.NewGauge(`wsgate_draining`, func() float64 {
		if srv.Phase() != loop.DrainServing {
			return 1
		}
		return 0
	})
	metrics.NewGauge(`wsgate_drain_phase`, func() float64 { return float64(srv.Phase()) })
	metrics.RegisterMetricsWriter(func(w io.Writer) {
		for _, p := range bal.Status() {
			for _, b := range p.Backends {
				labels := `{pool="` + p.Name + `",backend="` + b.Addr + `"}`
				up := uint64(0)
				if b.State == "healthy" || b.State == "slow-starting" {
					up = 1
				}
				metrics.WriteGaugeUint64(w, `wsgate_backend_up`+labels, up)
				metrics.WriteGaugeUint64(w, `wsgate_backend_tunnels`+labels, uint64(max(b.Tunnels, 0)))
				metrics.WriteGaugeUint64(w, `wsgate_backend_inflight`+labels, uint64(max(b.InFlight, 0)))
				metrics.WriteCounterUint64(w, `wsgate_backend_failures_total`+labels, b.Failures)
				metrics.WriteCounterUint64(w, `wsgate_backend_picks_total`+labels, b.Picks)
				metrics.WriteGaugeFloat64(w, `wsgate_backend_fair_tunnels`+labels, b.Fair)
				metrics.WriteCounterUint64(w, `wsgate_rebalance_moved_total`+labels, b.Moved)
			}
			writePoolMetrics(w, bal, p) // queue_flags.go: the queue and rebalancing passes
		}
		if alog != nil {
			metrics.WriteCounterUint64(w, `wsgate_access_log_lines_total`, alog.Written())
		}
	})
}

// drainAndStop runs after the first SIGTERM/SIGINT: the server drains
// (loop.Server.Drain: hand-over, requests finish, tunnels closed spread
// over the end of the window), then the engine, the admin listener and
// the access log close. The admin listener stays up during the drain so
// that wsgate_draining and /status can be watched.
func drainAndStop(o *options, srv *loop.Server, engine *tunnel.Engine, closeAdmin func(), alog *accesslog.Log, logf func(string, ...any)) {
	srv.Drain(context.Background(), o.drainTO, o.ops.drainSpread)
	engine.Close()
	if closeAdmin != nil {
		closeAdmin()
	}
	if alog != nil {
		alog.Close()
		if n := alog.Dropped(); n > 0 {
			logf("access log: %d lines dropped (the sink was too slow)", n)
		}
	}
}

// effectiveConfig describes the configuration wsgate runs with, for --check.
func effectiveConfig(o *options, bal *balancer.Balancer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen            %s\n", strings.Join(o.listen, " "))
	if len(o.edge.tlsListen) > 0 {
		fmt.Fprintf(&b, "tls-listen        %s\n", strings.Join(o.edge.tlsListen, " "))
		for i := range o.edge.tlsCert {
			fmt.Fprintf(&b, "tls-pair          %s %s\n", o.edge.tlsCert[i], o.edge.tlsKey[i])
		}
	}
	fmt.Fprintf(&b, "admin             %s\n", o.admin)
	if o.ops.readyFile != "" {
		fmt.Fprintf(&b, "ready-file        %s\n", o.ops.readyFile)
	}
	sticky := o.sticky.mode
	if o.sticky.secret != "" || o.sticky.secretFile != "" {
		sticky += ", keyed by --sticky-secret"
	} else if sc, err := o.sticky.config(); err == nil && derivedKeyNote(sc) != "" {
		sticky += ", keyed by the backend list (derived): set --sticky-secret"
	}
	fmt.Fprintf(&b, "sticky            %s\n", sticky)
	fmt.Fprintf(&b, "balance           %s\n", o.balance)
	fmt.Fprintf(&b, "timeouts          connect %v, header %v, response %v, keepalive %v, tunnel-idle %v, drain %v\n",
		o.connectTO, o.headerTO, o.responseTO, o.keepaliveTO, o.tunnelIdleTO, o.drainTO)
	spread := o.ops.drainSpread
	if spread == 0 {
		spread = o.drainTO / 4
	}
	fmt.Fprintf(&b, "drain spread      %v\n", spread)
	fmt.Fprintf(&b, "limits            max-header-bytes %s, max-body-bytes %s\n", o.maxHeaderBytes.String(), o.maxBodyBytes.String())
	h := o.health
	hp := h.path
	if hp == "" {
		hp = `"" (active checks off)`
	}
	fmt.Fprintf(&b, "health            path %s, interval %v, timeout %v, rise %d, fall %d, max-fails %d in %v, slow-start %v\n",
		hp, h.interval, h.timeout, h.rise, h.fall, h.maxFails, h.failTimeout, h.slowStart)
	if h.file != "" {
		fmt.Fprintf(&b, "backends-file     %s\n", h.file)
	}
	fmt.Fprintf(&b, "trusted-proxies   %s\n", orNone(strings.Join(o.trustedProxies, ",")))
	fmt.Fprintf(&b, "access-log        %s\n", o.ops.accessLog)
	for _, r := range bal.Routes() {
		fmt.Fprintf(&b, "route             %s\n", r)
	}
	for _, p := range bal.Pools() {
		for _, be := range p.Backends() {
			host := ""
			if be.Host() != be.Addr() {
				host = " (" + be.Host() + ")"
			}
			fmt.Fprintf(&b, "backend           %s=%s%s weight %d\n", p.Name(), be.Addr(), host, be.Weight())
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// readyHandler is GET /ready on --admin: 200 while serving, 503 from the
// moment a drain starts, for the health check of whatever balances across
// instances (a Kubernetes readinessProbe, a cloud load balancer, keepalived).
func readyHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if st := ops.Load(); st != nil && st.srv.Phase() != loop.DrainServing {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}
