// Command wsbench is wsgate's companion load generator for WebSocket and
// Socket.IO fleets.
//
//	wsbench SUBCOMMAND [flags] URL
//	  connect   open and hold N connections at a ramp rate; handshake latency, failures
//	  echo      N connections send messages (closed loop, or --rate for an open model)
//	  handshake open/close as fast as possible; handshakes/s
//	  hold      hold N connections, reconnecting on close after a jittered delay (storms, rebalancing)
//	  socketio  Socket.IO clients (polling then upgrade, or websocket only); acks, latency, nodes
//	  probe     the checks people run by hand with curl, and a diagnosis in plain words
//
// A progress line goes to stderr each second; the summary goes to stdout
// (JSON with --json); --report writes a self-contained HTML page.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/bench"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: wsbench SUBCOMMAND [flags] URL

  connect   open and hold N connections at a ramp rate; report handshake latency, failures
  echo      N connections send messages (closed loop, or --rate for an open model); latency percentiles
  handshake open/close as fast as possible; handshakes/s
  hold      hold N connections, reconnecting each on close after a jittered delay: reconnect
            storms and rebalancing (closes by code, reconnect latency, recovery time)
  socketio  Socket.IO clients (polling then upgrade, or websocket only); acks, latency, which node served
  probe     backend health, plain GET through the proxy, raw upgrade handshake; explains a
            400/403/502/504 or a missing 101

'wsbench SUBCOMMAND --help' lists the flags.
`

// exit codes
const (
	exitOK      = 0
	exitProblem = 1 // nothing connected, or probe found a problem
	exitUsage   = 2
)

// run is main without the process: it parses args, runs, writes, and
// returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "--version", "version":
		fmt.Fprintln(stdout, "wsbench", version)
		return exitOK
	case "probe":
		return runProbe(ctx, args, stdout, stderr)
	case "hold":
		return runHold(ctx, args, stdout, stderr)
	case "connect", "echo", "handshake", "socketio":
		return runLoad(ctx, bench.Mode(sub), args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "wsbench: unknown subcommand %q\n\n%s", sub, usage)
	return exitUsage
}

// loadFlags are the flags of connect, echo, handshake and socketio.
type loadFlags struct {
	conns            int
	duration         time.Duration
	ramp, rate, size string
	sourceIPs        string
	json             bool
	report           string
	headers          []string
	handshakeTimeout time.Duration
	dialConcurrency  int
	text             bool
	insecure         bool
	quiet            bool
	// socketio
	transport, event, namespace, path string
	eio                               int
}

func newLoadFlagSet(mode bench.Mode, f *loadFlags, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("wsbench "+string(mode), pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.IntVarP(&f.conns, "conns", "c", bench.DefaultConns, "connections (handshake: concurrent workers)")
	fs.DurationVarP(&f.duration, "duration", "d", bench.DefaultDuration, "how long to run after the ramp (handshake: in all)")
	fs.StringVar(&f.ramp, "ramp", "", "open connections at `R/s` (default: as fast as --dial-concurrency allows)")
	fs.StringVarP(&f.size, "size", "s", "64", "message payload `BYTES` (64, 16KiB)")
	fs.StringVar(&f.rate, "rate", "", "open model: `R/s` messages (handshake: handshakes) in total; latency counts from when each was due")
	fs.StringVar(&f.sourceIPs, "source-ips", "", "bind connections round-robin to these local `addresses` (127.0.0.1-127.0.0.8)")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	fs.StringVar(&f.report, "report", "", "write a self-contained HTML report to `FILE.html`")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header `'Name: value'`, repeatable")
	fs.DurationVar(&f.handshakeTimeout, "handshake-timeout", bench.DefaultHandshakeTimeout, "bound on dial plus handshake")
	fs.IntVar(&f.dialConcurrency, "dial-concurrency", bench.DefaultDialConcurrency, "handshakes in flight at once when there is no --ramp")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate checks (wss://)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines on stderr")
	if mode == bench.ModeEcho {
		fs.BoolVar(&f.text, "text", false, "send text frames instead of binary")
	}
	if mode == bench.ModeSocketIO {
		fs.StringVar(&f.transport, "transport", "polling", "polling (Engine.IO handshake over polling, then upgrade) or websocket")
		fs.IntVar(&f.eio, "eio", 4, "Engine.IO protocol: 4 (Socket.IO 3/4) or 3 (Socket.IO 2)")
		fs.StringVar(&f.event, "event", bench.DefaultEvent, "event emitted with an ack")
		fs.StringVar(&f.namespace, "namespace", "/", "Socket.IO namespace")
		fs.StringVar(&f.path, "path", bench.DefaultSocketIOPath, "Engine.IO path on the server")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: wsbench %s [flags] URL\n\nflags:\n%s", mode, fs.FlagUsages())
	}
	return fs
}

// loadConfig turns parsed flags into a bench.Config.
func loadConfig(mode bench.Mode, f *loadFlags, url string) (bench.Config, error) {
	cfg := bench.Config{
		Mode: mode, URL: url, Conns: f.conns, Duration: f.duration,
		HandshakeTimeout: f.handshakeTimeout, DialConcurrency: f.dialConcurrency,
		Text: f.text, InsecureTLS: f.insecure,
		Transport: f.transport, EIO: f.eio, Event: f.event, Namespace: f.namespace, SocketIOPath: f.path,
	}
	var err error
	if f.conns <= 0 {
		return cfg, errors.New("-c/--conns: must be at least 1")
	}
	if f.duration <= 0 {
		return cfg, errors.New("-d/--duration: must be positive")
	}
	if f.ramp != "" {
		if cfg.Ramp, err = bench.ParseRate(f.ramp); err != nil {
			return cfg, fmt.Errorf("--ramp: %w", err)
		}
	}
	if f.rate != "" {
		if cfg.Rate, err = bench.ParseRate(f.rate); err != nil {
			return cfg, fmt.Errorf("--rate: %w", err)
		}
	}
	if cfg.Size, err = bench.ParseSize(f.size); err != nil {
		return cfg, fmt.Errorf("-s/--size: %w", err)
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

func parseHeaders(hs []string) ([]bench.Header, error) {
	var out []bench.Header
	for _, s := range hs {
		h, err := bench.ParseHeader(s)
		if err != nil {
			return nil, fmt.Errorf("-H/--header: %w", err)
		}
		out = append(out, h)
	}
	return out, nil
}

// oneURL returns the single positional argument.
func oneURL(fs *pflag.FlagSet) (string, error) {
	switch fs.NArg() {
	case 0:
		return "", errors.New("a URL is required (ws://HOST:PORT/PATH)")
	case 1:
		return fs.Arg(0), nil
	}
	return "", fmt.Errorf("one URL expected, got %q", strings.Join(fs.Args(), " "))
}

func runLoad(ctx context.Context, mode bench.Mode, args []string, stdout, stderr io.Writer) int {
	var f loadFlags
	fs := newLoadFlagSet(mode, &f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "wsbench %s: %v\n(wsbench %s --help lists the flags)\n", mode, err, mode)
		return exitUsage
	}
	url, err := oneURL(fs)
	if err == nil {
		var cfg bench.Config
		cfg, err = loadConfig(mode, &f, url)
		if err == nil {
			if !f.quiet {
				cfg.Progress = stderr
			}
			return execute(ctx, cfg, &f, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "wsbench %s: %v\n", mode, err)
	return exitUsage
}

func execute(ctx context.Context, cfg bench.Config, f *loadFlags, stdout, stderr io.Writer) int {
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "wsbench %s: %v\n", cfg.Mode, err)
		return exitUsage
	}
	if code := output(res, f.json, f.report, stdout, stderr); code != exitOK {
		return code
	}
	if res.Connected == 0 {
		return exitProblem
	}
	return exitOK
}

// report is what a scenario's result can be written as: bench.Result and
// bench.HoldReport.
type report interface {
	WriteText(io.Writer) error
	WriteJSON(io.Writer) error
	WriteHTML(io.Writer) error
}

// output writes res to stdout (--json or text) and, with --report, as a
// self-contained HTML page.
func output(res report, asJSON bool, htmlPath string, stdout, stderr io.Writer) int {
	var err error
	if asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsbench: %v\n", err)
		return exitProblem
	}
	if htmlPath != "" {
		if err := writeHTML(htmlPath, res); err != nil {
			fmt.Fprintf(stderr, "wsbench: --report: %v\n", err)
			return exitProblem
		}
		fmt.Fprintf(stderr, "wsbench: report written to %s\n", htmlPath)
	}
	return exitOK
}

func writeHTML(path string, res report) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteHTML(fh); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		pc      bench.ProbeConfig
		headers []string
		asJSON  bool
	)
	fs := pflag.NewFlagSet("wsbench probe", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVar(&pc.Backend, "backend", "", "the backend behind the proxy, `HOST:PORT` or a URL, asked directly to tell proxy faults from application ones")
	fs.StringVar(&pc.HealthPath, "health-path", bench.DefaultHealthPath, "health `path` fetched from the backend directly (\"-\" skips it)")
	fs.DurationVar(&pc.Timeout, "timeout", bench.DefaultProbeTimeout, "bound on each check")
	fs.DurationVar(&pc.Hold, "hold", 0, "keep the upgraded connection open and silent this long, to catch idle timeouts (e.g. 70s)")
	fs.StringArrayVarP(&headers, "header", "H", nil, "extra request header `'Name: value'`, repeatable (Origin, Authorization, Cookie)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON on stdout")
	fs.BoolVar(&pc.InsecureTLS, "insecure", false, "skip TLS certificate checks")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: wsbench probe [flags] URL\n\nflags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "wsbench probe: %v\n(wsbench probe --help lists the flags)\n", err)
		return exitUsage
	}
	url, err := oneURL(fs)
	if err == nil {
		pc.URL = url
		pc.Headers, err = parseHeaders(headers)
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsbench probe: %v\n", err)
		return exitUsage
	}
	res, err := bench.Probe(ctx, pc)
	if err != nil {
		fmt.Fprintf(stderr, "wsbench probe: %v\n", err)
		return exitUsage
	}
	if asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil || !res.Works {
		return exitProblem
	}
	return exitOK
}
