package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// options are the parsed command line. Defaults come from the packages'
// Default constants; only this file knows about flags.
type options struct {
	listen         []string
	backends       []string
	routes         []string
	balance        string
	connectTO      time.Duration
	headerTO       time.Duration
	responseTO     time.Duration
	keepaliveTO    time.Duration
	tunnelIdleTO   time.Duration
	tunnelFinTO    time.Duration
	drainTO        time.Duration
	maxHeaderBytes size
	maxBodyBytes   size
	trustedProxies []string
	admin          string
	version        bool
	health         healthOptions                    // health checks, slow start, --backends-file, DNS (backends.go)
	logf           func(format string, args ...any) // wsgate's logger, once run has made it
	sticky         stickyOptions                    // --sticky, --sticky-secret(-file) (sticky_flags.go)
	ops            opsOptions                       // --access-log, --check, --drain-spread (admin.go)
	edge           edgeOptions                      // TLS, PROXY protocol, limits, origins (edge_flags.go)
	load           loadOptions                      // queue, handshake pacing, rebalancing (queue_flags.go)
	edgeCfg        loop.EdgeConfig                  // edge.config(), made once by parseFlags (certificates loaded and matched)
}

// usageError is a bad command line: one line naming the flag, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func newFlagSet(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("wsgate", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringArrayVarP(&o.listen, "listen", "l", []string{loop.DefaultListen}, "plain HTTP/WebSocket listener `ADDR`, repeatable")
	fs.StringArrayVarP(&o.backends, "backend", "b", nil, "backend `[POOL=]HOST:PORT[,weight=N][,max-conns=N]`, repeatable; max-conns caps its requests in flight plus live tunnels")
	fs.StringArrayVar(&o.routes, "route", nil, "route `[HOST]/PREFIX=POOL[,strip]`, repeatable; longest prefix wins (default / → default)")
	fs.StringVar(&o.balance, "balance", "least-conn", "balancing policy: least-conn|round-robin")
	fs.DurationVar(&o.connectTO, "connect-timeout", loop.DefaultConnectTimeout, "time to connect to a backend before trying the next")
	fs.DurationVar(&o.headerTO, "header-timeout", loop.DefaultHeaderTimeout, "time for a client to send a request head (408)")
	fs.DurationVar(&o.responseTO, "response-timeout", loop.DefaultResponseTimeout, "time for a backend to start its response (504), and for progress while streaming")
	fs.DurationVar(&o.keepaliveTO, "keepalive-timeout", loop.DefaultKeepAliveTimeout, "time a client connection may wait idle between requests")
	fs.DurationVar(&o.tunnelIdleTO, "tunnel-idle-timeout", tunnel.DefaultIdleTimeout, "time a WebSocket tunnel may carry no bytes before it is closed")
	fs.DurationVar(&o.tunnelFinTO, "tunnel-fin-timeout", tunnel.DefaultFinTimeout, "time a half-closed tunnel (one side sent FIN) waits for the other side before it is closed")
	fs.DurationVar(&o.drainTO, "drain-timeout", 30*time.Second, "on SIGTERM/SIGINT, time to finish requests and keep tunnels up before closing them")
	o.maxHeaderBytes = loop.DefaultMaxHeaderBytes
	fs.Var(&o.maxHeaderBytes, "max-header-bytes", "largest request head (431); e.g. 16KiB")
	fs.Var(&o.maxBodyBytes, "max-body-bytes", "largest request body (413); 0 means no limit")
	fs.StringArrayVar(&o.trustedProxies, "trusted-proxies", nil, "`CIDR[,CIDR]` of proxies whose X-Forwarded-* headers are kept and appended to")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:9090", "admin listener `ADDR`: /metrics, /status, /status.json, /ready, /debug/pprof/; \"off\" disables")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	o.health.register(fs)
	o.sticky.register(fs)
	o.ops.register(fs)
	o.edge.register(fs)
	o.load.register(fs)
	return fs
}

// parseFlags parses args; errors are *usageError, or pflag.ErrHelp.
func parseFlags(args []string) (*options, *pflag.FlagSet, error) {
	o := &options{}
	fs := newFlagSet(o)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, fs, err
		}
		return nil, fs, &usageError{err.Error()}
	}
	o.health.pathSet = fs.Changed("health-path")
	if fs.NArg() > 0 {
		return nil, fs, &usageError{fmt.Sprintf("unexpected argument %q (flags only)", fs.Arg(0))}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connect-timeout", o.connectTO}, {"header-timeout", o.headerTO}, {"response-timeout", o.responseTO},
		{"keepalive-timeout", o.keepaliveTO}, {"tunnel-idle-timeout", o.tunnelIdleTO}, {"tunnel-fin-timeout", o.tunnelFinTO}, {"drain-timeout", o.drainTO},
	} {
		if d.v <= 0 {
			return nil, fs, &usageError{fmt.Sprintf("invalid argument %q for \"--%s\" flag: must be positive", d.v, d.name)}
		}
	}
	if o.maxHeaderBytes < 1024 || o.maxHeaderBytes > 1<<20 {
		return nil, fs, &usageError{fmt.Sprintf("invalid argument %q for \"--max-header-bytes\" flag: must be 1KiB..1MiB", o.maxHeaderBytes.String())}
	}
	if err := o.health.check(); err != nil {
		return nil, fs, err
	}
	if err := o.load.check(); err != nil { // queue_flags.go
		return nil, fs, err
	}
	if err := o.ops.validate(o.drainTO); err != nil {
		return nil, fs, err
	}
	// Listener addresses before the TLS pairs: --tls-listen bogus is about
	// --tls-listen, whatever the certificates.
	if _, err := o.listenAddrs(); err != nil { // listen_flags.go
		return nil, fs, err
	}
	edgeCfg, err := o.edge.config() // edge_flags.go
	if err != nil {
		return nil, fs, err
	}
	o.edgeCfg = edgeCfg
	return o, fs, nil
}

// configs turns options into the packages' configs.
func (o *options) balancerConfig() (balancer.Config, error) {
	var cfg balancer.Config
	if len(o.backends) == 0 && o.health.file == "" {
		return cfg, &usageError{`"--backend" flag: at least one backend is required`}
	}
	for _, s := range o.backends {
		b, err := balancer.ParseBackend(s)
		if err != nil {
			return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--backend\" flag: %v", s, err)}
		}
		cfg.Backends = append(cfg.Backends, b)
	}
	for _, s := range o.routes {
		r, err := balancer.ParseRoute(s)
		if err != nil {
			return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--route\" flag: %v", s, err)}
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	p, err := balancer.ParsePolicy(o.balance)
	if err != nil {
		return cfg, &usageError{fmt.Sprintf("invalid argument %q for \"--balance\" flag: %v", o.balance, err)}
	}
	cfg.Policy = p
	o.load.apply(&cfg) // queue_flags.go
	return cfg, o.applyHealth(&cfg)
}

func (o *options) trusted() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range o.trustedProxies {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return nil, &usageError{fmt.Sprintf("invalid argument %q for \"--trusted-proxies\" flag: not a CIDR or address", s)}
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

// size is a byte count flag: 16384, 16KiB, 1MiB, 1GiB, 64KB, 1MB.
type size int64

func (s *size) String() string { return formatSize(int64(*s)) }
func (s *size) Type() string   { return "SIZE" }
func (s *size) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = size(n)
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

func parseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size (use e.g. 16384, 16KiB, 1MiB)")
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n != 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}
