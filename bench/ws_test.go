package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
)

func TestAcceptKeyRFC6455Example(t *testing.T) {
	if got := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatal(got)
	}
}

func TestMaskBytesMatchesBytewise(t *testing.T) {
	for n := range 40 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		want := bytes.Clone(p)
		key := uint32(0xA1B2C3D4)
		var k [4]byte
		binary.LittleEndian.PutUint32(k[:], key)
		for i := range want {
			want[i] ^= k[i%4]
		}
		maskBytes(p, key)
		if !bytes.Equal(p, want) {
			t.Fatalf("n=%d: %x want %x", n, p, want)
		}
	}
}

// frame builds a server frame.
func frame(fin bool, op byte, payload []byte, mask bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, m|byte(n))
	case n <= 0xFFFF:
		out = append(out, m|126, byte(n>>8), byte(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := bytes.Clone(payload)
	if mask {
		out = append(out, 1, 2, 3, 4)
		maskBytes(p, binary.LittleEndian.Uint32([]byte{1, 2, 3, 4}))
	}
	return append(out, p...)
}

// readFrames feeds raw bytes to a Conn and returns what ReadMessage gives,
// and what the Conn wrote back (pongs, close).
func readFrames(t *testing.T, raw []byte, collect bool) (msgs []string, written []byte, err error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() { b.Write(raw); b.Close() }()
	var out bytes.Buffer
	done := make(chan struct{})
	c := newConn(&teeConn{Conn: a, w: &out, done: done}, nil, 16) // small buffer: forces growth and refills
	for {
		_, n, p, e := c.ReadMessage(collect)
		if e != nil {
			return msgs, out.Bytes(), e
		}
		if collect {
			msgs = append(msgs, string(p))
		} else {
			msgs = append(msgs, string(rune('0'+n%10)))
		}
	}
}

// teeConn records writes instead of sending them (net.Pipe would block).
type teeConn struct {
	net.Conn
	w    *bytes.Buffer
	done chan struct{}
}

func (c *teeConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func TestReadMessageFrames(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 70000)
	var raw []byte
	raw = append(raw, frame(true, opText, []byte("hello"), false)...)
	raw = append(raw, frame(false, opBinary, []byte("frag"), false)...)
	raw = append(raw, frame(true, opPing, []byte("p"), false)...) // between fragments
	raw = append(raw, frame(true, opContinuation, []byte("ment"), true)...)
	raw = append(raw, frame(true, opBinary, big[:300], false)...)
	raw = append(raw, frame(true, opBinary, big, false)...)
	raw = append(raw, frame(true, opClose, []byte{0x03, 0xE9}, false)...)
	msgs, written, err := readFrames(t, raw, true)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v", err)
	}
	if len(msgs) != 4 || msgs[0] != "hello" || msgs[1] != "fragment" || len(msgs[2]) != 300 || len(msgs[3]) != 70000 {
		t.Fatalf("messages %d: %q %q", len(msgs), msgs[0], msgs[1])
	}
	// Written back: a masked pong "p", then a masked close echoing 1001.
	if len(written) != 2+4+1+2+4+2 || written[0] != 0x8A || written[7] != 0x88 {
		t.Fatalf("written %x", written)
	}
	// Discarding gives the same lengths without keeping payloads.
	msgs, _, _ = readFrames(t, raw, false)
	if len(msgs) != 4 {
		t.Fatalf("discard: %d messages", len(msgs))
	}
}

func TestReadMessageRejectsBadFrames(t *testing.T) {
	for name, raw := range map[string][]byte{
		"rsv bits":              {0xC1, 0x00},
		"continuation first":    frame(true, opContinuation, []byte("x"), false),
		"fragmented control":    frame(false, opPing, nil, false),
		"long control":          frame(true, opPing, make([]byte, 126), false),
		"new message mid-frag":  append(frame(false, opText, []byte("a"), false), frame(true, opText, []byte("b"), false)...),
		"unknown control 0xB":   frame(true, 0xB, nil, false),
		"unknown data opcode 3": frame(true, 0x3, nil, false),
	} {
		if _, _, err := readFrames(t, raw, true); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err %v, want ErrProtocol", name, err)
		}
	}
}

func TestCheck101(t *testing.T) {
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	ok := func() *Response {
		return &Response{Status: 101, Headers: []Header{{"Upgrade", "websocket"}, {"Connection", "keep-alive, Upgrade"}, {"Sec-WebSocket-Accept", AcceptKey(key)}}}
	}
	if r := check101(ok(), key); r != "" {
		t.Fatalf("valid 101 refused: %s", r)
	}
	bad := ok()
	bad.Headers[2].Value = "nope"
	if r := check101(bad, key); r != "101 with a wrong Sec-WebSocket-Accept" {
		t.Error(r)
	}
	bad = ok()
	bad.Headers[1].Value = "close"
	if r := check101(bad, key); r != "101 without Connection: Upgrade" {
		t.Error(r)
	}
	if _, err := parseHead([]byte("SSH-2.0-OpenSSH\r\n\r\n")); err == nil {
		t.Error("parsed a non-HTTP answer")
	}
}
