package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Socket.IO over Engine.IO, as much as a load generator needs: the
// Engine.IO handshake over HTTP long-polling (v4: packets split by 0x1E; v3:
// length-prefixed), the namespace connect, the upgrade to websocket
// (2probe/3probe/5), pings, and events emitted with acks.

// ErrSessionUnknown is Engine.IO's 400 {"code":1,"message":"Session ID
// unknown"}: a request carrying a sid reached a node that did not issue it
// (no stickiness in front of a fleet).
var ErrSessionUnknown = errors.New("bench: socket.io: Session ID unknown")

// SocketIOError is a failure the Socket.IO server reported.
type SocketIOError struct{ What string }

func (e *SocketIOError) Error() string { return "bench: socket.io: " + e.What }

// nodeHeaders are response headers that may name the node that answered.
var nodeHeaders = []string{"X-Node", "X-Backend", "X-Served-By", "X-Upstream", "X-Server"}

// setupSocketIO prepares the target and the session opener.
func (r *run) setupSocketIO() error {
	u, err := url.Parse(r.cfg.URL)
	if err != nil {
		return err
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = r.cfg.SocketIOPath
	}
	r.tgt, err = ParseTarget(u.String())
	if err != nil {
		return err
	}
	r.open = r.openSocketIO
	return nil
}

// sioSession is one Socket.IO client, on websocket once open.
type sioSession struct {
	r       *run
	c       *Conn
	eio     int
	ns      string // "" for the main namespace, else "/chat,"
	ack     int
	msg     []byte // the emit being built; reused
	payload []byte // JSON string argument, quoted
	event   []byte // JSON event name, quoted
	// pingEvery is the client's ping period (EIO 3 only: there the client pings).
	pingEvery time.Duration
	lastPing  time.Time
	node      string           // node named by the handshake headers
	nodes     map[string]int64 // acks per node, merged into the run's counts at close
}

// sioQuery builds the Engine.IO request path for t with extra parameters.
func (r *run) sioPath(transport, sid string) string {
	u, _ := url.Parse("http://x" + r.tgt.Path)
	q := u.Query()
	q.Set("EIO", strconv.Itoa(r.cfg.EIO))
	q.Set("transport", transport)
	if sid != "" {
		q.Set("sid", sid)
	}
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

func (r *run) openSocketIO(ctx context.Context, i int) (session, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	s := &sioSession{r: r, eio: r.cfg.EIO, nodes: map[string]int64{}}
	if ns := r.cfg.Namespace; ns != "/" && ns != "" {
		s.ns = ns + ","
	}
	s.payload, _ = json.Marshal(strings.Repeat("x", r.cfg.Size))
	s.event, _ = json.Marshal(r.cfg.Event)
	var err error
	if r.cfg.Transport == "websocket" {
		err = s.openWebSocket(ctx, i)
	} else {
		err = s.openPolling(ctx, i)
	}
	if err != nil {
		if s.c != nil {
			s.c.Close()
		}
		if errors.Is(err, ErrSessionUnknown) {
			r.c.sidUnknown.Add(1)
		}
		return nil, err
	}
	s.lastPing = time.Now()
	return s, nil
}

// dialWS opens the websocket transport (with sid when upgrading).
func (s *sioSession) dialWS(ctx context.Context, i int, sid string) (*Response, error) {
	r := s.r
	t := r.tgt
	t.Path = r.sioPath("websocket", sid)
	nc, err := r.dial.dial(ctx, t, i)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, resp, err := handshake(nc, t, r.cfg.Headers, 1024)
	if err != nil {
		nc.Close()
		var he *HandshakeError
		if errors.As(err, &he) && strings.Contains(he.Body, "Session ID unknown") {
			return resp, ErrSessionUnknown
		}
		return resp, err
	}
	s.c = c
	if n := nodeOf(resp.Get); n != "" {
		s.node = n
	}
	return resp, nil
}

func nodeOf(get func(string) string) string {
	for _, h := range nodeHeaders {
		if v := get(h); v != "" {
			return v
		}
	}
	return ""
}

// openWebSocket: websocket transport from the start.
func (s *sioSession) openWebSocket(ctx context.Context, i int) error {
	if _, err := s.dialWS(ctx, i, ""); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	// The open packet.
	p, err := s.readPacket()
	if err != nil {
		return err
	}
	if len(p) == 0 || p[0] != '0' {
		return &SocketIOError{fmt.Sprintf("expected an Engine.IO open packet, got %q", truncate(string(p), 60))}
	}
	if err := s.parseOpen(p[1:]); err != nil {
		return err
	}
	return s.connectNamespace()
}

// connectNamespace sends the Socket.IO connect (v4; v3 auto-joins "/") and
// waits for the server's connect packet.
func (s *sioSession) connectNamespace() error {
	if s.eio == 4 || s.ns != "" {
		if err := s.c.WriteMessage(opText, []byte("40"+s.ns)); err != nil {
			return err
		}
	}
	for {
		p, err := s.readPacket()
		if err != nil {
			return err
		}
		switch {
		case bytes.HasPrefix(p, []byte("40"+s.ns)):
			return nil
		case bytes.HasPrefix(p, []byte("44"+s.ns)):
			return &SocketIOError{"connect_error: " + truncate(string(p[2+len(s.ns):]), 100)}
		case string(p) == "2":
			s.c.WriteMessage(opText, []byte("3"))
		}
	}
}

type openPacket struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int      `json:"pingInterval"`
	PingTimeout  int      `json:"pingTimeout"`
}

func (s *sioSession) parseOpen(b []byte) error {
	var op openPacket
	if err := json.Unmarshal(b, &op); err != nil || op.SID == "" {
		return &SocketIOError{fmt.Sprintf("bad open packet %q", truncate(string(b), 80))}
	}
	if s.eio == 3 && op.PingInterval > 0 {
		s.pingEvery = time.Duration(op.PingInterval) * time.Millisecond
	}
	return nil
}

// openPolling: Engine.IO handshake over long-polling, namespace connect,
// then the upgrade to websocket.
func (s *sioSession) openPolling(ctx context.Context, i int) error {
	r := s.r
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			t := r.tgt
			t.TLS = false // the transport does TLS itself
			return r.dial.dial(ctx, t, i)
		},
		TLSClientConfig:     r.dial.tls,
		MaxIdleConnsPerHost: 2,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	scheme := "http://"
	if r.tgt.TLS {
		scheme = "https://"
	}
	base := scheme + r.tgt.Host
	do := func(method, path string, body string) ([]byte, error) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return nil, err
		}
		for _, h := range r.cfg.Headers {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
			} else {
				req.Header.Add(h.Name, h.Value)
			}
		}
		if body != "" {
			req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if n := nodeOf(resp.Header.Get); n != "" {
			s.node = n
		}
		if resp.StatusCode != 200 {
			if bytes.Contains(b, []byte("Session ID unknown")) {
				return nil, ErrSessionUnknown
			}
			return nil, &HandshakeError{Status: resp.StatusCode, Reason: "polling: " + truncate(strings.TrimSpace(string(b)), 80), Body: string(b)}
		}
		return b, nil
	}

	b, err := do("GET", r.sioPath("polling", ""), "")
	if err != nil {
		return err
	}
	pkts, err := decodePayload(b, s.eio)
	if err != nil {
		return err
	}
	if len(pkts) == 0 || len(pkts[0]) == 0 || pkts[0][0] != '0' {
		return &SocketIOError{fmt.Sprintf("expected an Engine.IO open packet, got %q", truncate(string(b), 60))}
	}
	var op openPacket
	json.Unmarshal(pkts[0][1:], &op)
	if err := s.parseOpen(pkts[0][1:]); err != nil {
		return err
	}
	sid := op.SID
	connected := false
	for _, p := range pkts[1:] {
		connected = connected || bytes.HasPrefix(p, []byte("40"+s.ns))
	}
	if s.eio == 4 || s.ns != "" {
		b, err := do("POST", r.sioPath("polling", sid), encodePacket("40"+s.ns, s.eio))
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return &SocketIOError{fmt.Sprintf("polling POST answered %q", truncate(string(b), 60))}
		}
	}
	for !connected {
		b, err := do("GET", r.sioPath("polling", sid), "")
		if err != nil {
			return err
		}
		pkts, err := decodePayload(b, s.eio)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			switch {
			case bytes.HasPrefix(p, []byte("40"+s.ns)):
				connected = true
			case bytes.HasPrefix(p, []byte("44"+s.ns)):
				return &SocketIOError{"connect_error: " + truncate(string(p[2+len(s.ns):]), 100)}
			case len(p) > 0 && p[0] == '1':
				return &SocketIOError{"server closed the session during the handshake"}
			}
		}
	}
	if !contains(op.Upgrades, "websocket") {
		return &SocketIOError{"server offers no websocket upgrade"}
	}
	// Upgrade: probe, then switch.
	if _, err := s.dialWS(ctx, i, sid); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	if err := s.c.WriteMessage(opText, []byte("2probe")); err != nil {
		return err
	}
	for {
		p, err := s.readPacket()
		if err != nil {
			return err
		}
		if string(p) == "3probe" {
			break
		}
	}
	if err := s.c.WriteMessage(opText, []byte("5")); err != nil {
		return err
	}
	r.c.upgraded.Add(1)
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// decodePayload splits a polling payload into packets.
func decodePayload(b []byte, eio int) ([][]byte, error) {
	if eio == 4 {
		return bytes.Split(b, []byte{0x1e}), nil
	}
	// v3: <length>:<packet>... with length in characters (UTF-16 units;
	// ASCII here, which is all the handshake carries).
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, ':')
		if i <= 0 {
			return nil, &SocketIOError{fmt.Sprintf("bad v3 payload %q", truncate(string(b), 60))}
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || i+1+n > len(b) {
			return nil, &SocketIOError{fmt.Sprintf("bad v3 payload %q", truncate(string(b), 60))}
		}
		out = append(out, b[i+1:i+1+n])
		b = b[i+1+n:]
	}
	return out, nil
}

func encodePacket(p string, eio int) string {
	if eio == 4 {
		return p
	}
	return strconv.Itoa(len(p)) + ":" + p
}

// readPacket reads one Engine.IO packet off the websocket.
func (s *sioSession) readPacket() ([]byte, error) {
	_, _, p, err := s.c.ReadMessage(true)
	return p, err
}

// roundTrip emits the event with an ack and waits for the ack.
func (s *sioSession) roundTrip() error {
	if s.pingEvery > 0 && time.Since(s.lastPing) >= s.pingEvery {
		if err := s.c.WriteMessage(opText, []byte("2")); err != nil {
			return err
		}
		s.lastPing = time.Now()
	}
	s.ack++
	m := append(s.msg[:0], "42"...)
	m = append(m, s.ns...)
	m = strconv.AppendInt(m, int64(s.ack), 10)
	m = append(m, '[')
	m = append(m, s.event...)
	m = append(m, ',')
	m = append(m, s.payload...)
	m = append(m, ']')
	s.msg = m
	if err := s.c.WriteMessage(opText, m); err != nil {
		return err
	}
	want := strconv.AppendInt([]byte("43"+s.ns), int64(s.ack), 10)
	for {
		p, err := s.readPacket()
		if err != nil {
			return err
		}
		if err := s.handle(p); err != nil {
			return err
		}
		if bytes.HasPrefix(p, want) && len(p) > len(want) && p[len(want)] == '[' {
			s.countNode(p[len(want):])
			return nil
		}
	}
}

// handle answers pings and turns closes into errors.
func (s *sioSession) handle(p []byte) error {
	switch {
	case len(p) == 0:
	case p[0] == '2' && s.eio == 4: // server ping
		return s.c.WriteMessage(opText, []byte("3"+string(p[1:])))
	case p[0] == '1':
		return &SocketIOError{"server closed the Engine.IO session"}
	case bytes.HasPrefix(p, []byte("41"+s.ns)):
		return &SocketIOError{"disconnected by the server"}
	case bytes.HasPrefix(p, []byte("42")):
		s.r.c.unsolicited.Add(1)
	}
	return nil
}

// countNode credits the ack to the node it names ({"node": …} as first
// argument), or else to the node the handshake headers named.
func (s *sioSession) countNode(args []byte) {
	name := s.node
	if bytes.Contains(args, []byte(`"node"`)) {
		var v []struct {
			Node string `json:"node"`
		}
		if json.Unmarshal(args, &v) == nil && len(v) > 0 && v[0].Node != "" {
			name = v[0].Node
		}
	}
	if name != "" {
		s.nodes[name]++
	}
}

func (s *sioSession) hold() error {
	for {
		p, err := s.readPacket()
		if err != nil {
			return err
		}
		if err := s.handle(p); err != nil {
			return err
		}
	}
}

func (s *sioSession) interrupt() { s.c.nc.SetDeadline(time.Unix(1, 0)) }

func (s *sioSession) close(wait time.Duration) {
	s.r.c.mu.Lock()
	if s.r.c.nodes == nil {
		s.r.c.nodes = map[string]int64{}
	}
	for k, v := range s.nodes {
		s.r.c.nodes[k] += v
	}
	s.r.c.mu.Unlock()
	if wait > 0 {
		// Leave the namespace and close the Engine.IO session, then the socket.
		s.c.nc.SetWriteDeadline(time.Now().Add(wait))
		s.c.WriteMessage(opText, []byte("41"+s.ns))
		s.c.WriteMessage(opText, []byte("1"))
	}
	s.c.CloseGracefully(wait)
}
