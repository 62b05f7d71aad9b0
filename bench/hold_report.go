package bench

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"syscall"
	"time"
)

// HoldHelp defines the hold report's figures for people (wsbench hold --help).
const HoldHelp = `The report:
  open at end     connections open when the duration ended, before wsbench closed them
  peak            most connections open at once
  min after ramp  fewest open at once from the end of the ramp (every connection's
                  first attempt finished) to the end
  closes          connections the server or the network ended, by close code for
                  those that came with a close frame (1005: a close frame without a
                  code), and "no close frame" for the rest (TCP close, TCP reset, read
                  errors, "no pong" with --ping); wsbench's own closes at the end are
                  not counted
  first connects  each connection's attempts until it first connected
  reconnects      handshakes made after a close (and after a failed reconnect):
                  attempted = ok + failed, failures by reason (connection refused,
                  timeout, handshake: status 503, ...); a failed attempt is retried
                  after a new jittered delay
  reconnect       latency from the moment a close was seen to the 101 of the
                  connection that replaced it, delay and failed retries included
  handshake       dial to verified 101, every successful handshake
  storm           begins when a connection closes while all N are open (once they
                  all were), and ends at the 101 that makes N open again; every close
                  meanwhile belongs to it. Its recovery time is from that first close
                  to that 101. The longest storm is shown; one still going at the end
                  is "not recovered", with the time so far.
  served by       with --count-header NAME: successful handshakes per value of that
                  101 header, and connections open at the end per value
`

// HoldReport is what a hold run measured. Latencies are in milliseconds,
// times in seconds since the start.
type HoldReport struct {
	Mode     string    `json:"mode"` // "hold"
	URL      string    `json:"url"`
	Conns    int       `json:"conns"` // wanted
	Started  time.Time `json:"started"`
	ElapsedS float64   `json:"elapsed_s"`
	RampS    float64   `json:"ramp_s"` // until every first attempt finished

	ReconnectDelayMinMS float64 `json:"reconnect_delay_min_ms"`
	ReconnectDelayMaxMS float64 `json:"reconnect_delay_max_ms"`
	PingS               float64 `json:"ping_s,omitempty"`

	OpenAtEnd    int64 `json:"open_at_end"`
	Peak         int64 `json:"peak"`
	MinAfterRamp int64 `json:"min_after_ramp"` // -1 if the ramp never finished

	Closes            int64            `json:"closes"`
	ClosesByCode      map[int]int64    `json:"closes_by_code"`
	NoCloseFrame      int64            `json:"no_close_frame"`
	NoCloseFrameKinds map[string]int64 `json:"no_close_frame_kinds,omitempty"`

	Initial    HoldAttempts `json:"initial"`
	Reconnects HoldAttempts `json:"reconnects"`

	ReconnectLatency LatencySummary `json:"reconnect_latency"`
	// ReconnectHandshakeLatency is the handshakes of the reconnects alone,
	// dial to 101 (the delay before them not counted): what a storm costs
	// each client beyond its own back-off.
	ReconnectHandshakeLatency LatencySummary `json:"reconnect_handshake_latency"`
	HandshakeLatency          LatencySummary `json:"handshake_latency"`

	StormCount int `json:"storm_count"`
	// LongestStorm is the storm with the longest recovery (a storm still
	// going at the end counts with its time so far); nil if none.
	LongestStorm *HoldStorm `json:"longest_storm,omitempty"`
	// Storms lists the storms in order (the first 1000), the one going on
	// at the end last.
	Storms []HoldStorm `json:"storms,omitempty"`

	CountHeader       string           `json:"count_header,omitempty"`
	ServedBy          map[string]int64 `json:"served_by,omitempty"`             // handshakes per header value
	OpenByHeaderAtEnd map[string]int64 `json:"open_by_header_at_end,omitempty"` // open connections per value

	Timeline []HoldSample `json:"timeline"`

	// wsbench's own cost.
	HeldByEpoll     int64   `json:"held_by_epoll"`     // connections held without a goroutine
	HeldByGoroutine int64   `json:"held_by_goroutine"` // wss, or no epoll
	CPUSeconds      float64 `json:"cpu_s"`
	MaxRSSKiB       int64   `json:"max_rss_kib"`
	GoroutinesAtEnd int     `json:"goroutines_at_end"` // before connections close
}

// HoldAttempts counts handshakes of one kind.
type HoldAttempts struct {
	Attempted int64            `json:"attempted"`
	OK        int64            `json:"ok"`
	Failed    int64            `json:"failed"`
	Failures  map[string]int64 `json:"failures,omitempty"` // by reason
}

// HoldStorm is one storm: see HoldHelp.
type HoldStorm struct {
	StartS    float64 `json:"start_s"`
	Closes    int64   `json:"closes"`
	MinOpen   int64   `json:"min_open"`
	RecoveryS float64 `json:"recovery_s"`
	Recovered bool    `json:"recovered"`
}

// HoldSample is one interval of a hold run.
type HoldSample struct {
	T              float64 `json:"t"`
	Open           int64   `json:"open"`
	Waiting        int64   `json:"waiting"`    // waiting out a reconnect delay
	Connecting     int64   `json:"connecting"` // handshakes in flight
	Closes         int64   `json:"closes"`     // in the interval
	Reconnects     int64   `json:"reconnects"` // succeeded in the interval
	Failed         int64   `json:"failed"`     // handshakes failed in the interval
	Connected      int64   `json:"connected"`  // handshakes succeeded in the interval
	HandshakeP99MS float64 `json:"handshake_p99_ms"`
	ReconnectP99MS float64 `json:"reconnect_p99_ms"`
}

// buildReport assembles the report at the end; mu must be held.
func (h *Holder) buildReport(end time.Time, openAtEnd int64, goroutines int, ru1 *syscall.Rusage) *HoldReport {
	st := &h.st
	r := &HoldReport{Mode: "hold", URL: h.cfg.URL, Conns: h.cfg.Conns, Started: h.start, ElapsedS: end.Sub(h.start).Seconds(),
		ReconnectDelayMinMS: ms(int64(h.cfg.ReconnectDelayMin)), ReconnectDelayMaxMS: ms(int64(h.cfg.ReconnectDelayMax)),
		PingS:     h.cfg.Ping.Seconds(),
		OpenAtEnd: openAtEnd, Peak: st.peak, MinAfterRamp: -1,
		Closes: st.closes, ClosesByCode: maps.Clone(st.byCode), NoCloseFrame: st.noClose, NoCloseFrameKinds: maps.Clone(st.noCloseKinds),
		Initial:    HoldAttempts{st.initAttempts, st.initOK, st.initFailed, maps.Clone(st.initFailures)},
		Reconnects: HoldAttempts{st.recAttempts, st.recOK, st.recFailed, maps.Clone(st.recFailures)},
		// The sampler has stopped: the totals are complete.
		ReconnectLatency: summarize(h.recon.total), HandshakeLatency: summarize(h.hs.total),
		ReconnectHandshakeLatency: summarize(h.rhs.total),
		StormCount:                st.stormCount, Storms: slices.Clone(st.storms),
		Timeline:    st.timeline,
		HeldByEpoll: st.heldByEpoll, HeldByGoroutine: st.heldByGor,
		CPUSeconds: tvSeconds(ru1.Utime) + tvSeconds(ru1.Stime) - tvSeconds(h.ru0.Utime) - tvSeconds(h.ru0.Stime),
		MaxRSSKiB:  ru1.Maxrss, GoroutinesAtEnd: goroutines,
	}
	if !st.rampEnd.IsZero() {
		r.RampS = st.rampEnd.Sub(h.start).Seconds()
		r.MinAfterRamp = st.minAfter
	} else {
		r.RampS = r.ElapsedS
	}
	if s := st.storm; s != nil {
		s.RecoveryS = end.Sub(h.start).Seconds() - s.StartS
		r.Storms = append(r.Storms, *s)
	}
	for i := range r.Storms {
		if r.LongestStorm == nil || r.Storms[i].RecoveryS > r.LongestStorm.RecoveryS {
			r.LongestStorm = &r.Storms[i]
		}
	}
	if r.LongestStorm != nil {
		ls := *r.LongestStorm
		r.LongestStorm = &ls
	}
	if h.cfg.CountHeader != "" {
		r.CountHeader = h.cfg.CountHeader
		r.ServedBy = maps.Clone(st.servedBy)
		r.OpenByHeaderAtEnd = map[string]int64{}
		for k, v := range st.openBy {
			if v != 0 {
				r.OpenByHeaderAtEnd[k] = v
			}
		}
	}
	return r
}

// closeCodeNames names the close codes people meet (RFC 6455 §7.4.1 and
// the IANA registry).
var closeCodeNames = map[int]string{
	1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
	1005: "no code in the close frame", 1007: "invalid payload", 1008: "policy violation", 1009: "message too big",
	1010: "extension required", 1011: "internal error", 1012: "service restart", 1013: "try again later",
	1014: "bad gateway",
}

// WriteText writes the end-of-run summary for people.
func (r *HoldReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "wsbench hold %s\n", r.URL)
	minAfter := "-"
	if r.MinAfterRamp >= 0 {
		minAfter = fmt.Sprint(r.MinAfterRamp)
	}
	fmt.Fprintf(&b, "  conns %d: open at end %d, peak %d, min after ramp %s (ramp %.1fs, run %.1fs)\n",
		r.Conns, r.OpenAtEnd, r.Peak, minAfter, r.RampS, r.ElapsedS-r.RampS)
	delay := fmtMS(r.ReconnectDelayMinMS)
	if r.ReconnectDelayMaxMS != r.ReconnectDelayMinMS {
		delay += "-" + fmtMS(r.ReconnectDelayMaxMS)
	}
	ping := "off"
	if r.PingS > 0 {
		ping = fmt.Sprintf("every %gs", r.PingS)
	}
	fmt.Fprintf(&b, "  reconnect delay %s, ping %s\n", delay, ping)
	fmt.Fprintf(&b, "  closes %d\n", r.Closes)
	for _, code := range slices.Sorted(maps.Keys(r.ClosesByCode)) {
		name := closeCodeNames[code]
		if name != "" {
			name = " (" + name + ")"
		}
		fmt.Fprintf(&b, "    %8d  close frame %d%s\n", r.ClosesByCode[code], code, name)
	}
	for _, k := range sortedKeys(r.NoCloseFrameKinds) {
		fmt.Fprintf(&b, "    %8d  no close frame: %s\n", r.NoCloseFrameKinds[k], k)
	}
	attempts := func(what string, a HoldAttempts) {
		fmt.Fprintf(&b, "  %s %d attempted: %d ok, %d failed\n", what, a.Attempted, a.OK, a.Failed)
		for _, k := range sortedKeys(a.Failures) {
			fmt.Fprintf(&b, "    %8d  %s\n", a.Failures[k], k)
		}
	}
	attempts("first connects", r.Initial)
	attempts("reconnects", r.Reconnects)
	line := func(name string, l LatencySummary, note string) {
		if l.Count == 0 {
			fmt.Fprintf(&b, "  %-19s  none measured\n", name)
			return
		}
		fmt.Fprintf(&b, "  %-19s  p50 %s  p90 %s  p99 %s  max %s  (n=%d)%s\n", name,
			fmtMS(l.P50MS), fmtMS(l.P90MS), fmtMS(l.P99MS), fmtMS(l.MaxMS), l.Count, note)
	}
	line("reconnect", r.ReconnectLatency, "  close seen → new 101")
	line("handshake", r.HandshakeLatency, "")
	line("reconnect handshake", r.ReconnectHandshakeLatency, "  dial → 101, reconnects only")
	switch s := r.LongestStorm; {
	case s == nil:
		b.WriteString("  storms 0\n")
	case s.Recovered:
		fmt.Fprintf(&b, "  storms %d: longest recovered in %s (began at %.1fs, %d closes, min open %d)\n",
			r.StormCount, fmtMS(s.RecoveryS*1000), s.StartS, s.Closes, s.MinOpen)
	default:
		fmt.Fprintf(&b, "  storms %d: longest NOT recovered at the end, %s after it began at %.1fs (%d closes, min open %d)\n",
			r.StormCount, fmtMS(s.RecoveryS*1000), s.StartS, s.Closes, s.MinOpen)
	}
	if r.CountHeader != "" {
		fmt.Fprintf(&b, "  %s: handshakes", r.CountHeader)
		for _, k := range sortedKeys(r.ServedBy) {
			fmt.Fprintf(&b, " %s %d;", k, r.ServedBy[k])
		}
		b.WriteString("  open at end")
		for _, k := range sortedKeys(r.OpenByHeaderAtEnd) {
			fmt.Fprintf(&b, " %s %d;", k, r.OpenByHeaderAtEnd[k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  wsbench itself: CPU %.2fs, max RSS %.1f MiB, %d connections held by epoll and %d by goroutines, %d goroutines at end\n",
		r.CPUSeconds, float64(r.MaxRSSKiB)/1024, r.HeldByEpoll, r.HeldByGoroutine, r.GoroutinesAtEnd)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes r as one indented JSON document.
func (r *HoldReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *HoldReport) charts() []chart {
	var t, open, waiting, closes, recon, failed, hp99, rp99 []float64
	for _, s := range r.Timeline {
		t = append(t, s.T)
		open, waiting = append(open, float64(s.Open)), append(waiting, float64(s.Waiting+s.Connecting))
		closes, recon, failed = append(closes, float64(s.Closes)), append(recon, float64(s.Reconnects)), append(failed, float64(s.Failed))
		hp99, rp99 = append(hp99, s.HandshakeP99MS), append(rp99, s.ReconnectP99MS)
	}
	return []chart{
		{id: "connections-over-time", title: "Connections", xLabel: "seconds since start", yLabel: "connections",
			series: []series{{"open", "#9467bd", t, open}, {"reconnecting", "#ff7f0e", t, waiting}}},
		{id: "events-over-time", title: "Closes, reconnects and failed handshakes per interval", xLabel: "seconds since start", yLabel: "per interval",
			series: []series{{"closes", "#d62728", t, closes}, {"reconnects", "#2ca02c", t, recon}, {"failed", "#7f7f7f", t, failed}}},
		{id: "latency-over-time", title: "p99 latency per interval", xLabel: "seconds since start", yLabel: "ms (log scale)", logY: true,
			series: []series{{"reconnect", "#d62728", t, rp99}, {"handshake", "#1f77b4", t, hp99}}},
	}
}

var holdReportTmpl = template.Must(template.New("hold").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>wsbench hold {{.Res.URL}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
.chart{display:block;margin:12px 0 24px;border:1px solid #ddd;max-width:100%;height:auto}
.chart .grid{stroke:#eee} .chart text{font:12px system-ui,sans-serif;fill:#444}
.chart .title{font-weight:600;font-size:14px} .chart .axis{fill:#666}
pre{background:#f7f7f7;padding:10px;overflow:auto}
</style></head><body>
<h1>wsbench hold — {{.Res.URL}}</h1>
<div class="sub">started {{.Res.Started.Format "2006-01-02 15:04:05 MST"}}, {{printf "%.1f" .Res.ElapsedS}}s, {{.Res.Conns}} connections</div>
<pre id="text-summary">{{.Text}}</pre>
{{range .Charts}}{{.}}
{{end}}
<h2>Definitions</h2>
<pre>{{.Help}}</pre>
<script type="application/json" id="wsbench-data">{{.JSON}}</script>
</body></html>
`))

// WriteHTML writes one self-contained HTML page: the summary, connections,
// closes and reconnects over time as inline SVG, and the report as JSON.
func (r *HoldReport) WriteHTML(w io.Writer) error {
	var charts []template.HTML
	for _, c := range r.charts() {
		charts = append(charts, template.HTML(c.svg()))
	}
	var text strings.Builder
	r.WriteText(&text)
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return holdReportTmpl.Execute(w, map[string]any{
		"Res": r, "Charts": charts, "Text": text.String(), "Help": HoldHelp, "JSON": template.JS(js),
	})
}
