package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxHead bounds a response head read during a handshake or probe.
const maxHead = 16 << 10

// websocketGUID is the RFC 6455 constant behind Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// ErrClosed is returned by a read once the peer sent a close frame; the
// error returned is a *CloseError, which errors.Is reports as ErrClosed.
var ErrClosed = errors.New("bench: closed by peer (close frame)")

// CloseError is a close frame from the peer. Code is the status code it
// carried, or 1005 (RFC 6455 §7.1.5: no status code present) when it had none.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("bench: closed by peer (close frame %d %q)", e.Code, e.Reason)
	}
	return fmt.Sprintf("bench: closed by peer (close frame %d)", e.Code)
}

// Is makes errors.Is(err, ErrClosed) true for every close frame.
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// closeFrame decodes a close frame's payload into a *CloseError.
func closeFrame(p []byte) *CloseError {
	if len(p) < 2 {
		return &CloseError{Code: 1005}
	}
	return &CloseError{Code: int(binary.BigEndian.Uint16(p)), Reason: truncate(string(p[2:]), 123)}
}

// closeReply is the code a client echoes back for a close frame with payload p.
func closeReply(p []byte) []byte {
	if len(p) >= 2 {
		return p[:2]
	}
	return []byte{0x03, 0xE8}
}

// ErrProtocol is returned when the peer sent a frame this client cannot accept.
var ErrProtocol = errors.New("bench: websocket protocol error")

// HandshakeError is a handshake answered with anything but a valid 101.
// Status is 0 when the answer was not a readable HTTP response.
type HandshakeError struct {
	Status int    // HTTP status of the answer, 0 if none could be read
	Reason string // what was wrong, in words
	Head   string // the response head as received (may be empty)
	Body   string // up to 4 KiB of the body, if one came
}

func (e *HandshakeError) Error() string {
	if e.Status == 0 {
		return "bench: handshake: " + e.Reason
	}
	return fmt.Sprintf("bench: handshake: status %d: %s", e.Status, e.Reason)
}

// AcceptKey returns the Sec-WebSocket-Accept value for key (RFC 6455 §4.2.2).
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(websocketGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Target is a parsed ws://, wss://, http:// or https:// URL ready to dial.
type Target struct {
	Addr   string // host:port to dial
	Host   string // Host header value
	Path   string // path and query for the request line
	TLS    bool
	Server string // TLS server name
}

// ParseTarget parses a ws://, wss://, http:// or https:// URL.
func ParseTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("bench: bad URL %q: %w", raw, err)
	}
	var t Target
	port := ""
	switch u.Scheme {
	case "ws", "http":
		port = "80"
	case "wss", "https":
		port, t.TLS = "443", true
	default:
		return Target{}, fmt.Errorf("bench: bad URL %q: scheme must be ws, wss, http or https", raw)
	}
	if u.Host == "" {
		return Target{}, fmt.Errorf("bench: bad URL %q: no host", raw)
	}
	host := u.Hostname()
	if u.Port() != "" {
		port = u.Port()
	}
	t.Addr = net.JoinHostPort(host, port)
	t.Host = u.Host
	t.Server = host
	t.Path = u.EscapedPath()
	if t.Path == "" {
		t.Path = "/"
	}
	if u.RawQuery != "" {
		t.Path += "?" + u.RawQuery
	}
	return t, nil
}

// Header is one extra request header, sent as given.
type Header struct{ Name, Value string }

// ParseHeader parses "Name: value" as curl's -H does.
func ParseHeader(s string) (Header, error) {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return Header{}, fmt.Errorf("bench: bad header %q: want 'Name: value'", s)
	}
	return Header{Name: name, Value: strings.TrimSpace(value)}, nil
}

// hasHeader reports whether hs sets name (case-insensitive).
func hasHeader(hs []Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// dialer opens TCP connections, spreading them over source addresses.
type dialer struct {
	sources []net.IP // local addresses to bind, round-robin; empty: kernel's choice
	timeout time.Duration
	tls     *tls.Config // nil unless the target is TLS
}

// dial opens a TCP (and, for wss, TLS) connection to t, bound to source n%len(sources).
func (d *dialer) dial(ctx context.Context, t Target, n int) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout, Control: controlNoPort}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[n%len(d.sources)]}
	}
	c, err := nd.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if t.TLS {
		cfg := d.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = t.Server
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	return c, nil
}

// Conn is a client WebSocket connection with its own frame reader and writer:
// one buffer each way, reused for every message, so an echo round trip costs
// one write and (usually) one read system call and no allocation.
// A Conn is used by one goroutine at a time.
type Conn struct {
	// wmu serialises frame writes: a held connection may be pinged from
	// one goroutine while another answers the peer's pings.
	wmu sync.Mutex
	nc  net.Conn
	rb  []byte // read buffer; rb[r:w] holds bytes not yet parsed
	r   int
	w   int
	wb  []byte // write buffer, reused for every frame
	// msg collects the payload of the message being read when collecting.
	msg []byte
}

// newConn wraps nc; rest holds bytes already read past the handshake head.
func newConn(nc net.Conn, rest []byte, bufSize int) *Conn {
	n := max(bufSize, len(rest), 256)
	c := &Conn{nc: nc, rb: make([]byte, n)}
	c.w = copy(c.rb, rest)
	return c
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the TCP connection without a close frame.
func (c *Conn) Close() error { return c.nc.Close() }

// WriteMessage sends one masked frame with the given opcode.
func (c *Conn) WriteMessage(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(op, payload)
}

// writeWithin sends one frame, giving up after d; later writes have no deadline.
func (c *Conn) writeWithin(op byte, payload []byte, d time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(d))
	err := c.writeLocked(op, payload)
	c.nc.SetWriteDeadline(time.Time{})
	return err
}

// writeLocked is WriteMessage with wmu held.
func (c *Conn) writeLocked(op byte, payload []byte) error {
	n := len(payload)
	need := 14 + n
	if cap(c.wb) < need {
		c.wb = make([]byte, need)
	}
	b := c.wb[:need]
	b[0] = 0x80 | op
	h := 2
	switch {
	case n <= 125:
		b[1] = 0x80 | byte(n)
	case n <= 0xFFFF:
		b[1] = 0x80 | 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		h = 4
	default:
		b[1] = 0x80 | 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		h = 10
	}
	key := mrand.Uint32()
	binary.LittleEndian.PutUint32(b[h:], key)
	h += 4
	copy(b[h:], payload)
	maskBytes(b[h:h+n], key)
	_, err := c.nc.Write(b[:h+n])
	return err
}

// maskBytes XORs p with the 4-byte masking key (little-endian in key),
// eight bytes at a time.
func maskBytes(p []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		binary.LittleEndian.PutUint64(p[i:], v^k8)
	}
	for j := 0; i < len(p); i, j = i+1, j+1 {
		p[i] ^= byte(key >> (8 * (j & 3)))
	}
}

// fill makes at least n unparsed bytes available in rb[r:w].
func (c *Conn) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r > 0 && (len(c.rb)-c.r < n || c.r == c.w) {
		c.w = copy(c.rb, c.rb[c.r:c.w])
		c.r = 0
	}
	if len(c.rb)-c.r < n {
		nb := make([]byte, max(n, 2*len(c.rb)))
		c.w = copy(nb, c.rb[c.r:c.w])
		c.r = 0
		c.rb = nb
	}
	for c.w-c.r < n {
		m, err := c.nc.Read(c.rb[c.w:])
		c.w += m
		if err != nil {
			if c.w-c.r >= n {
				return nil
			}
			return err
		}
	}
	return nil
}

// ReadMessage reads the next data message, answering pings and skipping
// pongs on the way. It returns the opcode (text or binary) and the payload
// length. With collect set the payload is returned too (valid until the next
// read); otherwise it is discarded as it streams by, whatever its size.
// A close frame from the peer is answered and returns a *CloseError (which
// is ErrClosed).
func (c *Conn) ReadMessage(collect bool) (op byte, n int, data []byte, err error) {
	c.msg = c.msg[:0]
	first := true
	for {
		if err := c.fill(2); err != nil {
			return 0, 0, nil, err
		}
		b0, b1 := c.rb[c.r], c.rb[c.r+1]
		fin, fop, masked := b0&0x80 != 0, b0&0x0F, b1&0x80 != 0
		plen := uint64(b1 & 0x7F)
		h := 2
		switch plen {
		case 126:
			h = 4
		case 127:
			h = 10
		}
		if masked {
			h += 4
		}
		if err := c.fill(h); err != nil {
			return 0, 0, nil, err
		}
		switch plen {
		case 126:
			plen = uint64(binary.BigEndian.Uint16(c.rb[c.r+2:]))
		case 127:
			plen = binary.BigEndian.Uint64(c.rb[c.r+2:])
		}
		var key uint32
		if masked {
			key = binary.LittleEndian.Uint32(c.rb[c.r+h-4:])
		}
		if b0&0x70 != 0 || plen > 1<<40 {
			return 0, 0, nil, ErrProtocol
		}
		c.r += h
		if fop >= opClose {
			// Control frame: at most 125 bytes, never fragmented.
			if plen > 125 || !fin {
				return 0, 0, nil, ErrProtocol
			}
			if err := c.fill(int(plen)); err != nil {
				return 0, 0, nil, err
			}
			p := c.rb[c.r : c.r+int(plen)]
			c.r += int(plen)
			if masked {
				maskBytes(p, key)
			}
			switch fop {
			case opPing:
				if err := c.WriteMessage(opPong, p); err != nil {
					return 0, 0, nil, err
				}
			case opClose:
				ce := closeFrame(p)
				c.WriteMessage(opClose, closeReply(p))
				return 0, 0, nil, ce
			case opPong:
			default:
				return 0, 0, nil, ErrProtocol
			}
			continue
		}
		if first {
			if fop != opText && fop != opBinary {
				return 0, 0, nil, ErrProtocol
			}
			op, first = fop, false
		} else if fop != opContinuation {
			return 0, 0, nil, ErrProtocol
		}
		n += int(plen)
		if collect {
			if err := c.fill(int(plen)); err != nil {
				return 0, 0, nil, err
			}
			p := c.rb[c.r : c.r+int(plen)]
			if masked {
				maskBytes(p, key)
			}
			c.msg = append(c.msg, p...)
			c.r += int(plen)
		} else {
			for left := int(plen); left > 0; {
				if c.r == c.w {
					if err := c.fill(1); err != nil {
						return 0, 0, nil, err
					}
				}
				k := min(left, c.w-c.r)
				c.r += k
				left -= k
			}
		}
		if fin {
			if collect {
				return op, n, c.msg, nil
			}
			return op, n, nil, nil
		}
	}
}

// CloseGracefully sends a close frame (1000) and waits up to wait for the
// peer to close first, so that TIME_WAIT lands on the server, then closes.
func (c *Conn) CloseGracefully(wait time.Duration) {
	c.nc.SetDeadline(time.Now().Add(wait))
	if c.WriteMessage(opClose, []byte{0x03, 0xE8}) == nil && wait > 0 {
		var b [512]byte
		for {
			if _, err := c.nc.Read(b[:]); err != nil {
				break
			}
		}
	}
	c.nc.Close()
}

// handshakeRequest returns the upgrade request for t with the given key.
func handshakeRequest(t Target, key string, headers []Header) []byte {
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString("GET ")
	b.WriteString(t.Path)
	b.WriteString(" HTTP/1.1\r\n")
	if !hasHeader(headers, "Host") {
		b.WriteString("Host: " + t.Host + "\r\n")
	}
	b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ")
	b.WriteString(key)
	b.WriteString("\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range headers {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// newKey returns a fresh Sec-WebSocket-Key.
func newKey() string {
	var k [16]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// Response is an HTTP response head read off the wire.
type Response struct {
	Proto   string
	Status  int
	Reason  string
	Headers []Header
	Head    string // the head as received, CRLFs included
}

// Get returns the first value of the named header, or "".
func (r *Response) Get(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// hasToken reports whether the comma-separated header value v lists tok.
func hasToken(v, tok string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(part), tok) {
			return true
		}
	}
	return false
}

// readHead reads an HTTP response head from nc. It returns the head and any
// bytes read past it.
func readHead(nc net.Conn) (*Response, []byte, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxHead {
				return nil, nil, &HandshakeError{Reason: "response head larger than 16 KiB"}
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			resp, perr := parseHead(buf[:i+4])
			if perr != nil {
				return nil, nil, perr
			}
			return resp, buf[i+4:], nil
		}
		if err != nil {
			if len(buf) == 0 {
				return nil, nil, err
			}
			return nil, nil, &HandshakeError{Reason: fmt.Sprintf("connection ended inside the response head (%v)", err), Head: string(buf)}
		}
	}
}

// parseHead parses a response head that ends in CRLFCRLF.
func parseHead(b []byte) (*Response, error) {
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n\r\n"), "\r\n")
	proto, rest, _ := strings.Cut(lines[0], " ")
	code, reason, _ := strings.Cut(rest, " ")
	st, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || len(code) != 3 {
		return nil, &HandshakeError{Reason: "not an HTTP response: " + strconv.Quote(truncate(lines[0], 80)), Head: string(b)}
	}
	r := &Response{Proto: proto, Status: st, Reason: reason, Head: string(b)}
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		r.Headers = append(r.Headers, Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	return r, nil
}

// readBody reads up to limit bytes of the body that follows resp (rest holds
// what was already read). It gives up quietly on timeout or error.
func readBody(nc net.Conn, resp *Response, rest []byte, limit int, wait time.Duration) string {
	want := limit
	if cl := resp.Get("Content-Length"); cl != "" {
		if n, err := strconv.Atoi(cl); err == nil && n < want {
			want = n
		}
	} else if resp.Status == 101 || resp.Status == 204 || resp.Status == 304 {
		return ""
	}
	body := append([]byte(nil), rest...)
	nc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1024)
	for len(body) < want {
		n, err := nc.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	nc.SetReadDeadline(time.Time{})
	if len(body) > want {
		body = body[:want]
	}
	return string(body)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// handshake performs the client upgrade on nc and verifies the 101 (status,
// Upgrade, Connection, Sec-WebSocket-Accept). On success it returns the
// connection and the response; on a refusal a *HandshakeError.
func handshake(nc net.Conn, t Target, headers []Header, bufSize int) (*Conn, *Response, error) {
	key := newKey()
	if _, err := nc.Write(handshakeRequest(t, key, headers)); err != nil {
		return nil, nil, err
	}
	resp, rest, err := readHead(nc)
	if err != nil {
		return nil, nil, err
	}
	if reason := check101(resp, key); reason != "" {
		he := &HandshakeError{Status: resp.Status, Reason: reason, Head: resp.Head}
		if resp.Status != 101 {
			he.Body = readBody(nc, resp, rest, 4096, 500*time.Millisecond)
		}
		return nil, resp, he
	}
	return newConn(nc, rest, bufSize), resp, nil
}

// check101 returns "" when resp is a valid answer to an upgrade with key,
// or what is wrong with it.
func check101(resp *Response, key string) string {
	switch {
	case resp.Status != 101:
		if resp.Reason != "" {
			return resp.Reason
		}
		return "not 101 Switching Protocols"
	case !strings.EqualFold(resp.Get("Upgrade"), "websocket"):
		return "101 without Upgrade: websocket"
	case !hasToken(resp.Get("Connection"), "upgrade"):
		return "101 without Connection: Upgrade"
	case resp.Get("Sec-WebSocket-Accept") != AcceptKey(key):
		return "101 with a wrong Sec-WebSocket-Accept"
	}
	return ""
}

// errKind names the kind of a failure for the error counts.
func errKind(err error) string {
	var he *HandshakeError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		if he.Status == 0 {
			return "handshake: " + he.Reason
		}
		return fmt.Sprintf("handshake: status %d", he.Status)
	case errors.Is(err, ErrSessionUnknown):
		return "socket.io: Session ID unknown"
	case errors.As(err, new(*SocketIOError)):
		return truncate(strings.TrimPrefix(err.Error(), "bench: "), 100)
	case errors.Is(err, ErrClosed):
		return "closed by server (close frame)"
	case errors.Is(err, ErrProtocol):
		return "websocket protocol error"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by server (EOF)"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	for _, k := range []string{
		"connection refused", "connection reset by peer", "cannot assign requested address",
		"too many open files", "broken pipe", "no route to host", "network is unreachable",
	} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return truncate(s, 100)
}
