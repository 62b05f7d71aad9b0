package main

// /status on --admin: an HTML page in the spirit of HAProxy's stats page,
// built from the same data as /status.json (balancer.Status), rendered on
// the server (no script), and refreshing itself every few seconds
// (?refresh=N, 0 stops it).

import (
	"html/template"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

// statusPage is what the template renders.
type statusPage struct {
	Now      time.Time
	Refresh  int
	Version  string
	Go       string
	PID      int
	Uptime   string
	Phase    string // drain phase: serving, waiting, closing, done
	Conns    int64
	InFlight int64
	Tunnels  int
	LogLines uint64
	LogDrops uint64
	HasLog   bool
	Pools    []poolView
}

type poolView struct {
	balancer.PoolStatus
	Total    int
	Tunnels  int64
	InFlight int64
	Rate     string
	Rows     []backendView
}

type backendView struct {
	balancer.BackendStatus
	Rate      string // picks per second since the previous sample, "–" before one
	EffWeight string // the effective weight when it differs from Weight (slow start)
	LastCheck string // "1.2s ago, 0.4 ms" or "never"
}

// rateSampler keeps one earlier sample of every backend's picks, so that
// the page can show requests per second without a background goroutine:
// a render at least a second after the sample computes rates against it
// and becomes the next sample.
type rateSampler struct {
	mu    sync.Mutex
	at    time.Time
	picks map[string]uint64   // pool/addr → picks at `at`
	rate  map[string]float64  // pool/addr → picks/s over the last interval
	pool  map[string]float64  // pool → picks/s
	seen  map[string]struct{} // keys in rate
}

func (r *rateSampler) sample(now time.Time, pools []balancer.PoolStatus) (byBackend, byPool map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && now.Sub(r.at) < time.Second {
		return r.rate, r.pool
	}
	cur := map[string]uint64{}
	for _, p := range pools {
		for _, b := range p.Backends {
			cur[p.Name+"/"+b.Addr] = b.Picks
		}
	}
	if !r.at.IsZero() {
		dt := now.Sub(r.at).Seconds()
		r.rate, r.pool = map[string]float64{}, map[string]float64{}
		for _, p := range pools {
			for _, b := range p.Backends {
				k := p.Name + "/" + b.Addr
				if prev, ok := r.picks[k]; ok && b.Picks >= prev {
					v := float64(b.Picks-prev) / dt
					r.rate[k] = v
					r.pool[p.Name] += v
				}
			}
		}
	}
	r.at, r.picks = now, cur
	return r.rate, r.pool
}

var pageRates rateSampler

func formatRate(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func statusPageHandler(bal *balancer.Balancer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refresh := 5
		if v := r.URL.Query().Get("refresh"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 3600 {
				refresh = n
			}
		}
		now := time.Now()
		pools := bal.Status()
		rates, poolRates := pageRates.sample(now, pools)
		page := statusPage{
			Now: now, Refresh: refresh, Version: version, Go: runtime.Version(), PID: os.Getpid(),
			Uptime: now.Sub(startedAt).Round(time.Second).String(), Phase: "serving",
		}
		if st := ops.Load(); st != nil {
			page.Phase = st.srv.Phase().String()
			page.Conns = st.srv.OpenConns()
			page.InFlight = st.srv.InFlight()
			page.Tunnels = st.engine.Len()
			if st.accessLog != nil {
				page.HasLog = true
				page.LogLines, page.LogDrops = st.accessLog.Written(), st.accessLog.Dropped()
			}
		}
		for _, p := range pools {
			pv := poolView{PoolStatus: p, Total: len(p.Backends)}
			pr, ok := poolRates[p.Name]
			pv.Rate = formatRate(pr, ok)
			for _, b := range p.Backends {
				bv := backendView{BackendStatus: b, LastCheck: "never"}
				v, ok := rates[p.Name+"/"+b.Addr]
				bv.Rate = formatRate(v, ok)
				if b.EffectiveWeight != float64(b.Weight) {
					bv.EffWeight = strconv.FormatFloat(b.EffectiveWeight, 'f', 2, 64)
				}
				if b.LastCheck != nil {
					bv.LastCheck = now.Sub(*b.LastCheck).Round(100*time.Millisecond).String() + " ago, " +
						strconv.FormatFloat(b.LastCheckMillis, 'f', 1, 64) + " ms"
				}
				pv.Tunnels += b.Tunnels
				pv.InFlight += b.InFlight
				pv.Rows = append(pv.Rows, bv)
			}
			page.Pools = append(page.Pools, pv)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := statusTemplate.Execute(w, page); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

var statusTemplate = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>wsgate status</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;font-size:13px;margin:12px;color:#000;background:#fff}
h1{font-size:18px;margin:0 0 8px;color:#fff;background:#20407a;padding:6px 10px}
table{border-collapse:collapse;margin-bottom:14px}
th,td{border:1px solid #999;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#b0c4de}
td.l,th.l{text-align:left}
tr.pool th{background:#20407a;color:#fff;text-align:left;font-size:14px}
tr.total td{background:#ddd;font-weight:bold}
.healthy td{background:#c0ffc0}
.slow-starting td{background:#e0ffa0}
.down td{background:#ff9090}
.ejected td{background:#ffc080}
.draining td{background:#c0d0ff}
.phase-serving{color:#070}.phase-waiting,.phase-closing{color:#b00;font-weight:bold}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #999}
.err{color:#b00}
</style></head><body>
<h1>wsgate status</h1>
<table id="summary">
<tr><th class="l">version</th><td class="l">{{.Version}} ({{.Go}})</td><th class="l">pid</th><td>{{.PID}}</td><th class="l">uptime</th><td>{{.Uptime}}</td></tr>
<tr><th class="l">state</th><td class="l phase-{{.Phase}}" id="phase">{{.Phase}}</td><th class="l">connections</th><td id="conns">{{.Conns}}</td><th class="l">in flight</th><td id="inflight">{{.InFlight}}</td></tr>
<tr><th class="l">tunnels</th><td id="tunnels">{{.Tunnels}}</td><th class="l">access log</th><td class="l" colspan="3">{{if .HasLog}}{{.LogLines}} lines, {{.LogDrops}} dropped{{else}}off{{end}}</td></tr>
</table>
<div class="legend"><span style="background:#c0ffc0">healthy</span><span style="background:#e0ffa0">slow-starting</span><span style="background:#ffc080">ejected (passive)</span><span style="background:#ff9090">down (checks)</span><span style="background:#c0d0ff">draining (removed)</span></div>
<p>{{.Now.Format "2006-01-02 15:04:05 MST"}}{{if .Refresh}} · refreshes every {{.Refresh}} s{{end}} · <a href="status.json">status.json</a> · <a href="metrics">metrics</a></p>
{{range .Pools}}
<table class="pool" id="pool-{{.Name}}">
<tr class="pool"><th colspan="14">pool {{.Name}} · {{.Policy}} · {{.Healthy}}/{{.Total}} healthy · queue <span class="queue">{{.Queue}}</span> · rebalance {{if .Rebalance.Rate}}{{.Rebalance.Rate}}/s{{else}}off{{end}}{{with .Rebalance.PassStart}}, <span class="pass">pass since {{.Format "15:04:05"}}</span>{{end}}</th></tr>
<tr><th class="l">backend</th><th class="l">state</th><th>weight</th><th>active</th><th>tunnels</th><th>fair share</th><th>moved</th><th>in flight</th><th>picks</th><th>picks/s</th><th>failures</th><th>checks</th><th class="l">last check</th><th class="l">since</th></tr>
{{range .Rows}}<tr class="{{.State}}" data-backend="{{.Addr}}">
<td class="l">{{.Addr}}{{if .Host}} ({{.Host}}){{end}}</td><td class="l state">{{.State}}</td><td>{{.Weight}}{{with .EffWeight}} ({{.}}){{end}}{{with .MaxConns}}, max {{.}}{{end}}</td>
<td>{{.Active}}</td><td class="tunnels">{{.Tunnels}}</td><td class="fair">{{printf "%.0f" .Fair}}</td><td class="moved">{{.Moved}}</td><td class="inflight">{{.InFlight}}</td><td>{{.Picks}}</td><td>{{.Rate}}</td><td class="failures">{{.Failures}}</td><td>{{.Checks}}</td>
<td class="l">{{.LastCheck}}{{if .LastCheckError}} <span class="err">{{.LastCheckError}}</span>{{end}}</td>
<td class="l">{{with .EjectedUntil}}ejected until {{.Format "15:04:05"}}{{end}}{{with .SlowStartUntil}}full weight at {{.Format "15:04:05"}}{{end}}{{with .DrainingSince}}draining since {{.Format "15:04:05"}}{{end}}</td>
</tr>
{{end}}<tr class="total"><td class="l">total</td><td class="l">{{.Healthy}}/{{.Total}} up</td><td></td><td>{{.Active}}</td><td>{{.Tunnels}}</td><td></td><td></td><td>{{.InFlight}}</td><td></td><td>{{.Rate}}</td><td colspan="4"></td></tr>
</table>
{{end}}
</body></html>
`))
