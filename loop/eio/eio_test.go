package eio

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseEIOTarget(t *testing.T) {
	for _, tc := range []struct {
		target                      string
		path, eio, jsonp, websocket bool
		sid                         string // "-" when absent
	}{
		{"/socket.io/?EIO=4&transport=polling&t=OxYz", true, true, false, false, "-"},
		{"/socket.io/?EIO=4&transport=polling&t=OxYz&sid=abc.TOKEN", true, true, false, false, "abc.TOKEN"},
		{"/socket.io/?EIO=4&transport=websocket&sid=abc", true, true, false, true, "abc"},
		{"/socket.io/?EIO=4&transport=websocket", true, true, false, true, "-"},
		{"/socket.io/?EIO=3&transport=polling&j=0", true, true, true, false, "-"},
		{"/socket.io", true, false, false, false, "-"},
		{"/app/socket.io/", true, false, false, false, "-"},
		{"/socket.io.js", false, false, false, false, "-"},
		{"/notsocket.io/?x=1", false, false, false, false, "-"},
		{"/rt/?EIO=4&sid=&transport=polling", false, true, false, false, ""},
		{"/rt/?sid=first&sid=second", false, false, false, false, "first"},
		{"/rt/?xsid=1&sidx=2&EIOx=3", false, false, false, false, "-"},
		{"/rt/?sid=a#frag&EIO=4", false, false, false, false, "a"},
		{"/?", false, false, false, false, "-"},
		{"http://h.example/socket.io/?EIO=4&sid=z", true, true, false, false, "z"},
	} {
		q := ParseTarget([]byte(tc.target))
		sid := "-"
		if q.HasSID {
			sid = tc.target[q.SIDStart:q.SIDEnd]
		}
		if q.Path != tc.path || q.EIO != tc.eio || q.JSONP != tc.jsonp || q.WebSocket != tc.websocket || sid != tc.sid {
			t.Errorf("%s: path %v eio %v jsonp %v websocket %v sid %q; want %v %v %v %v %q", tc.target,
				q.Path, q.EIO, q.JSONP, q.WebSocket, sid, tc.path, tc.eio, tc.jsonp, tc.websocket, tc.sid)
		}
	}
}

const eio4Open = `0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
const eio3Open = `0{"sid":"Q2dgaK5XAL-zsuWuAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}`

func TestTagHandshake(t *testing.T) {
	tok := []byte("AbCdEfGh-_01")
	bin := func(pkts ...string) string { // Engine.IO 3 binary payload of string packets
		var b []byte
		for _, p := range pkts {
			b = append(b, 0)
			for _, d := range fmt.Sprint(len(p)) {
				b = append(b, byte(d-'0'))
			}
			b = append(b, 0xff)
			b = append(b, p...)
		}
		return string(b)
	}
	tagged4 := strings.Replace(eio4Open, "AAAC\"", "AAAC.AbCdEfGh-_01\"", 1)
	tagged3 := strings.Replace(eio3Open, "AAAA\"", "AAAA.AbCdEfGh-_01\"", 1)
	for _, tc := range []struct {
		name, body, want, sid string
		ttl                   time.Duration
	}{
		{"v4", eio4Open, tagged4, "lv_VI97HAXpY6yYWAAAC", 45 * time.Second},
		{"v4 batched", eio4Open + "\x1e40", tagged4 + "\x1e40", "lv_VI97HAXpY6yYWAAAC", 45 * time.Second},
		{"v3 text", fmt.Sprintf("%d:%s2:40", len(eio3Open), eio3Open), fmt.Sprintf("%d:%s2:40", len(tagged3), tagged3), "Q2dgaK5XAL-zsuWuAAAA", 30 * time.Second},
		{"v3 binary", bin(eio3Open, "40"), bin(tagged3, "40"), "Q2dgaK5XAL-zsuWuAAAA", 30 * time.Second},
		{"no ping fields", `0{"sid":"x"}`, `0{"sid":"x.AbCdEfGh-_01"}`, "x", 0},
	} {
		out, sid, ttl, ok := TagHandshake([]byte("keep"), []byte(tc.body), tok)
		if !ok || string(out) != "keep"+tc.want || string(sid) != tc.sid || ttl != tc.ttl {
			t.Errorf("%s: ok %v sid %q ttl %v\n got %q\nwant %q", tc.name, ok, sid, ttl, out, "keep"+tc.want)
		}
	}
	for _, bad := range []string{
		"", "ok", "40", `0{"upgrades":[]}`, `0{"sid":""}`, `0{"sid":"a\"b"}`, `0{"sid":"unterminated`,
		`0{"sid":"has space"}`, "97:" + eio3Open, "5:0{\"s\"", ":0{}", "2:40", `{"sid":"x"}`,
		"\x00\x02\xff40", "\x00\xff0{}", `<html>0{"sid":"x"}</html>`,
		`0{"sid":"` + strings.Repeat("a", MaxSIDLen+1) + `"}`,
	} {
		if out, _, _, ok := TagHandshake([]byte("keep"), []byte(bad), tok); ok || string(out) != "keep" {
			t.Errorf("%q tagged: %q", bad, out)
		}
	}
}
