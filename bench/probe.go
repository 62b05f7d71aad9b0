package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Defaults for ProbeConfig's zero fields.
const (
	DefaultProbeTimeout = 5 * time.Second
	DefaultHealthPath   = "/health"
)

// ProbeConfig is what probe checks. The zero value of each field means its
// default.
type ProbeConfig struct {
	// URL is the WebSocket endpoint through the proxy (ws://, wss://,
	// http:// or https://).
	URL string
	// Backend, if set, is the backend behind the proxy, as HOST:PORT or a
	// URL; without a path it gets URL's. It is asked directly, so that a
	// refusal can be blamed on the proxy or on the application.
	Backend string
	// HealthPath is fetched from the backend directly. Default
	// DefaultHealthPath; "-" skips it.
	HealthPath string
	// Headers are added to every request (Origin, Authorization, Cookie…).
	Headers []Header
	// Timeout bounds each check. Default DefaultProbeTimeout.
	Timeout time.Duration
	// Hold keeps the upgraded connection through the proxy open, silent,
	// this long, to catch idle timeouts; 0 skips it.
	Hold time.Duration
	// InsecureTLS skips certificate checks.
	InsecureTLS bool
}

// Check is one step of a probe, as curl would have shown it.
type Check struct {
	Name      string  `json:"name"`
	Request   string  `json:"request"` // e.g. "GET http://127.0.0.1:8080/ws (upgrade)"
	OK        bool    `json:"ok"`
	Status    int     `json:"status,omitempty"`
	Detail    string  `json:"detail"` // one line for people
	Head      string  `json:"head,omitempty"`
	Body      string  `json:"body,omitempty"`
	Err       string  `json:"error,omitempty"`
	ElapsedMS float64 `json:"elapsed_ms"`
	// errKind classifies Err for the diagnosis.
	errKind string
}

// ProbeResult is a probe's checks and what they mean.
type ProbeResult struct {
	URL       string   `json:"url"`
	Backend   string   `json:"backend,omitempty"`
	Works     bool     `json:"works"`
	Checks    []Check  `json:"checks"`
	Diagnosis []string `json:"diagnosis"`
}

// probe check names.
const (
	checkHealth   = "backend health"
	checkGET      = "plain GET via proxy"
	checkUpgrade  = "upgrade via proxy"
	checkDirect   = "upgrade direct"
	checkHoldIdle = "idle hold via proxy"
)

// Probe runs the checks a person runs by hand with curl when WebSockets
// fail behind a proxy, and explains the outcome in plain words. It returns
// an error only for a bad configuration; a failing proxy is a result.
func Probe(ctx context.Context, pc ProbeConfig) (*ProbeResult, error) {
	if pc.Timeout == 0 {
		pc.Timeout = DefaultProbeTimeout
	}
	if pc.HealthPath == "" {
		pc.HealthPath = DefaultHealthPath
	}
	proxy, err := ParseTarget(pc.URL)
	if err != nil {
		return nil, err
	}
	res := &ProbeResult{URL: pc.URL}
	var backend Target
	haveBackend := pc.Backend != ""
	if haveBackend {
		if backend, err = backendTarget(pc.Backend, proxy); err != nil {
			return nil, err
		}
		res.Backend = pc.Backend
	}
	d := &dialer{timeout: pc.Timeout, tls: &tls.Config{InsecureSkipVerify: pc.InsecureTLS}}

	if haveBackend && pc.HealthPath != "-" {
		h := backend
		h.Path = pc.HealthPath
		c := probeGET(ctx, d, h, pc)
		c.Name = checkHealth
		c.OK = c.Status >= 200 && c.Status < 300
		res.Checks = append(res.Checks, c)
	}
	g := probeGET(ctx, d, proxy, pc)
	g.Name = checkGET
	g.OK = g.Status > 0 && g.Status < 500
	res.Checks = append(res.Checks, g)

	up, conn := probeUpgrade(ctx, d, proxy, pc, pc.Hold > 0)
	up.Name = checkUpgrade
	res.Checks = append(res.Checks, up)
	if haveBackend {
		dc, _ := probeUpgrade(ctx, d, backend, pc, false)
		dc.Name = checkDirect
		res.Checks = append(res.Checks, dc)
	}
	if conn != nil {
		res.Checks = append(res.Checks, probeHold(ctx, conn, pc.Hold))
	}
	res.Works, res.Diagnosis = diagnose(res.Checks, proxy, backend)
	return res, nil
}

// backendTarget turns HOST:PORT or a URL into a target, borrowing the
// proxy's path when the backend names none.
func backendTarget(s string, proxy Target) (Target, error) {
	if !strings.Contains(s, "://") {
		scheme := "ws://"
		if proxy.TLS {
			scheme = "wss://"
		}
		s = scheme + s
	}
	t, err := ParseTarget(s)
	if err != nil {
		return t, err
	}
	if !hasPath(s) {
		t.Path = proxy.Path
	}
	return t, nil
}

// hasPath reports whether the URL s names a path past its host.
func hasPath(s string) bool {
	_, rest, _ := strings.Cut(s, "://")
	i := strings.IndexAny(rest, "/?")
	return i >= 0 && rest[i:] != "/"
}

func (t Target) httpURL() string {
	scheme := "http://"
	if t.TLS {
		scheme = "https://"
	}
	return scheme + t.Host + t.Path
}

// probeGET sends a plain GET (no upgrade) and reads the answer.
func probeGET(ctx context.Context, d *dialer, t Target, pc ProbeConfig) (c Check) {
	c = Check{Request: "GET " + t.httpURL()}
	start := time.Now()
	defer func() { c.ElapsedMS = ms(int64(time.Since(start))) }()
	ctx, cancel := context.WithTimeout(ctx, pc.Timeout)
	defer cancel()
	nc, err := d.dial(ctx, t, 0)
	if err != nil {
		c.setErr(err)
		return c
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(pc.Timeout))
	var b strings.Builder
	b.WriteString("GET " + t.Path + " HTTP/1.1\r\n")
	if !hasHeader(pc.Headers, "Host") {
		b.WriteString("Host: " + t.Host + "\r\n")
	}
	b.WriteString("User-Agent: wsbench-probe\r\nAccept: */*\r\nConnection: close\r\n")
	for _, h := range pc.Headers {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(nc, b.String()); err != nil {
		c.setErr(err)
		return c
	}
	resp, rest, err := readHead(nc)
	if err != nil {
		c.setErr(err)
		return c
	}
	c.Status, c.Head = resp.Status, resp.Head
	c.Body = readBody(nc, resp, rest, 2048, pc.Timeout/2)
	c.Detail = fmt.Sprintf("%d %s", resp.Status, resp.Reason)
	return c
}

// probeUpgrade sends a raw upgrade and verifies the 101. With keep set, a
// successful connection is returned open.
func probeUpgrade(ctx context.Context, d *dialer, t Target, pc ProbeConfig, keep bool) (c Check, _ *Conn) {
	c = Check{Request: "GET " + t.httpURL() + " with Upgrade: websocket"}
	start := time.Now()
	defer func() { c.ElapsedMS = ms(int64(time.Since(start))) }()
	ctx, cancel := context.WithTimeout(ctx, pc.Timeout)
	defer cancel()
	nc, err := d.dial(ctx, t, 0)
	if err != nil {
		c.setErr(err)
		return c, nil
	}
	nc.SetDeadline(time.Now().Add(pc.Timeout))
	conn, resp, err := handshake(nc, t, pc.Headers, 1024)
	if resp != nil {
		c.Status, c.Head = resp.Status, resp.Head
	}
	var he *HandshakeError
	switch {
	case err == nil:
		c.OK = true
		c.Detail = "101 Switching Protocols, Sec-WebSocket-Accept verified"
		nc.SetDeadline(time.Time{})
		if keep {
			return c, conn
		}
		conn.CloseGracefully(200 * time.Millisecond)
		return c, nil
	case errors.As(err, &he) && he.Status != 0:
		c.Body = he.Body
		c.Detail = fmt.Sprintf("%d %s", he.Status, he.Reason)
		if he.Status == 101 {
			c.Detail = he.Reason
		}
	default:
		c.setErr(err)
	}
	nc.Close()
	return c, nil
}

// probeHold waits on an idle upgraded connection, answering pings, and
// reports whether and when something closed it.
func probeHold(ctx context.Context, conn *Conn, hold time.Duration) Check {
	c := Check{Name: checkHoldIdle, Request: fmt.Sprintf("hold the upgraded connection %s without sending", hold)}
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { conn.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.nc.SetReadDeadline(start.Add(hold))
	var err error
	for err == nil {
		_, _, _, err = conn.ReadMessage(false)
	}
	el := time.Since(start)
	c.ElapsedMS = ms(int64(el))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
		c.OK = true
		c.Detail = fmt.Sprintf("still open after %s", hold)
		conn.CloseGracefully(200 * time.Millisecond)
		return c
	}
	conn.Close()
	c.Err = err.Error()
	c.errKind = errKind(err)
	c.Detail = fmt.Sprintf("closed after %.1fs without traffic (%s)", el.Seconds(), c.errKind)
	return c
}

func (c *Check) setErr(err error) {
	c.Err = err.Error()
	c.errKind = errKind(err)
	var he *HandshakeError
	if errors.As(err, &he) {
		c.Head = he.Head
	}
	c.Detail = c.errKind
}

func findCheck(cs []Check, name string) *Check {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// diagnose turns the checks into plain words. It reports whether WebSockets
// work through the proxy.
func diagnose(cs []Check, proxy, backend Target) (bool, []string) {
	up := findCheck(cs, checkUpgrade)
	direct := findCheck(cs, checkDirect)
	health := findCheck(cs, checkHealth)
	hold := findCheck(cs, checkHoldIdle)
	get := findCheck(cs, checkGET)
	var out []string
	say := func(f string, a ...any) { out = append(out, fmt.Sprintf(f, a...)) }
	const nginxHint = `nginx needs, in the location: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`

	works := up != nil && up.OK
	switch {
	case up == nil:
	case up.OK:
		say("WebSockets work through the proxy: it answered the upgrade with 101 Switching Protocols and a correct Sec-WebSocket-Accept.")
	case up.Status == 0 && up.errKind == "connection refused":
		say("Nothing accepts connections at %s: the proxy is not running, or listens on another address or port.", proxy.Addr)
	case up.Status == 0 && up.errKind == "timeout":
		say("The proxy at %s gave no answer to the upgrade within the timeout: it, or the backend behind it, hangs (a proxy that buffers the request, or a backend that never answers the handshake).", proxy.Addr)
	case up.Status == 0 && strings.HasPrefix(up.errKind, "closed by server"), up.Status == 0 && up.errKind == "connection reset by peer":
		say("The proxy closed the connection without answering the upgrade: it refused the request, crashed, or expects something else on this port (TLS, HTTP/2 only, the PROXY protocol).")
	case up.Status == 0:
		say("The upgrade through the proxy failed before any answer: %s.", up.errKind)
	case up.Status == 101:
		say("The proxy answered 101, but %s: something between client and backend rewrites or forges the handshake; browsers will refuse this connection.", up.Detail)
	case up.Status == 502:
		say("502 Bad Gateway: the proxy could not reach the backend; it is down, or the proxy points at the wrong host or port.")
		if direct != nil {
			if direct.OK {
				say("The backend %s does upgrade when asked directly, so the proxy's upstream address is wrong, or the proxy cannot reach it from where it runs.", backend.Addr)
			} else if direct.Status == 0 {
				say("Confirmed: asked directly, the backend %s fails too (%s).", backend.Addr, direct.errKind)
			}
		}
	case up.Status == 503:
		say("503 Service Unavailable: the proxy has no healthy backend for this route (all failed their health checks, or the pool is empty), or the application is overloaded.")
	case up.Status == 504:
		say("504 Gateway Timeout: the proxy gave up waiting for the backend's answer; an upstream timeout (nginx proxy_read_timeout / proxy_connect_timeout, wsgate --response-timeout) is shorter than the backend needs, or the backend hangs.")
	case direct != nil && direct.OK:
		say("The backend upgrades when asked directly (101) but the proxy answered %s: the proxy does not pass the upgrade headers (Upgrade and Connection) to the backend, so the application sees a plain GET. %s", up.Detail, nginxHint)
	case direct != nil && direct.Status == up.Status:
		say("The backend itself answers %s to this handshake, with or without the proxy: the application rejected it. %s", up.Detail, appRejection(up.Status))
	default:
		if direct != nil && direct.Status == 0 {
			say("The backend %s could not be asked directly (%s), so the proxy and the application cannot be told apart.", backend.Addr, direct.errKind)
		}
		lower := strings.ToLower(up.Body)
		// A WebSocket library that rejects a request as no proper
		// handshake says so in its body, or (gorilla, RFC 6455 §4.4) with
		// Sec-WebSocket-Version; this client's handshake was proper, so
		// something in between changed it.
		libReject := strings.Contains(strings.ToLower(up.Head), "\r\nsec-websocket-version:")
		noUpgradeSeen := up.Status == 426 || libReject || strings.Contains(lower, "upgrade") || strings.Contains(lower, "websocket protocol") ||
			strings.Contains(lower, "connection header") || strings.Contains(lower, "transport unknown")
		switch {
		case up.Status == 426 || (up.Status == 400 && noUpgradeSeen) || (up.Status >= 200 && up.Status < 300):
			why := ""
			if libReject {
				why = " (the answer carries Sec-WebSocket-Version: a WebSocket library found no valid handshake in a request that left here valid)"
			}
			say("The proxy answered %s%s: most likely the proxy does not pass the upgrade headers (Upgrade and Connection), so the application saw a plain GET. %s", up.Detail, why, nginxHint)
			if direct == nil {
				say("Run again with --backend HOST:PORT to confirm: a 101 from the backend directly settles it.")
			}
		default:
			say("The upgrade through the proxy was answered %s. %s", up.Detail, appRejection(up.Status))
			if direct == nil {
				say("If the proxy may be at fault, run again with --backend HOST:PORT: a 101 from the backend directly means the proxy does not pass the upgrade headers.")
			}
		}
	}
	if health != nil && !health.OK {
		say("The backend's health check (%s) failed: %s.", health.Request, health.Detail)
	}
	if get != nil && get.Status == 0 && up != nil && up.Status != 0 {
		say("A plain GET through the proxy failed (%s) while the upgrade got an answer.", get.Detail)
	}
	if hold != nil && !hold.OK {
		works = false
		say("The upgraded connection was %s: an idle timeout somewhere between client and backend (nginx proxy_read_timeout defaults to 60s; Socket.IO pings every 25s, other apps may not). Raise it above the application's heartbeat, or have the application ping.", hold.Detail)
	}
	return works, out
}

// appRejection explains a status the application gives a handshake.
func appRejection(status int) string {
	switch status {
	case 400:
		return "400 means the application rejected the path, a token or query parameter, or the Origin."
	case 401, 403:
		return "The application refused the credentials or the Origin header (pass them with -H 'Origin: …' or -H 'Authorization: …')."
	case 404:
		return "404: the path is not routed to the WebSocket handler (check the proxy's location or route, prefix stripping and trailing slashes)."
	case 405:
		return "405: the endpoint does not take GET; the path is wrong."
	case 301, 302, 307, 308:
		return "A redirect: WebSocket clients do not follow it; use the final URL (often a missing trailing slash or http→https)."
	}
	if status >= 500 {
		return "A 5xx from the application: it failed while handling the handshake."
	}
	return ""
}

// WriteText writes the probe's checks and diagnosis for people.
func (pr *ProbeResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "wsbench probe %s", pr.URL)
	if pr.Backend != "" {
		fmt.Fprintf(&b, " (backend %s)", pr.Backend)
	}
	b.WriteString("\n")
	for _, c := range pr.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		if c.Name == checkGET {
			mark = "info"
		}
		fmt.Fprintf(&b, "  [%s] %-20s %s → %s (%.1fms)\n", mark, c.Name, c.Request, c.Detail, c.ElapsedMS)
	}
	b.WriteString("diagnosis:\n")
	for _, d := range pr.Diagnosis {
		b.WriteString("  " + d + "\n")
	}
	if pr.Works {
		b.WriteString("result: works\n")
	} else {
		b.WriteString("result: PROBLEM\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes pr as one indented JSON document.
func (pr *ProbeResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(pr)
}
