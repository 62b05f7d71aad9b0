package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/bench"
)

// defaultHoldDuration leaves time to kill a backend or start a rebalance by hand.
const defaultHoldDuration = 60 * time.Second

const holdAbout = `Hold N connections; reconnect each one that closes (close frame, TCP close
or error) after a jittered delay, as Socket.IO and most WebSocket clients do,
retrying a failed reconnect after a new delay. For reconnect storms (kill a
backend: every client comes back) and rebalancing (wsgate --rebalance closes
tunnels with 1012; --count-header X-Backend shows where they went).
Every held connection is read: pings answered, close frames answered and
counted by code. Runs for --duration after the ramp (0: until interrupted),
then closes everything.
`

type holdFlags struct {
	conns            int
	duration         time.Duration
	ramp, delay      string
	sourceIPs        string
	json             bool
	report           string
	headers          []string
	handshakeTimeout time.Duration
	dialConcurrency  int
	ping             time.Duration
	countHeader      string
	insecure         bool
	quiet            bool
}

func newHoldFlagSet(f *holdFlags, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("wsbench hold", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.IntVarP(&f.conns, "conns", "c", bench.DefaultConns, "connections to hold")
	fs.DurationVarP(&f.duration, "duration", "d", defaultHoldDuration, "how long to hold after the ramp; 0 holds until interrupted (Ctrl-C prints the report)")
	fs.StringVar(&f.ramp, "ramp", "", "open the first connections at `R/s` (default: as fast as --dial-concurrency allows)")
	fs.StringVar(&f.delay, "reconnect-delay", "200ms-1s", "delay before each reconnect (and retry): `MIN-MAX` uniform, or one value for a fixed delay")
	fs.DurationVar(&f.ping, "ping", 0, "ping each connection this often and reconnect one that sent nothing for a whole interval (0: off)")
	fs.StringVar(&f.countHeader, "count-header", "", "count the values of this 101 response header (`NAME`, e.g. X-Backend): handshakes and open connections per value")
	fs.StringVar(&f.sourceIPs, "source-ips", "", "bind connections round-robin to these local `addresses` (127.0.0.1-127.0.0.8)")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	fs.StringVar(&f.report, "report", "", "write a self-contained HTML report to `FILE.html`")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header `'Name: value'`, repeatable")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", bench.DefaultHandshakeTimeout, "bound on dial plus handshake")
	fs.IntVar(&f.dialConcurrency, "dial-concurrency", bench.DefaultDialConcurrency, "handshakes in flight at once (ramp and reconnects)")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate checks (wss://)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: wsbench hold [flags] URL\n\n%s\nflags:\n%s\n%s", holdAbout, fs.FlagUsages(), bench.HoldHelp)
	}
	return fs
}

// holdConfig turns parsed flags into a bench.HoldConfig.
func holdConfig(f *holdFlags, url string) (bench.HoldConfig, error) {
	cfg := bench.HoldConfig{URL: url, Conns: f.conns, Duration: f.duration, HandshakeTimeout: f.handshakeTimeout,
		DialConcurrency: f.dialConcurrency, Ping: f.ping, CountHeader: f.countHeader, InsecureTLS: f.insecure}
	var err error
	switch {
	case f.conns <= 0:
		return cfg, errors.New("-c/--conns: must be at least 1")
	case f.duration < 0:
		return cfg, errors.New("-d/--duration: must not be negative (0 holds until interrupted)")
	case f.handshakeTimeout <= 0:
		return cfg, errors.New("--handshake-timeout: must be positive")
	case f.dialConcurrency <= 0:
		return cfg, errors.New("--dial-concurrency: must be at least 1")
	case f.ping < 0:
		return cfg, errors.New("--ping: must not be negative (0 is off)")
	}
	if f.ramp != "" {
		if cfg.Ramp, err = bench.ParseRate(f.ramp); err != nil {
			return cfg, fmt.Errorf("--ramp: %w", err)
		}
	}
	if cfg.ReconnectDelayMin, cfg.ReconnectDelayMax, err = bench.ParseDelayRange(f.delay); err != nil {
		return cfg, fmt.Errorf("--reconnect-delay: %w", err)
	}
	if cfg.ReconnectDelayMax == 0 {
		cfg.ReconnectDelayMax = time.Nanosecond // "0": at once (zero would mean the default)
	}
	if f.countHeader != "" {
		if _, err := bench.ParseHeader(f.countHeader + ": x"); err != nil {
			return cfg, fmt.Errorf("--count-header: bad header name %q", f.countHeader)
		}
	}
	if f.sourceIPs != "" {
		if cfg.SourceIPs, err = bench.ParseSourceIPs(f.sourceIPs); err != nil {
			return cfg, fmt.Errorf("--source-ips: %w", err)
		}
	}
	if cfg.Headers, err = parseHeaders(f.headers); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f holdFlags
	fs := newHoldFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "wsbench hold: %v\n(wsbench hold --help lists the flags)\n", err)
		return exitUsage
	}
	url, err := oneURL(fs)
	var cfg bench.HoldConfig
	if err == nil {
		cfg, err = holdConfig(&f, url)
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsbench hold: %v\n", err)
		return exitUsage
	}
	if !f.quiet {
		cfg.Progress = stderr
	}
	res, err := bench.Hold(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "wsbench hold: %v\n", err)
		return exitUsage
	}
	if code := output(res, f.json, f.report, stdout, stderr); code != exitOK { // main.go
		return code
	}
	if res.Initial.OK == 0 {
		return exitProblem
	}
	return exitOK
}
