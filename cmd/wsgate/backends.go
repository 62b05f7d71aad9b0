package main

import (
	"github.com/wsgate/wsgate/loop/healthcheck"

	"bufio"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
)

// healthOptions are the flags of health checks, passive ejection, slow
// start, --backends-file and DNS discovery.
type healthOptions struct {
	path        string
	interval    time.Duration
	timeout     time.Duration
	rise        int
	fall        int
	maxFails    int
	failTimeout time.Duration
	slowStart   time.Duration
	file        string
	dnsInterval time.Duration
	pathSet     bool // --health-path was given: a 404 there is a failure
}

func (h *healthOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&h.path, "health-path", healthcheck.DefaultPath, "active health check `PATH` (GET, any 2xx/3xx is healthy; at the default path a 404/405/501 counts as alive); \"\" disables active checks")
	fs.DurationVar(&h.interval, "health-interval", balancer.DefaultHealthInterval, "time between active checks of a backend (jittered ±10%)")
	fs.DurationVar(&h.timeout, "health-timeout", balancer.DefaultHealthTimeout, "time for one active check (connect and response head)")
	fs.IntVar(&h.rise, "health-rise", balancer.DefaultHealthRise, "passing checks in a row that bring a down backend back")
	fs.IntVar(&h.fall, "health-fall", balancer.DefaultHealthFall, "failed checks in a row that take a backend down")
	fs.IntVar(&h.maxFails, "max-fails", balancer.DefaultMaxFails, "upstream failures (connect refused/timeout, response timeout) within --fail-timeout that eject a backend; 0 disables")
	fs.DurationVar(&h.failTimeout, "fail-timeout", balancer.DefaultFailTimeout, "window for --max-fails, and how long an ejected backend stays out")
	fs.DurationVar(&h.slowStart, "slow-start", 0, "ramp a new or recovered backend's weight from 1/16 to full over this long; 0 disables")
	fs.StringVar(&h.file, "backends-file", "", "`FILE` of backends, -b syntax, one a line (# comments); re-read on SIGHUP")
	fs.DurationVar(&h.dnsInterval, "dns-interval", balancer.DefaultDNSInterval, "how often backend host names are re-resolved (each address becomes a backend)")
}

// check validates the values; errors name the flag.
func (h *healthOptions) check() error {
	bad := func(flag, v, why string) error {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--%s\" flag: %s", v, flag, why)}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"health-interval", h.interval}, {"health-timeout", h.timeout}, {"fail-timeout", h.failTimeout}, {"dns-interval", h.dnsInterval}} {
		if d.v <= 0 {
			return bad(d.name, d.v.String(), "must be positive")
		}
	}
	if h.slowStart < 0 {
		return bad("slow-start", h.slowStart.String(), "must not be negative")
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"health-rise", h.rise}, {"health-fall", h.fall}} {
		if n.v < 1 || n.v > 100 {
			return bad(n.name, fmt.Sprint(n.v), "must be 1..100")
		}
	}
	if h.maxFails < 0 || h.maxFails > 1000 {
		return bad("max-fails", fmt.Sprint(h.maxFails), "must be 0..1000")
	}
	if h.path != "" && (!strings.HasPrefix(h.path, "/") || strings.ContainsAny(h.path, " \t\r\n")) {
		return bad("health-path", h.path, "must start with / and hold no spaces")
	}
	return nil
}

// apply fills the balancer config's health, slow start, DNS and drain
// settings, and adds the backends of --backends-file.
func (o *options) applyHealth(cfg *balancer.Config) error {
	h := &o.health
	cfg.Health = balancer.HealthConfig{
		Interval: h.interval, Timeout: h.timeout, Rise: h.rise, Fall: h.fall,
		MaxFails: h.maxFails, FailTimeout: h.failTimeout,
	}
	if h.maxFails == 0 {
		cfg.Health.MaxFails = -1 // the flag's 0 is "off"; the config's 0 is "default"
	}
	switch {
	case h.path == "":
	case !h.pathSet:
		cfg.Health.Probe = healthcheck.Default(h.timeout, func(format string, args ...any) {
			if o.logf != nil { // set by run once the logger exists, before checks start
				o.logf(format, args...)
			}
		})
	default:
		cfg.Health.Probe = healthcheck.Probe(h.path, h.timeout)
	}
	cfg.SlowStart = h.slowStart
	cfg.DNSInterval = h.dnsInterval
	cfg.DrainTimeout = o.drainTO
	cfg.Resolver = net.DefaultResolver
	if h.file != "" {
		fb, err := readBackendsFile(h.file)
		if err != nil {
			return &usageError{fmt.Sprintf("invalid argument %q for \"--backends-file\" flag: %v", h.file, err)}
		}
		cfg.Backends = append(cfg.Backends, fb...)
	}
	return nil
}

// readBackendsFile parses FILE: one -b value a line; blank lines and
// anything after "#" are ignored. Any bad line fails the whole file.
func readBackendsFile(path string) ([]balancer.BackendConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []balancer.BackendConfig
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		bc, err := balancer.ParseBackend(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		out = append(out, bc)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// watchReload re-reads --backends-file on every SIGHUP and applies it with
// the command line's backends. A file that does not read, parse or check
// is rejected as a whole: one log line, and the running set stays.
func watchReload(o *options, bal *balancer.Balancer, logf func(string, ...any)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for range hup {
		if o.health.file == "" {
			logf("SIGHUP: no --backends-file to re-read; nothing changes")
			continue
		}
		var set []balancer.BackendConfig
		for _, s := range o.backends {
			bc, _ := balancer.ParseBackend(s) // checked at start
			set = append(set, bc)
		}
		fb, err := readBackendsFile(o.health.file)
		if err == nil {
			err = bal.Update(append(set, fb...))
		}
		if err != nil {
			logf("SIGHUP: --backends-file %s rejected, keeping the previous backends: %v", o.health.file, err)
			continue
		}
		logf("SIGHUP: --backends-file %s applied: %s", o.health.file, bal)
	}
}
