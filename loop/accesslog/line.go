package accesslog

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/bytebufferpool"
)

// Line is one JSON object being built into a pooled buffer: Log.Line
// starts it with the time and the type, its methods add one field each,
// and Log.Submit ends it and hands it to the writer. One goroutine builds
// a Line; none of its methods allocates once the buffer has grown to the
// lines' usual size.
//
// Keys are the caller's literals, written as they are: plain ASCII names
// that need no escaping. Values are escaped.
type Line struct{ b *bytebufferpool.ByteBuffer }

// timeLayout is RFC 3339 in UTC with microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Line starts a line of type typ (a plain ASCII name, as a key), stamped
// with the current time (UTC, microseconds):
//
//	{"time":"2025-01-02T15:04:05.123456Z","type":"request"
func (l *Log) Line(typ string) Line {
	b := l.get()
	b.B = append(b.B, `{"time":"`...)
	b.B = time.Now().UTC().AppendFormat(b.B, timeLayout)
	b.B = append(b.B, `","type":"`...)
	b.B = append(b.B, typ...)
	b.B = append(b.B, '"')
	return Line{b}
}

func (ln *Line) key(k string) {
	ln.b.B = append(ln.b.B, ',', '"')
	ln.b.B = append(ln.b.B, k...)
	ln.b.B = append(ln.b.B, '"', ':')
}

// lineSlack is room for the rest of a line after a long value.
const lineSlack = 256

// reserve makes room for n more bytes and the rest of the line when the
// buffer lacks them: a line longer than the pool's buffers (a long path)
// then costs one allocation of about its size, not a series of doublings.
func (ln *Line) reserve(n int) {
	if b := ln.b.B; cap(b)-len(b) < n {
		ln.b.B = slices.Grow(b, n+lineSlack)
	}
}

// ByteString adds key with v as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD. For bytes that
// came from the network (a host, a path).
func (ln *Line) ByteString(key string, v []byte) {
	ln.reserve(len(key) + len(v) + 6)
	ln.key(key)
	ln.b.B = appendString(ln.b.B, v)
}

// String adds key with v as a JSON string, escaped as ByteString does.
func (ln *Line) String(key, v string) {
	ln.ByteString(key, unsafe.Slice(unsafe.StringData(v), len(v)))
}

// Int adds key with the number v.
func (ln *Line) Int(key string, v int64) {
	ln.key(key)
	ln.b.B = strconv.AppendInt(ln.b.B, v, 10)
}

// Millis adds key with d in milliseconds, to the microsecond
// ("duration_ms":1.234).
func (ln *Line) Millis(key string, d time.Duration) {
	ln.key(key)
	ln.b.B = strconv.AppendFloat(ln.b.B, float64(d.Microseconds())/1000, 'f', 3, 64)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD (one for each
// byte that starts no valid sequence).
func appendString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return append(b, '"')
}
