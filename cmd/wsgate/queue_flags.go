package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/pflag"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/loop"
)

// loadOptions are the flags that shape load on the backends: the queue in
// front of max-conns, handshake pacing and rebalancing (issues 17, 18).
// max-conns itself is an option of each --backend.
type loadOptions struct {
	queueTimeout   time.Duration
	maxQueue       int
	handshakeRate  string // --max-handshakes-per-backend R/s
	rebalance      string // --rebalance R/s
	rebalanceTol   string // --rebalance-tolerance P
	handshakeRateV float64
	rebalanceV     float64
	rebalanceTolV  float64
}

func (l *loadOptions) register(fs *pflag.FlagSet) {
	fs.DurationVar(&l.queueTimeout, "queue-timeout", loop.DefaultQueueTimeout, "time a request waits for a slot when every backend is at its max-conns, then 503 with Retry-After (0: no wait)")
	fs.IntVar(&l.maxQueue, "max-queue", balancer.DefaultMaxQueue, "requests that may wait per pool; past it, 503 at once")
	fs.StringVar(&l.handshakeRate, "max-handshakes-per-backend", "off", "`R/s`: pace new WebSocket tunnels to each backend; the rest wait in the queue (off: no pacing)")
	fs.StringVar(&l.rebalance, "rebalance", "off", "`R/s`: close excess tunnels on over-loaded backends with close code 1012, at most R per second per pool (off: only POST /rebalance)")
	fs.StringVar(&l.rebalanceTol, "rebalance-tolerance", "10%", "`P`: share above a backend's fair share of tunnels that starts no rebalancing")
}

// check parses the rate and share values; errors name the flag.
func (l *loadOptions) check() error {
	var err error
	if l.queueTimeout < 0 {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--queue-timeout\" flag: must not be negative", l.queueTimeout)}
	}
	if l.maxQueue < 0 {
		return &usageError{fmt.Sprintf("invalid argument \"%d\" for \"--max-queue\" flag: must not be negative", l.maxQueue)}
	}
	if l.handshakeRateV, err = balancer.ParseRate(l.handshakeRate); err != nil {
		return &usageError{fmt.Sprintf("invalid argument %q for \"--max-handshakes-per-backend\" flag: %v", l.handshakeRate, err)}
	}
	if l.rebalanceV, err = balancer.ParseRate(l.rebalance); err != nil || l.rebalanceV > balancer.MaxRebalanceRate {
		if err == nil {
			err = fmt.Errorf("at most %g/s", float64(balancer.MaxRebalanceRate))
		}
		return &usageError{fmt.Sprintf("invalid argument %q for \"--rebalance\" flag: %v", l.rebalance, err)}
	}
	if l.rebalanceTolV, err = balancer.ParseFraction(l.rebalanceTol); err != nil || l.rebalanceTolV > 10 {
		if err == nil {
			err = fmt.Errorf("at most 1000%%")
		}
		return &usageError{fmt.Sprintf("invalid argument %q for \"--rebalance-tolerance\" flag: %v", l.rebalanceTol, err)}
	}
	return nil
}

// apply sets the balancer's side of the options.
func (l *loadOptions) apply(cfg *balancer.Config) {
	cfg.MaxHandshakesPerBackend = l.handshakeRateV
	cfg.Rebalance = l.rebalanceV
	cfg.RebalanceTolerance = l.rebalanceTolV
	if cfg.RebalanceTolerance == 0 {
		cfg.RebalanceTolerance = 1e-9 // "0%": as tight as it gets (0 would mean the default)
	}
	cfg.MaxQueue = l.maxQueue
	if l.maxQueue == 0 {
		cfg.MaxQueue = -1 // no queue
	}
}

// loopQueueTimeout is --queue-timeout as loop.Config wants it (< 0: none).
func (l *loadOptions) loopQueueTimeout() time.Duration {
	if l.queueTimeout == 0 {
		return -1
	}
	return l.queueTimeout
}

// rebalanceHandler serves POST /rebalance?pool=P&rate=R on the admin
// listener: a one-off rebalancing pass of pool P (default "default") at R
// closes per second (default: the --rebalance rate), even where --rebalance
// is off. 202 when started, 400 for a bad rate, 404 for an unknown pool,
// 409 when the pool has fewer than 2 healthy backends or no rate is known.
func rebalanceHandler(bal *balancer.Balancer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		name := q.Get("pool")
		if name == "" {
			name = balancer.DefaultPool
		}
		p := bal.Pool(name)
		if p == nil {
			http.Error(w, "no pool "+strconv.Quote(name), http.StatusNotFound)
			return
		}
		rate := 0.0
		if v := q.Get("rate"); v != "" {
			var err error
			if rate, err = balancer.ParseRate(v); err != nil || rate > balancer.MaxRebalanceRate {
				http.Error(w, "bad rate "+strconv.Quote(v)+": want R/s, as 200/s", http.StatusBadRequest)
				return
			}
		}
		if err := p.Rebalancer().StartPass(time.Now(), rate); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "rebalancing pool %s\n", name)
	})
}

// writePoolMetrics writes, when /metrics is scraped, pool p's queue and
// rebalancing passes (its backends' fair shares and moves are written with
// the other per-backend values, admin.go).
func writePoolMetrics(w io.Writer, bal *balancer.Balancer, p balancer.PoolStatus) {
	pool := bal.Pool(p.Name)
	if pool == nil {
		return
	}
	pl := `{pool="` + p.Name + `"}`
	metrics.WriteGaugeUint64(w, `wsgate_queue_length`+pl, uint64(max(p.Queue, 0)))
	qs := pool.QueueStats()
	metrics.WriteCounterUint64(w, `wsgate_queue_queued_total`+pl, qs.Queued)
	metrics.WriteCounterUint64(w, `wsgate_queue_served_total`+pl, qs.Served)
	started, stopped := pool.Rebalancer().Passes()
	metrics.WriteCounterUint64(w, `wsgate_rebalance_passes_total`+pl, started)
	metrics.WriteCounterUint64(w, `wsgate_rebalance_passes_stopped_total`+pl, stopped)
}
