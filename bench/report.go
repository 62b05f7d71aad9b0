package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteText writes the end-of-run summary for people.
func (res *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "wsbench %s %s\n", res.Mode, res.URL)
	model := "closed loop"
	if res.Rate > 0 {
		model = fmt.Sprintf("open model at %g/s (latency from when each was due)", res.Rate)
	}
	failed := res.Failed
	switch res.Mode {
	case ModeHandshake:
		fmt.Fprintf(&b, "  workers %d, %s, %.1fs\n", res.Conns, model, res.ElapsedS)
		fmt.Fprintf(&b, "  handshakes %d ok, %d failed: %.0f/s\n", res.Connected, failed, res.HandshakesPerSec)
	default:
		fmt.Fprintf(&b, "  conns %d: connected %d, failed %d, dropped %d, open at end %d (ramp %.1fs, run %.1fs)\n",
			res.Conns, res.Connected, failed, res.Dropped, res.OpenAtEnd, res.RampS, res.ElapsedS-res.RampS)
	}
	if res.Mode == ModeEcho || res.Mode == ModeSocketIO {
		what := "round trips"
		if res.Mode == ModeSocketIO {
			what = "acks"
		}
		fmt.Fprintf(&b, "  %s %d (%.0f/s), %d B each, %s\n", what, res.Messages, res.MessagesPerSecond, res.Size, model)
	}
	line := func(name string, l LatencySummary) {
		if l.Count == 0 {
			fmt.Fprintf(&b, "  %-9s  none measured\n", name)
			return
		}
		fmt.Fprintf(&b, "  %-9s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)\n", name,
			fmtMS(l.P50MS), fmtMS(l.P90MS), fmtMS(l.P99MS), fmtMS(l.P999MS), fmtMS(l.MaxMS), l.Count)
	}
	if res.Mode == ModeEcho || res.Mode == ModeSocketIO {
		line("latency", res.Latency)
	}
	line("handshake", res.HandshakeLatency)
	if res.Mode == ModeSocketIO {
		fmt.Fprintf(&b, "  socket.io: transport %s, upgraded %d, \"Session ID unknown\" %d\n", res.Transport, res.Upgraded, res.SessionUnknown)
		if len(res.Nodes) > 0 {
			b.WriteString("  answered by:")
			for _, k := range sortedKeys(res.Nodes) {
				fmt.Fprintf(&b, " %s %d;", k, res.Nodes[k])
			}
			b.WriteString("\n")
		}
	}
	if res.Unsolicited > 0 {
		fmt.Fprintf(&b, "  unsolicited messages (not answers to ours): %d\n", res.Unsolicited)
	}
	if res.Errors > 0 {
		fmt.Fprintf(&b, "  errors %d:\n", res.Errors)
		for _, k := range sortedKeys(res.ErrorKinds) {
			fmt.Fprintf(&b, "    %8d  %s\n", res.ErrorKinds[k], k)
		}
	} else {
		b.WriteString("  errors 0\n")
	}
	unit := "message"
	if res.Mode == ModeConnect || res.Mode == ModeHandshake {
		unit = "handshake"
	}
	fmt.Fprintf(&b, "  wsbench itself: CPU %.2fs (%.1fµs per %s), max RSS %.1f MiB", res.CPUSeconds, res.CPUPerOpUS, unit, float64(res.MaxRSSKiB)/1024)
	if res.MemPerConnKiB > 0 {
		fmt.Fprintf(&b, ", %.1f KiB Go memory and %.1f KiB RSS per open connection", res.MemPerConnKiB, res.RSSPerConnKiB)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes res as one indented JSON document.
func (res *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// series is one line on a chart.
type series struct {
	name  string
	color string
	xs    []float64
	ys    []float64
}

// chart is an inline SVG line chart.
type chart struct {
	id, title, xLabel, yLabel string
	series                    []series
	// xTicks, when set, replaces the numeric x axis labels.
	xTicks []tick
	// logY plots y on a log scale (latencies spanning µs to seconds).
	logY bool
}

type tick struct {
	at    float64
	label string
}

const (
	chartW, chartH = 1000, 320
	padL, padR     = 70, 20
	padT, padB     = 36, 50
)

// svg renders c. Empty series still render axes and a note.
func (c chart) svg() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		c.id, chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="22" class="title">%s</text>`, padL, html.EscapeString(c.title))
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	n := 0
	for _, s := range c.series {
		for i := range s.xs {
			minX, maxX, maxY = math.Min(minX, s.xs[i]), math.Max(maxX, s.xs[i]), math.Max(maxY, s.ys[i])
			n++
		}
	}
	if n == 0 {
		minX, maxX, maxY = 0, 1, 1
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	if maxY <= 0 {
		maxY = 1
	}
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	px := func(x float64) float64 { return padL + (x-minX)/(maxX-minX)*pw }
	var py func(y float64) float64
	var yTicks []float64
	if c.logY {
		minY := maxY
		for _, s := range c.series {
			for _, y := range s.ys {
				if y > 0 {
					minY = math.Min(minY, y)
				}
			}
		}
		lo, hi := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
		if hi <= lo {
			hi = lo + 1
		}
		py = func(y float64) float64 {
			if y <= 0 {
				y = math.Pow(10, lo)
			}
			return padT + ph - (math.Log10(y)-lo)/(hi-lo)*ph
		}
		for e := lo; e <= hi; e++ {
			yTicks = append(yTicks, math.Pow(10, e))
		}
	} else {
		maxY = niceCeil(maxY * 1.05)
		py = func(y float64) float64 { return padT + ph - y/maxY*ph }
		for i := 0; i <= 4; i++ {
			yTicks = append(yTicks, maxY*float64(i)/4)
		}
	}
	// Grid and y labels.
	for _, y := range yTicks {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, py(y), py(y))
		fmt.Fprintf(&b, `<text class="ylab" x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, py(y)+4, fmtNum(y))
	}
	// X labels.
	ticks := c.xTicks
	if ticks == nil {
		for i := 0; i <= 5; i++ {
			x := minX + (maxX-minX)*float64(i)/5
			ticks = append(ticks, tick{x, fmtNum(x)})
		}
	}
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, px(t.at), px(t.at), padT, chartH-padB)
		fmt.Fprintf(&b, `<text class="xlab" x="%.1f" y="%d" text-anchor="middle">%s</text>`, px(t.at), chartH-padB+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, padL+pw/2, chartH-8, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text class="axis" x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`,
		padT+ph/2, padT+ph/2, html.EscapeString(c.yLabel))
	// Series and legend.
	for k, s := range c.series {
		var pts strings.Builder
		for i := range s.xs {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(s.xs[i]), py(s.ys[i]))
		}
		fmt.Fprintf(&b, `<polyline class="series" data-name="%s" data-points="%d" fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
			html.EscapeString(s.name), len(s.xs), s.color, strings.TrimSpace(pts.String()))
		if len(s.xs) == 1 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, px(s.xs[0]), py(s.ys[0]), s.color)
		}
		lx := chartW - padR - 110*(len(c.series)-k)
		fmt.Fprintf(&b, `<rect x="%d" y="12" width="14" height="4" fill="%s"/><text class="legend" x="%d" y="18">%s</text>`,
			lx, s.color, lx+18, html.EscapeString(s.name))
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="middle">no data</text>`, padL+pw/2, padT+ph/2)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case math.Abs(v) >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// nines maps a percentile to its position on a "number of nines" axis:
// 0→0, 90→1, 99→2, 99.9→3.
func nines(p float64) float64 {
	if p >= 100 {
		return 6
	}
	return -math.Log10(1 - p/100)
}

// charts builds the report's charts from res.
func (res *Result) charts() []chart {
	var t, p50, p90, p99, pmax, rate, open []float64
	for _, s := range res.Timeline {
		t = append(t, s.T)
		p50, p90, p99, pmax = append(p50, s.P50MS), append(p90, s.P90MS), append(p99, s.P99MS), append(pmax, s.MaxMS)
		rate, open = append(rate, s.PerSecond), append(open, float64(s.Open))
	}
	what := "message round trip"
	unit := "messages/s"
	switch res.Mode {
	case ModeSocketIO:
		what = "Socket.IO ack"
	case ModeConnect, ModeHandshake:
		what, unit = "handshake", "handshakes/s"
	}
	lat := chart{id: "latency-over-time", title: "Latency over time (" + what + "), per interval", xLabel: "seconds since start", yLabel: "ms (log scale)", logY: true,
		series: []series{
			{"p50", "#1f77b4", t, p50}, {"p90", "#2ca02c", t, p90}, {"p99", "#ff7f0e", t, p99}, {"max", "#d62728", t, pmax},
		}}
	thr := chart{id: "throughput-over-time", title: "Throughput (" + unit + ")", xLabel: "seconds since start", yLabel: unit,
		series: []series{{unit, "#1f77b4", t, rate}}}
	conns := chart{id: "connections-over-time", title: "Open connections", xLabel: "seconds since start", yLabel: "connections",
		series: []series{{"open", "#9467bd", t, open}}}
	var px, py []float64
	for _, d := range res.Distribution {
		if d.Percentile >= 100 {
			continue
		}
		px, py = append(px, nines(d.Percentile)), append(py, d.MS)
	}
	var ticks []tick
	for _, p := range []struct {
		p float64
		l string
	}{{0, "0%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}} {
		ticks = append(ticks, tick{nines(p.p), p.l})
	}
	pct := chart{id: "percentiles", title: "Latency by percentile (" + what + ", whole run)", xLabel: "percentile", yLabel: "ms (log scale)",
		series: []series{{"latency", "#d62728", px, py}}, xTicks: ticks, logY: true}
	return []chart{lat, pct, thr, conns}
}

var reportTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>wsbench {{.Res.Mode}} {{.Res.URL}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0 20px} td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.chart{display:block;margin:12px 0 24px;border:1px solid #ddd;max-width:100%;height:auto}
.chart .grid{stroke:#eee} .chart text{font:12px system-ui,sans-serif;fill:#444}
.chart .title{font-weight:600;font-size:14px} .chart .axis{fill:#666}
pre{background:#f7f7f7;padding:10px;overflow:auto}
</style></head><body>
<h1>wsbench {{.Res.Mode}} — {{.Res.URL}}</h1>
<div class="sub">started {{.Res.Started.Format "2006-01-02 15:04:05 MST"}}, {{printf "%.1f" .Res.ElapsedS}}s, {{.Res.Conns}} connections{{if .Res.Rate}}, {{.Res.Rate}}/s open model{{else}}, closed loop{{end}}</div>
<table id="summary">
<tr><th>latency</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.L.Count}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.P999}}</td><td>{{.Max}}</td></tr>
{{end}}</table>
{{range .Charts}}{{.}}
{{end}}
<h2>Summary</h2>
<pre id="text-summary">{{.Text}}</pre>
<script type="application/json" id="wsbench-data">{{.JSON}}</script>
</body></html>
`))

type reportRow struct {
	Name                     string
	L                        LatencySummary
	P50, P90, P99, P999, Max string
}

// WriteHTML writes one self-contained HTML page (no scripts, no external
// resources) with the summary, latency-over-time, throughput and
// percentile plots as inline SVG, and the result as JSON.
func (res *Result) WriteHTML(w io.Writer) error {
	var rows []reportRow
	add := func(name string, l LatencySummary) {
		rows = append(rows, reportRow{name, l, fmtMS(l.P50MS), fmtMS(l.P90MS), fmtMS(l.P99MS), fmtMS(l.P999MS), fmtMS(l.MaxMS)})
	}
	if res.Mode == ModeEcho || res.Mode == ModeSocketIO {
		add("messages", res.Latency)
	}
	add("handshakes", res.HandshakeLatency)
	var charts []template.HTML
	for _, c := range res.charts() {
		charts = append(charts, template.HTML(c.svg()))
	}
	var text strings.Builder
	res.WriteText(&text)
	js, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return reportTmpl.Execute(w, map[string]any{
		"Res": res, "Rows": rows, "Charts": charts, "Text": text.String(), "JSON": template.JS(js),
	})
}
