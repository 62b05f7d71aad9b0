package main

// --check: like `nginx -t`. Every flag and the backends file are validated
// exactly as a real start would, names are resolved, each backend is
// probed once (a TCP connect, then the health path when one is set), and
// the effective configuration is printed. Exit status 0 when all of that
// passed, 1 with the reasons otherwise. Nothing is bound: the listener
// addresses are only parsed, checked against each other and resolved,
// since binding a port a running wsgate holds (SO_REUSEPORT) would take a
// share of its connections; TLS pairs are loaded and matched.

import (
	"github.com/wsgate/wsgate/loop/healthcheck"

	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
)

func runCheck(args []string, stdout, stderr io.Writer) int {
	failed := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "wsgate: check failed: "+format+"\n", a...)
		return 1
	}
	o, _, err := parseFlags(args)
	if errors.Is(err, pflag.ErrHelp) {
		return failed("--help given")
	}
	if err != nil {
		return failed("%v", err)
	}
	// parseFlags has done what a start does before binding: every flag
	// checked, every listener address parsed and none on another's address
	// (listen_flags.go), every TLS pair loaded and matched (edge_flags.go).
	bcfg, err := o.balancerConfig()
	if err != nil {
		return failed("%v", err)
	}
	if _, err := o.trusted(); err != nil {
		return failed("%v", err)
	}
	if _, err := o.sticky.config(); err != nil {
		return failed("%v", err)
	}
	// A listener on a host name binds what the name resolves to.
	addrs, err := o.listenAddrs()
	if err != nil {
		return failed("%v", err) // parseFlags would have said so already
	}
	for _, a := range addrs {
		if _, err := net.ResolveTCPAddr("tcp", a.value); err != nil {
			return failed("invalid argument %q for \"--%s\" flag: %v", a.value, a.flag, err)
		}
	}
	if o.ops.accessLog != "off" && o.ops.accessLog != "-" {
		_, f, err := o.ops.openAccessLog(io.Discard)
		if err != nil {
			return failed("%v", err)
		}
		f.Close()
	}

	// Names: each must resolve (the balancer would otherwise start with no
	// address for it and keep retrying).
	var problems []string
	resolveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for _, bc := range bcfg.Backends {
		host, _, _ := net.SplitHostPort(bc.Addr)
		if net.ParseIP(host) != nil || seen[host] {
			continue
		}
		seen[host] = true
		addrs, err := net.DefaultResolver.LookupHost(resolveCtx, host)
		if err != nil {
			problems = append(problems, fmt.Sprintf("backend %s: resolving %s: %v", bc.Addr, host, err))
			continue
		}
		fmt.Fprintf(stdout, "resolve           %s → %s\n", host, strings.Join(addrs, " "))
	}

	bcfg.Logf = func(string, ...any) {}
	bal, err := balancer.New(bcfg)
	if err != nil {
		return failed("%v", err)
	}
	defer bal.Close()
	fmt.Fprint(stdout, effectiveConfig(o, bal))

	// Probes, all at once: a connect, then the health path.
	type result struct {
		b       *balancer.Backend
		connect time.Duration
		err     error
	}
	var results []*result
	var wg sync.WaitGroup
	for _, p := range bal.Pools() {
		for _, b := range p.Backends() {
			r := &result{b: b}
			results = append(results, r)
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				c, err := net.DialTimeout("tcp", b.Addr(), o.connectTO)
				if err != nil {
					r.err = fmt.Errorf("connect: %w", err)
					return
				}
				r.connect = time.Since(start)
				c.Close()
				if o.health.path != "" {
					if err := healthcheck.Probe(o.health.path, o.health.timeout)(context.Background(), b); err != nil {
						r.err = fmt.Errorf("GET %s: %w", o.health.path, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, r := range results {
		what := "connect " + r.connect.Round(10*time.Microsecond).String()
		if o.health.path != "" {
			what += ", GET " + o.health.path + " ok"
		}
		if r.err != nil {
			what = "FAILED: " + r.err.Error()
			problems = append(problems, fmt.Sprintf("backend %s/%s: %v", r.b.Pool(), r.b.Addr(), r.err))
		}
		fmt.Fprintf(stdout, "probe             %s/%s: %s\n", r.b.Pool(), r.b.Addr(), what)
	}
	if len(results) == 0 && len(problems) == 0 {
		problems = append(problems, "no backend to send requests to")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "wsgate: %s\n", p)
		}
		return failed("%d problem(s)", len(problems))
	}
	fmt.Fprintln(stdout, "wsgate: configuration ok, every backend answered")
	return 0
}
