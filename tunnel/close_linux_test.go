package tunnel

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/tunnel/tlsrec"
)

// wsFrame builds a frame: masked (with a fixed key) as a client's, or not.
func wsFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var mb byte
	if masked {
		mb = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mb|byte(n))
	case n < 1<<16:
		out = append(out, mb|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mb|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// wsHeader is the header of a frame of n payload bytes (for payloads
// written separately).
func wsHeader(op byte, n int, masked bool) []byte {
	h := wsFrame(true, op, nil, false)
	h = h[:1]
	var mb byte
	if masked {
		mb = 0x80
	}
	switch {
	case n < 126:
		h = append(h, mb|byte(n))
	case n < 1<<16:
		h = append(h, mb|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, mb|127)
		h = binary.BigEndian.AppendUint64(h, uint64(n))
	}
	if masked {
		h = append(h, 0, 0, 0, 0) // a zero key: the payload goes as it is
	}
	return h
}

// rawFrame is a frame as a test peer read it (payload unmasked).
type rawFrame struct {
	fin     bool
	op      byte
	masked  bool
	payload []byte
}

func (f rawFrame) closeCode() uint16 {
	if f.op != 8 || len(f.payload) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(f.payload)
}

// readFrame reads one frame from r.
func readFrame(r io.Reader) (rawFrame, error) {
	var h [14]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return f, io.ErrUnexpectedEOF
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return f, io.ErrUnexpectedEOF
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return f, io.ErrUnexpectedEOF
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, io.ErrUnexpectedEOF
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i&3]
		}
	}
	return f, nil
}

// readFramesToEOF reads frames from c until EOF (which must come at a frame
// boundary), within 10 s.
func readFramesToEOF(tb testing.TB, c io.Reader) []rawFrame {
	tb.Helper()
	out, err := framesToEOF(c)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// framesToEOF is readFramesToEOF for other goroutines than the test's.
func framesToEOF(c io.Reader) ([]rawFrame, error) {
	if d, ok := c.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
	br := bufio.NewReader(c)
	var out []rawFrame
	for {
		f, err := readFrame(br)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("after %d frames: %w", len(out), err)
		}
		out = append(out, f)
	}
}

// expectClose checks that frames ends with exactly one close frame, of code
// and masking as given, and returns the frames before it.
func expectClose(tb testing.TB, who string, frames []rawFrame, code uint16, masked bool) []rawFrame {
	tb.Helper()
	if len(frames) == 0 {
		tb.Fatalf("%s: no close frame (nothing at all)", who)
	}
	last := frames[len(frames)-1]
	if last.op != 8 || last.closeCode() != code || last.masked != masked || !last.fin || len(last.payload) != 2 {
		tb.Fatalf("%s: last frame op %d code %d masked %v (%d bytes), want a close %d masked %v", who, last.op, last.closeCode(), last.masked, len(last.payload), code, masked)
	}
	for _, f := range frames[:len(frames)-1] {
		if f.op == 8 {
			tb.Fatalf("%s: two close frames", who)
		}
	}
	return frames[:len(frames)-1]
}

// counter reads one of e's metrics.
func counter(tb testing.TB, e *Engine, name string) int {
	tb.Helper()
	var b bytes.Buffer
	e.Metrics().WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	tb.Fatalf("no metric %s in\n%s", name, b.String())
	return 0
}

const (
	metricFrames1012   = `wsgate_tunnel_close_frames_total{to="client",code="1012"}`
	metricFrames1001   = `wsgate_tunnel_close_frames_total{to="client",code="1001"}`
	metricFramesBack   = `wsgate_tunnel_close_frames_total{to="backend",code="1001"}`
	metricFallbacks    = `wsgate_tunnel_close_fallbacks_total`
	metricRebalanceEnd = `wsgate_tunnel_closes_total{reason="rebalance"}`
)

// dirState returns the frame tracker and held bytes of the tunnel's
// direction from side s (the only open tunnel on e).
func (e *Engine) dirState(s Side) (f frames, held int64, closing Reason) {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	e.run(func(l *loop) {
		<-ch
		defer func() { ch <- struct{}{} }()
		for ci := range l.chunks {
			for j := range l.chunks[ci] {
				if t := &l.chunks[ci][j]; t.open {
					f, held, closing = t.dir[s].frames, t.dir[s].held(), t.closing
				}
			}
		}
	})
	return
}

// A rebalance close with a real client library: gorilla's client, after a
// handshake whose 101 the engine writes (with the backend's first frame
// behind it), reads every message the backend sent, then a close frame
// 1012; the backend reads every message the client sent, then a masked
// close 1001, then EOF; Stats say rebalance and 1012.
func TestRebalanceCloseGorillaClient(t *testing.T) {
	e := newEngine(t, Config{Tick: 20 * time.Millisecond})
	r := newRig(t)
	client, err := net.Dial("tcp", r.front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	proxyClient, err := r.front.Accept()
	if err != nil {
		t.Fatal(err)
	}
	proxyBackend, err := net.Dial("tcp", r.back.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	backend, err := r.back.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()

	type dialed struct {
		c   *websocket.Conn
		err error
	}
	dc := make(chan dialed, 1)
	go func() {
		u, _ := url.Parse("ws://example.test/chat")
		c, _, err := websocket.NewClient(client, u, nil, 1024, 1024)
		dc <- dialed{c, err}
	}()
	// The proxy side reads the request head; the engine will write the 101.
	br := bufio.NewReader(proxyClient)
	var key string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if k, ok := strings.CutPrefix(strings.ToLower(line), "sec-websocket-key:"); ok {
			key = strings.TrimSpace(line[len(line)-len(k):])
		}
		if line == "\r\n" {
			break
		}
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	toClient := append([]byte(head), wsFrame(true, 1, []byte("first, behind the 101"), false)...)
	toBackend := wsFrame(true, 1, []byte("pipelined"), true)
	var st atomic.Pointer[Stats]
	stats := make(chan Stats, 1)
	before := time.Now()
	if err := e.AddTagged(42, dupFd(t, proxyClient), dupFd(t, proxyBackend), toBackend, toClient, func(s Stats) { st.Store(&s); stats <- s }); err != nil {
		t.Fatal(err)
	}
	d := <-dc
	if d.err != nil {
		t.Fatal(d.err)
	}
	ws := d.c
	// Traffic both ways, fragmented with a ping in between from the backend.
	for _, m := range []string{"one", strings.Repeat("two", 1000)} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var out []byte
	out = append(out, wsFrame(false, 2, bytes.Repeat([]byte{7}, 300), false)...)
	out = append(out, wsFrame(true, 9, []byte("ping"), false)...)
	out = append(out, wsFrame(true, 0, bytes.Repeat([]byte{8}, 70000), false)...)
	if _, err := backend.Write(out); err != nil {
		t.Fatal(err)
	}
	// The client reads the first message and the fragmented one (gorilla
	// answers the ping with a pong, toward the backend).
	for i, want := range []int{len("first, behind the 101"), 70300} {
		_, msg, err := ws.ReadMessage()
		if err != nil || len(msg) != want {
			t.Fatalf("message %d: %d bytes, %v; want %d", i, len(msg), err, want)
		}
	}
	// Everything the client sent has been relayed (the tracker is at a
	// boundary and nothing is held) before the close starts; so has the pong.
	eventually(t, 5*time.Second, "the client's frames relayed", func() bool {
		f, held, _ := e.dirState(SideClient)
		return held == 0 && f.boundary() && f.rem == 0
	})
	if n := e.CloseTaggedBefore(42, time.Now(), 5, Rebalance); n != 1 {
		t.Fatalf("CloseTaggedBefore = %d, want 1", n)
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("client: %v, want a close error 1012", err)
	}
	// gorilla answers the close with its own (dropped: the direction ended)
	// and closes; the backend reads the frames, our 1001, then EOF.
	ws.Close()
	frames := readFramesToEOF(t, backend)
	data := expectClose(t, "backend", frames, CodeGoingAway, true)
	var got []string
	var msg []byte
	for _, f := range data {
		if !f.masked {
			t.Fatalf("backend got an unmasked frame")
		}
		if f.op == 10 {
			continue // the pong
		}
		msg = append(msg, f.payload...) // gorilla fragments at its buffer size
		if f.fin {
			got = append(got, string(msg))
			msg = nil
		}
	}
	if len(got) != 3 || got[0] != "pipelined" || got[1] != "one" || got[2] != strings.Repeat("two", 1000) {
		t.Fatalf("backend got %d messages: %q", len(got), got)
	}
	backend.Close()
	s := waitStats(t, stats)
	if s.Reason != Rebalance || s.CloseCode != CodeServiceRestart || s.Reason.String() != "rebalance" {
		t.Fatalf("stats %+v, want rebalance with 1012", s)
	}
	if s.Duration < 0 || time.Since(before) < s.Duration {
		t.Fatalf("duration %v", s.Duration)
	}
	if counter(t, e, metricFrames1012) != 1 || counter(t, e, metricFramesBack) != 1 || counter(t, e, metricFallbacks) != 0 || counter(t, e, metricRebalanceEnd) != 1 {
		t.Fatal("metrics: want one frame each way, no fallback, one rebalance close")
	}
}

func waitStats(tb testing.TB, c chan Stats) Stats {
	tb.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(10 * time.Second):
		tb.Fatal("tunnel not closed after 10s")
		return Stats{}
	}
}

// A close requested in the middle of a big frame, in both directions,
// waits for the frame's end; the frame behind it is not relayed; each peer
// reads the whole frame, then the close frame.
func TestCloseWaitsForFrameEnd(t *testing.T) {
	for _, splice := range []int{0, -1} {
		t.Run(map[bool]string{true: "splice", false: "buffers"}[splice == 0], func(t *testing.T) {
			e := newEngine(t, Config{SpliceMin: splice, Tick: 20 * time.Millisecond, CloseBoundaryWait: time.Minute})
			p := newRig(t).newPair(t, e, nil, nil)
			const size = 1 << 20
			payload := make([]byte, size)
			pattern(payload, 0)
			// Half of a frame each way.
			p.client.Write(wsHeader(2, size, true))
			p.client.Write(payload[:size/2])
			p.backend.Write(wsHeader(2, size, false))
			p.backend.Write(payload[:size/2])
			eventually(t, 5*time.Second, "both halves read", func() bool {
				c, _, _ := e.dirState(SideClient)
				b, _, _ := e.dirState(SideBackend)
				return c.rem == size/2 && b.rem == size/2
			})
			if n := e.CloseTaggedBefore(0, time.Now(), 1, Rebalance); n != 1 {
				t.Fatalf("CloseTaggedBefore = %d", n)
			}
			if _, _, closing := e.dirState(SideClient); closing != Rebalance {
				t.Fatal("not closing")
			}
			p.notClosed(t)
			type res struct {
				frames []rawFrame
				err    error
			}
			cres, bres := make(chan res, 1), make(chan res, 1)
			go func() { f, err := framesToEOF(p.client); cres <- res{f, err} }()
			go func() { f, err := framesToEOF(p.backend); bres <- res{f, err} }()
			// The rest, and a frame that comes after the boundary.
			go func() {
				p.client.Write(payload[size/2:])
				p.client.Write(wsFrame(true, 1, []byte("late"), true))
				p.client.CloseWrite()
			}()
			go func() {
				p.backend.Write(payload[size/2:])
				p.backend.Write(wsFrame(true, 1, []byte("late"), false))
				p.backend.CloseWrite()
			}()
			for who, c := range map[string]chan res{"client": cres, "backend": bres} {
				r := <-c
				if r.err != nil {
					t.Fatalf("%s: %v", who, r.err)
				}
				data := expectClose(t, who, r.frames, map[string]uint16{"client": CodeServiceRestart, "backend": CodeGoingAway}[who], who == "backend")
				if len(data) != 1 || !bytes.Equal(data[0].payload, payload) {
					t.Fatalf("%s: %d frames before the close, want the whole 1 MiB frame", who, len(data))
				}
			}
			st := p.wait(t, 10*time.Second)
			if st.Reason != Rebalance || st.CloseCode != CodeServiceRestart {
				t.Fatalf("stats %+v", st)
			}
			if counter(t, e, metricFallbacks) != 0 {
				t.Fatal("fallback counted")
			}
		})
	}
}

// A direction stalled in the middle of a frame: the client gets its close
// frame at once (its direction is at a boundary), the tunnel falls back to
// a plain close after CloseBoundaryWait (fake clock), and that is counted.
// Stalled the other way, the client gets no frame (CloseCode 0).
func TestCloseStalledFallsBack(t *testing.T) {
	for _, stalled := range []Side{SideClient, SideBackend} {
		t.Run(stalled.String(), func(t *testing.T) {
			clk := newFakeClock()
			e := newEngine(t, Config{Tick: time.Second, Now: clk.Now, CloseBoundaryWait: 3 * time.Second})
			p := newRig(t).newPair(t, e, nil, nil)
			src, dst := p.client, p.backend
			if stalled == SideBackend {
				src, dst = p.backend, p.client
			}
			src.Write(wsHeader(2, 1000, stalled == SideClient))
			src.Write(make([]byte, 10))
			io.ReadFull(dst, make([]byte, len(wsHeader(2, 1000, stalled == SideClient))+10))
			e.tick()
			if n := e.CloseTaggedBefore(0, clk.Now().Add(time.Nanosecond), 1, Rebalance); n != 1 {
				t.Fatalf("CloseTaggedBefore = %d", n)
			}
			other := p.client // gets its frame from the direction that is at a boundary
			if stalled == SideBackend {
				other = p.backend
			}
			// The direction that is at a boundary got its frame.
			other.SetReadDeadline(time.Now().Add(5 * time.Second))
			f, err := readFrame(other)
			if err != nil || f.op != 8 {
				t.Fatalf("no close frame on the other side: %v", err)
			}
			for range 3 { // 3 s: not over yet
				clk.Advance(time.Second)
				e.tick()
			}
			p.notClosed(t)
			clk.Advance(time.Second)
			e.tick()
			st := p.wait(t, 5*time.Second)
			wantCode := CodeServiceRestart
			if stalled == SideBackend {
				wantCode = 0
			}
			if st.Reason != Rebalance || st.CloseCode != wantCode || st.Duration != 4*time.Second {
				t.Fatalf("stats %+v, want rebalance, code %d, after 4s", st, wantCode)
			}
			if counter(t, e, metricFallbacks) != 1 {
				t.Fatal("fallback not counted")
			}
		})
	}
}

// An untrackable stream (not WebSocket framing) gets a plain close at once,
// counted as a fallback.
func TestCloseUntrackableFallsBack(t *testing.T) {
	e := newEngine(t, Config{})
	p := newRig(t).newPair(t, e, nil, nil)
	p.client.Write([]byte("GET / HTTP/1.1\r\n")) // 'G': opcode 7, reserved
	io.ReadFull(p.backend, make([]byte, 16))
	if n := e.CloseTaggedBefore(0, time.Now(), 1, Rebalance); n != 1 {
		t.Fatalf("CloseTaggedBefore = %d", n)
	}
	st := p.wait(t, 5*time.Second)
	if st.Reason != Rebalance || st.CloseCode != 0 || counter(t, e, metricFallbacks) != 1 {
		t.Fatalf("stats %+v, fallbacks %d", st, counter(t, e, metricFallbacks))
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(p.client); len(b) != 0 {
		t.Fatalf("client read % x, %v; want nothing", b, err)
	}
}

// Bulk frames of 16 MiB are relayed intact through splice (most bytes
// spliced), and a close requested in the middle of one waits for its end.
func TestCloseSpliceBulkFrames(t *testing.T) {
	e := newEngine(t, Config{Tick: 20 * time.Millisecond, CloseBoundaryWait: time.Minute})
	p := newRig(t).newPair(t, e, nil, nil)
	const size = 16 << 20
	payload := make([]byte, size)
	pattern(payload, 0)
	go func() {
		for range 2 {
			p.client.Write(wsHeader(2, size, true))
			p.client.Write(payload)
		}
		p.client.Write(wsHeader(2, size, true)) // a third frame, half of it
		p.client.Write(payload[:size/2])
	}()
	br := bufio.NewReaderSize(p.backend, 1<<20)
	for i := range 2 {
		f, err := readFrame(br)
		if err != nil || !bytes.Equal(f.payload, payload) {
			t.Fatalf("frame %d: %v (%d bytes)", i, err, len(f.payload))
		}
	}
	spliced := counter(t, e, "wsgate_tunnel_splice_bytes_total")
	if spliced < size {
		t.Fatalf("%d bytes spliced of %d relayed", spliced, 2*size)
	}
	eventually(t, 10*time.Second, "the third frame started", func() bool {
		f, _, _ := e.dirState(SideClient)
		return f.inPayload() && f.rem < size
	})
	if n := e.CloseTaggedBefore(0, time.Now(), 1, Rebalance); n != 1 {
		t.Fatal("not started")
	}
	go func() {
		p.client.Write(payload[size/2:])
		p.client.Write(wsFrame(true, 1, []byte("late"), true))
	}()
	frames := readFramesToEOF(t, br)
	data := expectClose(t, "backend", frames, CodeGoingAway, true)
	if len(data) != 1 || !bytes.Equal(data[0].payload, payload) {
		t.Fatalf("backend: %d frames before the close, want the third whole", len(data))
	}
	p.backend.Close()
	p.client.Close()
	if st := p.wait(t, 10*time.Second); st.Reason != Rebalance || st.CloseCode != CodeServiceRestart {
		t.Fatalf("stats %+v", st)
	}
	if spliced := counter(t, e, "wsgate_tunnel_splice_bytes_total"); spliced < 2*size {
		t.Fatalf("%d bytes spliced of %d relayed", spliced, 3*size)
	}
}

// A TLS tunnel: the client gets the close frame sealed as application data,
// then close_notify; the backend a masked 1001.
func TestCloseFramesTLS(t *testing.T) {
	e := newEngine(t, Config{Tick: 20 * time.Millisecond})
	r := newRig(t)
	head := "HTTP/1.1 101 Switching Protocols\r\n\r\n"
	p, rc := r.newTLSPair(t, e, tls.TLS_AES_128_GCM_SHA256, nil, append([]byte(head), wsFrame(true, 1, []byte("hi"), false)...), nil)
	got := rc.readData(t, len(head)+4)
	if string(got[len(head):]) != "\x81\x02hi" {
		t.Fatalf("client got %q", got)
	}
	rc.send(t, tlsrec.TypeApplicationData, wsFrame(true, 2, []byte("from the client"), true))
	p.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := readFrame(p.backend); err != nil || string(f.payload) != "from the client" {
		t.Fatalf("backend: %v", err)
	}
	if n := e.CloseTaggedBefore(0, time.Now(), 1, Rebalance); n != 1 {
		t.Fatal("not started")
	}
	typ, content, err := rc.next(t)
	if err != nil || typ != tlsrec.TypeApplicationData || string(content) != "\x88\x02\x03\xf4" {
		t.Fatalf("client: record %d % x, %v; want the close frame 1012", typ, content, err)
	}
	typ, content, err = rc.next(t)
	if err != nil || typ != tlsrec.TypeAlert || content[1] != tlsrec.AlertCloseNotify {
		t.Fatalf("client: record %d % x, %v; want close_notify", typ, content, err)
	}
	expectClose(t, "backend", readFramesToEOF(t, p.backend), CodeGoingAway, true)
	p.client.Close()
	p.backend.Close()
	if st := p.wait(t, 5*time.Second); st.Reason != Rebalance || st.CloseCode != CodeServiceRestart {
		t.Fatalf("stats %+v", st)
	}
}

// CloseTaggedBefore closes only tunnels of its tag added before the time
// given, at most n of them, and not again those already closing.
func TestCloseTaggedBeforeSparesNewer(t *testing.T) {
	clk := newFakeClock()
	e := newEngine(t, Config{Tick: time.Second, Now: clk.Now, CloseFinWait: time.Hour})
	r := newRig(t)
	add := func(tag uint64) *pair {
		p, cfd, bfd := r.conns(t)
		if err := e.AddTagged(tag, cfd, bfd, nil, nil, p.done); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.close)
		return p
	}
	old := []*pair{add(7), add(7), add(7)}
	other := add(8)
	clk.Advance(time.Second)
	cut := clk.Now()
	newer := add(7) // added at cut: spared
	e.tick()
	if n := e.CloseTaggedBefore(7, cut, 2, Rebalance); n != 2 {
		t.Fatalf("CloseTaggedBefore(n=2) = %d", n)
	}
	// The two are lingering (CloseFinWait of an hour): not counted again.
	if n := e.CloseTaggedBefore(7, cut, 5, Rebalance); n != 1 {
		t.Fatalf("second CloseTaggedBefore = %d, want 1", n)
	}
	if n := e.CloseTaggedBefore(7, cut, 5, Rebalance); n != 0 {
		t.Fatalf("third CloseTaggedBefore = %d, want 0", n)
	}
	for _, p := range old {
		f, err := readFrame(p.client)
		if err != nil || f.closeCode() != CodeServiceRestart {
			t.Fatalf("old tunnel's client: %v", err)
		}
		p.client.Close() // FIN (and a reset): the tunnel ends
		p.backend.Close()
		if st := p.wait(t, 5*time.Second); st.Reason != Rebalance || st.CloseCode != CodeServiceRestart {
			t.Fatalf("stats %+v", st)
		}
	}
	newer.notClosed(t)
	other.notClosed(t)
	if e.Len() != 2 {
		t.Fatalf("Len = %d, want 2", e.Len())
	}
	if n := e.CloseTaggedBefore(7, cut, 0, Rebalance); n != 0 {
		t.Fatal("n = 0 closed something")
	}
}

// The idle timeout sends 1001 both ways, and closes once the peers answer
// with their FIN.
func TestIdleTimeoutSendsGoingAway(t *testing.T) {
	clk := newFakeClock()
	e := newEngine(t, Config{IdleTimeout: 10 * time.Second, Tick: time.Second, Now: clk.Now})
	p := newRig(t).newPair(t, e, wsFrame(true, 1, []byte("hello"), true), []byte("HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00"))
	e.tick()
	clk.Advance(11 * time.Second)
	e.tick()
	br := bufio.NewReader(p.client)
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("client: %q", line)
	}
	br.ReadString('\n')
	if f, err := readFrame(br); err != nil || f.op != 1 {
		t.Fatalf("client: %v", err)
	}
	expectClose(t, "client", readFramesToEOF(t, br), CodeGoingAway, false)
	data := expectClose(t, "backend", readFramesToEOF(t, p.backend), CodeGoingAway, true)
	if len(data) != 1 || string(data[0].payload) != "hello" {
		t.Fatalf("backend: %d frames", len(data))
	}
	p.notClosed(t) // lingering until the peers finish
	p.client.CloseWrite()
	p.backend.CloseWrite()
	st := p.wait(t, 5*time.Second)
	if st.Reason != IdleTimeout || st.CloseCode != CodeGoingAway || st.Duration != 11*time.Second {
		t.Fatalf("stats %+v", st)
	}
	if counter(t, e, metricFrames1001) != 1 {
		t.Fatal("1001 not counted")
	}
}

// The peers never send FIN: the tunnel closes after CloseFinWait.
func TestCloseFinWaitBounded(t *testing.T) {
	clk := newFakeClock()
	e := newEngine(t, Config{Tick: time.Second, Now: clk.Now, CloseFinWait: 2 * time.Second})
	p := newRig(t).newPair(t, e, nil, nil)
	e.tick()
	e.CloseTaggedBefore(0, clk.Now().Add(time.Second), 1, Rebalance)
	readFrame(p.client)
	readFrame(p.backend)
	clk.Advance(2 * time.Second)
	e.tick()
	p.notClosed(t)
	clk.Advance(time.Second)
	e.tick()
	if st := p.wait(t, 5*time.Second); st.Reason != Rebalance || st.CloseCode != CodeServiceRestart || st.Duration != 3*time.Second {
		t.Fatalf("stats %+v", st)
	}
}

// CloseAll is prompt: frames where both directions are at a boundary, a
// plain close (counted) where one is mid-frame.
func TestCloseAllPrompt(t *testing.T) {
	e := newEngine(t, Config{Loops: 1, CloseBoundaryWait: time.Hour, CloseFinWait: time.Hour})
	r := newRig(t)
	clean := r.newPair(t, e, nil, nil)
	mid := r.newPair(t, e, nil, nil)
	mid.client.Write(wsHeader(2, 100, true))
	io.ReadFull(mid.backend, make([]byte, len(wsHeader(2, 100, true))))
	e.CloseAll()
	for _, p := range []*pair{clean, mid} {
		select {
		case st := <-p.stats:
			if st.Reason != Shutdown {
				t.Fatalf("reason %v", st.Reason)
			}
			if want := map[bool]uint16{true: CodeServiceRestart, false: 0}[p == clean]; st.CloseCode != want {
				t.Fatalf("close code %d, want %d", st.CloseCode, want)
			}
		default:
			t.Fatal("CloseAll returned before done ran")
		}
	}
	expectClose(t, "client", readFramesToEOF(t, clean.client), CodeServiceRestart, false)
	expectClose(t, "backend", readFramesToEOF(t, clean.backend), CodeGoingAway, true)
	if counter(t, e, metricFallbacks) != 1 {
		t.Fatal("fallback not counted")
	}
}
