package http1

import (
	"strings"
	"testing"
)

func benchParse(b *testing.B, raw string) {
	buf := []byte(raw)
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := r.Parse(buf, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	b.Run("browser-GET", func(b *testing.B) { benchParse(b, browserGET) })
	b.Run("websocket", func(b *testing.B) { benchParse(b, wsHandshake) })
	// A path that must be normalized (the buffer is reused: no allocation).
	b.Run("normalize-path", func(b *testing.B) {
		benchParse(b, strings.Replace(wsHandshake, "GET /chat ", "GET /%61pi/./v1/%2E%2E/%63hat?x=%2f ", 1))
	})
}

func BenchmarkParseResponse(b *testing.B) {
	buf := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 21 Nov 2025 19:48:00 GMT\r\nContent-Type: application/json\r\n" +
		"Content-Length: 1234\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\nVary: Accept-Encoding\r\n\r\n")
	var r Response
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := r.Parse(buf, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	for _, tc := range []struct{ name, raw string }{{"browser-GET", browserGET}, {"websocket", wsHandshake}} {
		b.Run(tc.name, func(b *testing.B) {
			buf := []byte(tc.raw)
			var r Request
			if err := r.Parse(buf, nil); err != nil {
				b.Fatal(err)
			}
			fw := &Forward{ClientIP: []byte("192.0.2.10"), Proto: "https"}
			dst := make([]byte, 0, MaxAppendRequest(&r, fw))
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				dst = AppendRequest(dst[:0], buf, &r, fw)
			}
		})
	}
}

func BenchmarkChunkScanner(b *testing.B) {
	// 64 KiB body in 4 KiB chunks, as a streaming backend sends it.
	var body []byte
	chunk := make([]byte, 4096)
	for i := 0; i < 16; i++ {
		body = append(body, "1000\r\n"...)
		body = append(body, chunk...)
		body = append(body, "\r\n"...)
	}
	body = append(body, "0\r\n\r\n"...)
	b.Run("4KiB-chunks", func(b *testing.B) {
		var s ChunkScanner
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			s.Reset()
			if _, done, err := s.Scan(body); !done || err != nil {
				b.Fatal(done, err)
			}
		}
	})
	small := []byte("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
	b.Run("small", func(b *testing.B) {
		var s ChunkScanner
		b.ReportAllocs()
		b.SetBytes(int64(len(small)))
		for b.Loop() {
			s.Reset()
			if _, done, err := s.Scan(small); !done || err != nil {
				b.Fatal(done, err)
			}
		}
	})
}

func BenchmarkAcceptKey(b *testing.B) {
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	dst := make([]byte, 0, 28)
	b.ReportAllocs()
	for b.Loop() {
		dst = AcceptKey(dst[:0], key)
	}
}
