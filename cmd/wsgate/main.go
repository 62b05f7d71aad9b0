// Command wsgate is a load balancer for HTTP/1.1 and WebSocket fleets.
//
//	wsgate -l 127.0.0.1:8080 -b 127.0.0.1:3001 -b 127.0.0.1:3002
//
// See the README for every flag; `wsgate --help` lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
	"github.com/wsgate/wsgate/tunnel"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if wantsCheck(args) {
		return runCheck(args, stdout, stderr) // check.go
	}
	o, fs, err := parseFlags(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: wsgate [flags]\n\n%s", fs.FlagUsages())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "wsgate %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	bcfg, err := o.balancerConfig()
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	trusted, err := o.trusted()
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	stickyCfg, err := o.sticky.config() // sticky_flags.go
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	alog, alogFile, err := o.ops.openAccessLog(stdout) // admin.go; nil when off
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	if alogFile != nil {
		defer alogFile.Close()
	}
	logger := log.New(stderr, "wsgate: ", log.LstdFlags|log.Lmicroseconds)

	bcfg.Logf = logger.Printf
	o.logf = logger.Printf
	if note := derivedKeyNote(stickyCfg); note != "" { // sticky_flags.go
		logger.Print(note)
	}
	// A removed backend's tunnels that outlive --drain-timeout are closed.
	var srvRef atomic.Pointer[loop.Server]
	bcfg.OnDrainTimeout = func(b *balancer.Backend) {
		if s := srvRef.Load(); s != nil {
			logger.Printf("backend %s: closed %d tunnels at the drain timeout", b, s.CloseBackendTunnels(b))
		}
	}
	bal, err := balancer.New(bcfg)
	if err != nil {
		fmt.Fprintf(stderr, "wsgate: %v\n", err)
		return 2
	}
	bal.Start() // health checks, DNS re-resolution, drain sweep
	defer bal.Close()
	go watchReload(o, bal, logger.Printf) // SIGHUP re-reads --backends-file
	engine, err := tunnel.New(tunnel.Config{IdleTimeout: o.tunnelIdleTO, FinTimeout: o.tunnelFinTO})
	if err != nil {
		logger.Print(err)
		return 1
	}
	if f := o.ops.readyFile; f != "" {
		removeStaleReadyFile(f) // listen_flags.go
	}
	srv, err := loop.New(loop.Config{
		Listen:           o.listen,
		Balancer:         bal,
		Tunnels:          engine,
		HeaderTimeout:    o.headerTO,
		KeepAliveTimeout: o.keepaliveTO,
		ConnectTimeout:   o.connectTO,
		ResponseTimeout:  o.responseTO,
		QueueTimeout:     o.load.loopQueueTimeout(),
		MaxHeaderBytes:   int(o.maxHeaderBytes),
		MaxBodyBytes:     int64(o.maxBodyBytes),
		TrustedProxies:   trusted,
		Sticky:           stickyCfg,
		Logf:             logger.Printf,
		AccessLog:        alog,
		Edge:             o.edgeCfg, // parseFlags: certificates loaded and matched
	})
	if err != nil {
		logger.Print(err)
		engine.Close()
		return 1
	}
	srvRef.Store(srv)
	registerGauges(srv, engine, bal)
	registerOpsMetrics(srv, engine, bal, alog) // admin.go
	var tlsSt *tlsStatus
	if len(o.edgeCfg.TLS.Listen) > 0 {
		tlsSt = detectTLS() // status.go
		ktls := 0.0
		if tlsSt.KernelTLS {
			ktls = 1
			logger.Printf("tls: TLS 1.3 records in wsgate's own code (tunnel/tlsrec); the kernel has TLS (ULP), not used yet")
		} else {
			logger.Printf("tls: TLS 1.3 records in wsgate's own code (tunnel/tlsrec); no kernel TLS: %s", tlsSt.KernelTLSWhy)
		}
		metrics.NewGauge(`wsgate_tls_kernel_available`, func() float64 { return ktls })
	}
	go trimMemory(5*time.Second, 1<<20)

	var admin *http.Server
	var adminAddr net.Addr
	if o.adminOn() {
		ln, err := loop.Listen(o.admin) // SO_REUSEPORT: a successor can start while this one drains
		if err != nil {
			logger.Printf("admin listener: %v (use --admin ADDR, or --admin off)", err)
			engine.Close()
			return 1
		}
		adminAddr = ln.Addr()
		admin = &http.Server{Handler: adminHandler(bal, tlsSt), ReadHeaderTimeout: 10 * time.Second}
		go admin.Serve(ln)
	}
	if err := srv.Serve(); err != nil {
		logger.Print(err)
		return 1
	}
	// Every listener is bound: say where (with port 0, the port the kernel
	// chose), on stderr and in --ready-file.
	var ready []string
	for _, a := range srv.Addrs() {
		logger.Printf("listening on %s", a)
		ready = append(ready, "listen "+a.String())
	}
	for _, a := range srv.TLSAddrs() {
		logger.Printf("listening on %s (TLS)", a)
		ready = append(ready, "tls "+a.String())
	}
	if adminAddr != nil {
		logger.Printf("admin on http://%s/metrics", adminAddr)
		ready = append(ready, "admin "+adminAddr.String())
	}
	if f := o.ops.readyFile; f != "" {
		if err := writeReadyFile(f, ready); err != nil { // listen_flags.go
			logger.Printf("--ready-file: %v", err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(ctx)
			cancel()
			engine.Close()
			if admin != nil {
				admin.Close()
			}
			return 1
		}
	}
	go watchCertReload(srv, logger.Printf) // edge_flags.go: SIGHUP re-reads the certificates
	for _, p := range bal.Pools() {
		for _, b := range p.Backends() {
			logger.Printf("pool %s: backend %s weight %d", p.Name(), b.Addr(), b.Weight())
		}
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	logger.Printf("%v: draining for up to %v (a second signal exits at once)", s, o.drainTO)
	go func() {
		<-sig
		logger.Print("second signal: exiting now")
		os.Exit(1)
	}()
	var closeAdmin func()
	if admin != nil {
		closeAdmin = func() { admin.Close() }
	}
	drainAndStop(o, srv, engine, closeAdmin, alog, logger.Printf) // admin.go
	logger.Print("stopped")
	return 0
}

func adminHandler(bal *balancer.Balancer, tlsSt *tlsStatus) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /status.json", statusHandler(bal, tlsSt))
	mux.Handle("GET /status", statusPageHandler(bal))    // statuspage.go
	mux.HandleFunc("GET /ready", readyHandler)           // admin.go: 503 once draining
	mux.Handle("POST /rebalance", rebalanceHandler(bal)) // queue_flags.go
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		metrics.WritePrometheus(w, true)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

// registerGauges exposes values computed when scraped.
// The server's and the engine's own counters (their metrics.Sets) are
// served with the process's.
func registerGauges(srv *loop.Server, engine *tunnel.Engine, bal *balancer.Balancer) {
	metrics.RegisterSet(srv.Metrics())
	metrics.RegisterSet(engine.Metrics())
	metrics.NewGauge(`wsgate_connections_open`, func() float64 { return float64(srv.OpenConns()) })
	metrics.NewGauge(`wsgate_requests_inflight`, func() float64 { return float64(srv.InFlight()) })
	metrics.NewGauge(`wsgate_tunnels_open`, func() float64 { return float64(engine.Len()) })
	metrics.NewGauge(`wsgate_sticky_polling_sessions`, func() float64 { return float64(srv.PollingSessions()) })
	for _, p := range bal.Pools() {
		for _, b := range p.Backends() {
			metrics.NewGauge(fmt.Sprintf(`wsgate_backend_active{pool=%q,backend=%q}`, p.Name(), b.Addr()),
				func() float64 { return float64(b.Active()) })
		}
	}
}
