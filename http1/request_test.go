package http1

import (
	"bufio"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const wsHandshake = "GET /chat HTTP/1.1\r\n" +
	"Host: server.example.com\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Origin: http://example.com\r\n" +
	"Sec-WebSocket-Protocol: chat, superchat\r\n" +
	"Sec-WebSocket-Version: 13\r\n\r\n"

const browserGET = "GET /static/app.js?v=3.1.4 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n" +
	"sec-ch-ua-mobile: ?0\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n" +
	"sec-ch-ua-platform: \"Linux\"\r\n" +
	"Accept: */*\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Cookie: session=abc123; theme=dark\r\n\r\n"

// validRequests are heads Parse accepts; want describes the result.
var validRequests = []struct {
	name string
	raw  string
	want reqWant
}{
	{"simple GET", "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a.example", minor: 1, cl: -1}},
	{"browser GET", browserGET,
		reqWant{method: "GET", target: "/static/app.js?v=3.1.4", host: "www.example.com", minor: 1, cl: -1}},
	{"POST with Content-Length", "POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
		reqWant{method: "POST", target: "/form", host: "a", minor: 1, cl: 5, body: BodyLength}},
	{"Content-Length zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		reqWant{method: "POST", target: "/", host: "a", minor: 1, cl: 0, body: BodyNone}},
	{"Content-Length leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
		reqWant{method: "POST", target: "/", host: "a", minor: 1, cl: 7, body: BodyLength}},
	{"identical duplicate Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n",
		reqWant{method: "POST", target: "/", host: "a", minor: 1, cl: 12, body: BodyLength}},
	{"chunked", "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		reqWant{method: "POST", target: "/up", host: "a", minor: 1, cl: -1, chunked: true, body: BodyChunked}},
	{"chunked any case with OWS", "PUT /up HTTP/1.1\r\nHost: a\r\ntransfer-encoding:  ChUnKeD \t\r\n\r\n",
		reqWant{method: "PUT", target: "/up", host: "a", minor: 1, cl: -1, chunked: true, body: BodyChunked}},
	{"HEAD", "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "HEAD", target: "/x", host: "a", minor: 1, cl: -1}},
	{"HTTP/1.0 without Host closes", "GET / HTTP/1.0\r\n\r\n",
		reqWant{method: "GET", target: "/", minor: 0, cl: -1, close: true}},
	{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 0, cl: -1}},
	{"HTTP/1.1 Connection close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1, close: true}},
	{"close wins over keep-alive", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1, close: true}},
	{"absolute-form with matching Host", "GET http://a.example:8080/p?q HTTP/1.1\r\nHost: A.example:8080\r\n\r\n",
		reqWant{method: "GET", target: "http://a.example:8080/p?q", host: "A.example:8080", minor: 1, cl: -1}},
	{"absolute-form https no path", "GET https://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n",
		reqWant{method: "GET", target: "https://a.example", host: "a.example", minor: 1, cl: -1}},
	{"percent-encoded dot segments", "GET /a/%2e%2E/%77s?x=%2F HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "GET", target: "/a/%2e%2E/%77s?x=%2F", host: "a", minor: 1, cl: -1}},
	{"absolute-form HTTP/1.0 without Host", "GET http://a.example/ HTTP/1.0\r\n\r\n",
		reqWant{method: "GET", target: "http://a.example/", host: "a.example", minor: 0, cl: -1, close: true}},
	{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "OPTIONS", target: "*", host: "a", minor: 1, cl: -1}},
	{"WebSocket handshake", wsHandshake,
		reqWant{method: "GET", target: "/chat", host: "server.example.com", minor: 1, cl: -1, upgrade: true, ws: true, wsKey: "dGhlIHNhbXBsZSBub25jZQ=="}},
	{"WebSocket Firefox style Connection list", "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a:3000\r\n" +
		"Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
		reqWant{method: "GET", target: "/socket.io/?EIO=4&transport=websocket", host: "a:3000", minor: 1, cl: -1, upgrade: true, ws: true, wsKey: "x3JJHMbDL1EzLkh9GBhXDw=="}},
	{"h2c upgrade is not WebSocket", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1, upgrade: true}},
	{"Expect 100-continue", "PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n",
		reqWant{method: "PUT", target: "/f", host: "a", minor: 1, cl: 10, expect: true, body: BodyLength}},
	{"Expect ignored in HTTP/1.0", "PUT /f HTTP/1.0\r\nContent-Length: 1\r\nExpect: something\r\n\r\n",
		reqWant{method: "PUT", target: "/f", minor: 0, cl: 1, close: true, body: BodyLength}},
	{"leading empty lines skipped", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1, skip: 4}},
	{"unknown token method", "PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "PROPFIND", target: "/dav", host: "a", minor: 1, cl: -1}},
	{"empty header value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Sp:   \r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1}},
	{"obs-text in value", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1}},
	{"percent-encoded target", "GET /a%20b/%E2%82%AC?x=%2f HTTP/1.1\r\nHost: a\r\n\r\n",
		reqWant{method: "GET", target: "/a%20b/%E2%82%AC?x=%2f", host: "a", minor: 1, cl: -1}},
	{"IPv6 host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "[2001:db8::1]:8443", minor: 1, cl: -1}},
	{"IPv4 host", "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "10.0.0.1", minor: 1, cl: -1}},
	{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "", minor: 1, cl: -1}},
	{"Connection names extra headers", "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, , x-bar\r\nX-Foo: 1\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1}},
	// An unpaired Upgrade or "upgrade" option, or an Upgrade in HTTP/1.0, is
	// ignored: the request is plain HTTP (and Upgrade is not forwarded).
	{"WebSocket HTTP/1.0 is plain HTTP", strings.Replace(wsHandshake, "HTTP/1.1", "HTTP/1.0", 1),
		reqWant{method: "GET", target: "/chat", host: "server.example.com", minor: 0, cl: -1, close: true}},
	{"Upgrade websocket without Connection upgrade is plain HTTP", strings.Replace(wsHandshake, "Connection: Upgrade", "Connection: keep-alive", 1),
		reqWant{method: "GET", target: "/chat", host: "server.example.com", minor: 1, cl: -1}},
	{"Connection upgrade without Upgrade is plain HTTP", "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1}},
	{"HTTP/1.0 Upgrade not checked", "GET / HTTP/1.0\r\nUpgrade: web socket\r\nConnection: upgrade\r\n\r\n",
		reqWant{method: "GET", target: "/", minor: 0, cl: -1, close: true}},
	{"POST with Upgrade websocket but no upgrade option", "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n",
		reqWant{method: "POST", target: "/", host: "a", minor: 1, cl: 2, body: BodyLength}},
	{"underscore header that is not framing", "GET / HTTP/1.1\r\nHost: a\r\nX_Content_Length: 5\r\nContent_Type: x\r\n\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1}},
	{"pipelined bytes after head", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n",
		reqWant{method: "GET", target: "/", host: "a", minor: 1, cl: -1, headLen: len("GET / HTTP/1.1\r\nHost: a\r\n\r\n")}},
}

type reqWant struct {
	method, target, host string
	minor                int
	cl                   int64
	chunked, close       bool
	expect, upgrade, ws  bool
	wsKey                string
	body                 BodyKind
	skip                 int // leading CRLF bytes
	headLen              int // 0: len(raw)
}

// invalidRequests are heads Parse rejects, with the sentinel it returns.
var invalidRequests = []struct {
	name string
	raw  string
	want *Error
}{
	// request line
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", ErrBadVersion},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", ErrVersion},
	{"HTTP/0.9 version", "GET / HTTP/0.9\r\n\r\n", ErrVersion},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", ErrVersion},
	{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", ErrVersion},
	{"HTTP/10.0 junk", "GET / HTTP/10.0\r\nHost: a\r\n\r\n", ErrBadVersion},
	{"HTTP/1.10 junk", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", ErrBadVersion},
	{"HTTP/1 junk", "GET / HTTP/1\r\nHost: a\r\n\r\n", ErrBadVersion},
	{"HTTP/0.9 simple request", "GET /\r\n\r\n", ErrBadRequestLine},
	{"double space after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadRequestLine},
	{"double space before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadVersion},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadMethod},
	{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadMethod},
	{"non-token method", "GE[T / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadMethod},
	{"TLS ClientHello on plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ErrBadMethod},
	{"trailing space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", ErrBadVersion},
	{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrBadLineEnd},
	{"bare CR request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", ErrBadLineEnd},
	{"target not starting with slash", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"target with DEL", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"target with NUL", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"target with high byte", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"target with bad percent", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"target with truncated percent", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"path with %2F", "GET /ws%2f..%2fadmin HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadPath},
	{"path with %5C", "GET /ws/..%5Cadmin HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadPath},
	{"path with %00", "GET /a%00.html HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadPath},
	{"path with a backslash", "GET /ws\\..\\admin HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadPath},
	{"absolute-form path with %2F", "GET http://a/b%2Fc HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadPath},
	{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"asterisk prefix", "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"authority-form with GET", "GET a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", ErrBadTarget},
	{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", ErrConnect},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"CONNECT without port", "CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadTarget},
	{"absolute-form ftp scheme", "GET ftp://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", ErrBadTarget},
	{"absolute-form Host mismatch", "GET http://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", ErrHostMismatch},
	{"absolute-form userinfo", "GET http://u:p@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", ErrBadHost},
	{"absolute-form empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", ErrBadHost},
	{"absolute-form HTTP/1.1 without Host", "GET http://a.example/ HTTP/1.1\r\n\r\n", ErrMissingHost},
	{"request line too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", ErrURITooLong},
	{"request line just too long", "GET /" + strings.Repeat("a", 8192-len("GET / HTTP/1.1")+1) + " HTTP/1.1\r\nHost: a\r\n\r\n", ErrURITooLong},

	// header lines
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ErrBadHeaderName},
	{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", ErrBadHeaderName},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", ErrBadHeaderName},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", ErrBadHeaderName},
	{"non-token name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", ErrBadHeaderName},
	{"obs-fold space", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", ErrObsFold},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n", ErrObsFold},
	{"whitespace before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", ErrObsFold},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", ErrBadHeaderValue},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", ErrBadHeaderValue},
	{"CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n", ErrBadHeaderValue},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", ErrBadLineEnd},
	{"bare LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\n\r\n", ErrBadLineEnd},
	{"bare LF line ending", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", ErrBadLineEnd},
	{"bare LF final line", "GET / HTTP/1.1\r\nHost: a\r\n\n", ErrBadLineEnd},
	{"bare CR final line", "GET / HTTP/1.1\r\nHost: a\r\n\rX", ErrBadLineEnd},
	{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", ErrTooManyHeaders},
	{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 17000) + "\r\n\r\n", ErrHeaderTooLarge},

	// Host
	{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", ErrMissingHost},
	{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", ErrDuplicateHost},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ErrBadHost},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", ErrBadHost},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", ErrBadHost},
	{"Host with bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", ErrBadHost},
	{"Host with big port", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", ErrBadHost},
	{"Host two colons", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", ErrBadHost},
	{"Host port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", ErrBadHost},
	{"Host bad IPv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", ErrBadHost},
	{"Host IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", ErrBadHost},
	{"Host pct-encoded", "GET / HTTP/1.1\r\nHost: a%41\r\n\r\n", ErrBadHost},

	// framing header names some servers read with '_' as '-'
	{"Content_Length", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", ErrBadHeaderName},
	{"Transfer_Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", ErrBadHeaderName},
	{"transfer-encoding_ mixed", "POST / HTTP/1.1\r\nHost: a\r\nTRANSFER_encoding: chunked\r\nContent-Length: 1\r\n\r\n", ErrBadHeaderName},

	// Content-Length
	{"Content-Length sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", ErrBadContentLength},
	{"Content-Length negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", ErrBadContentLength},
	{"Content-Length hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", ErrBadContentLength},
	{"Content-Length inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", ErrBadContentLength},
	{"Content-Length empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", ErrBadContentLength},
	{"Content-Length 2^62", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n", ErrBadContentLength},
	{"Content-Length overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", ErrBadContentLength},
	{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", ErrBadContentLength},
	{"Content-Length conflicting", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ErrBadContentLength},
	{"Content-Length same value spelled differently", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n", ErrBadContentLength},

	// Transfer-Encoding
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ErrNotImplemented},
	{"TE chunked, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ErrNotImplemented},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", ErrNotImplemented},
	{"TE chunked with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", ErrNotImplemented},
	{"TE trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", ErrNotImplemented},
	{"TE two headers", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrNotImplemented},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", ErrBadTransferEncoding},
	{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", ErrBadTransferEncoding},
	{"TE garbage", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", ErrBadTransferEncoding},
	{"TE with Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ErrTEWithCL},
	{"Content-Length then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEWithCL},
	{"TE with leading vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", ErrBadHeaderValue},
	{"TE with trailing NUL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x00\r\n\r\n", ErrBadHeaderValue},
	{"TE name with trailing space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", ErrBadHeaderName},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", ErrNotImplemented},
	{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", ErrNotImplemented},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEHTTP10},

	// Connection, Expect
	{"Connection non-token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close; x\r\n\r\n", ErrBadConnection},
	{"Connection too many names", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a, b, c, d, e, f, g, h, i\r\n\r\n", ErrBadConnection},
	{"Expect other", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\n", ErrExpectation},
	{"Expect list", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue, x\r\n\r\n", ErrExpectation},
	{"bad Upgrade syntax", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: web socket\r\n\r\n", ErrBadHeaderValue},

	// WebSocket
	{"WebSocket POST", strings.Replace(wsHandshake, "GET", "POST", 1), ErrBadWebSocket},
	{"WebSocket chunked body", strings.Replace(wsHandshake, "Origin:", "Transfer-Encoding: chunked\r\nOrigin:", 1), ErrBadWebSocket},
	{"WebSocket with body", strings.Replace(wsHandshake, "Origin:", "Content-Length: 3\r\nOrigin:", 1), ErrBadWebSocket},
	{"WebSocket short key", strings.Replace(wsHandshake, "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 1), ErrBadWebSocketKey},
	{"WebSocket key bad char", strings.Replace(wsHandshake, "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j*Q==", 1), ErrBadWebSocketKey},
	{"WebSocket no key", strings.Replace(wsHandshake, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), ErrBadWebSocketKey},
	{"WebSocket two keys", strings.Replace(wsHandshake, "Origin:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin:", 1), ErrBadWebSocketKey},
	{"WebSocket version 8", strings.Replace(wsHandshake, "Version: 13", "Version: 8", 1), ErrBadWebSocketVersion},
	{"WebSocket two versions", strings.Replace(wsHandshake, "Origin:", "Sec-WebSocket-Version: 13\r\nOrigin:", 1), ErrBadWebSocketVersion},
	{"WebSocket version list", strings.Replace(wsHandshake, "Version: 13", "Version: 13, 8", 1), ErrBadWebSocketVersion},
	{"WebSocket no version", strings.Replace(wsHandshake, "Sec-WebSocket-Version: 13\r\n", "", 1), ErrBadWebSocketVersion},
}

func checkRequest(t *testing.T, raw string, r *Request, w reqWant) {
	t.Helper()
	buf := []byte(raw)
	wantHead := w.headLen
	if wantHead == 0 {
		wantHead = len(raw)
	}
	got := reqWant{
		method: string(r.Method.Of(buf)), target: string(r.Target.Of(buf)), host: string(r.Host.Of(buf)),
		minor: r.Minor, cl: r.ContentLength, chunked: r.Chunked, close: r.Close, expect: r.Expect100,
		upgrade: r.Upgrade, ws: r.WebSocket, wsKey: string(r.WSKey.Of(buf)), body: r.Body(),
		skip: w.skip, headLen: w.headLen,
	}
	if got != w {
		t.Errorf("got  %+v\nwant %+v", got, w)
	}
	if r.HeadLen != wantHead {
		t.Errorf("HeadLen = %d, want %d", r.HeadLen, wantHead)
	}
}

func TestParseRequestValid(t *testing.T) {
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			if err := r.Parse([]byte(tc.raw), nil); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkRequest(t, tc.raw, &r, tc.want)
		})
	}
}

func TestParseRequestInvalid(t *testing.T) {
	for _, tc := range invalidRequests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := r.Parse([]byte(tc.raw), nil)
			if err != tc.want {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
			if got := StatusOf(err); got != tc.want.Status {
				t.Fatalf("StatusOf = %d, want %d", got, tc.want.Status)
			}
		})
	}
}

// Every prefix of a head yields ErrNeedMore or the final answer, and a valid
// head yields ErrNeedMore until its last byte.
func TestParseRequestIncremental(t *testing.T) {
	check := func(t *testing.T, raw string, final error, headLen int) {
		var r Request
		buf := []byte(raw)
		for k := 0; k < len(buf); k++ {
			err := r.Parse(buf[:k:k], nil)
			if final == nil && k < headLen && err != ErrNeedMore {
				t.Fatalf("prefix %d: %v, want ErrNeedMore", k, err)
			}
			if err != ErrNeedMore && err != final {
				t.Fatalf("prefix %d: %v, want ErrNeedMore or %v", k, err, final)
			}
		}
	}
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			hl := tc.want.headLen
			if hl == 0 {
				hl = len(tc.raw)
			}
			check(t, tc.raw, nil, hl)
			// Byte by byte the same result as at once.
			var r Request
			if err := r.Parse([]byte(tc.raw), nil); err != nil {
				t.Fatal(err)
			}
			checkRequest(t, tc.raw, &r, tc.want)
		})
	}
	for _, tc := range invalidRequests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, tc.raw, tc.want, 0)
		})
	}
}

func TestParseRequestLimits(t *testing.T) {
	t.Run("early 431 without end of head", func(t *testing.T) {
		buf := []byte("GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 200))
		var r Request
		if err := r.Parse(buf, &Limits{MaxHeaderBytes: 100}); err != ErrHeaderTooLarge {
			t.Fatalf("got %v", err)
		}
		if err := r.Parse(buf[:99], &Limits{MaxHeaderBytes: 100}); err != ErrNeedMore {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("head of exactly MaxHeaderBytes", func(t *testing.T) {
		raw := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		var r Request
		if err := r.Parse([]byte(raw), &Limits{MaxHeaderBytes: len(raw)}); err != nil {
			t.Fatalf("got %v", err)
		}
		if err := r.Parse([]byte(raw), &Limits{MaxHeaderBytes: len(raw) - 1}); err != ErrHeaderTooLarge {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("early 414 without end of line", func(t *testing.T) {
		buf := []byte("GET /" + strings.Repeat("a", 100))
		var r Request
		if err := r.Parse(buf, &Limits{MaxLineBytes: 50}); err != ErrURITooLong {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("line of exactly MaxLineBytes", func(t *testing.T) {
		raw := "GET /abc HTTP/1.1\r\nHost: a\r\n\r\n"
		var r Request
		if err := r.Parse([]byte(raw), &Limits{MaxLineBytes: 17}); err != nil {
			t.Fatalf("got %v", err)
		}
		if err := r.Parse([]byte(raw), &Limits{MaxLineBytes: 16}); err != ErrURITooLong {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("MaxHeaders", func(t *testing.T) {
		raw := "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"
		var r Request
		if err := r.Parse([]byte(raw), &Limits{MaxHeaders: 3}); err != nil {
			t.Fatalf("got %v", err)
		}
		if err := r.Parse([]byte(raw), &Limits{MaxHeaders: 2}); err != ErrTooManyHeaders {
			t.Fatalf("got %v", err)
		}
		if err := r.Parse([]byte(raw), &Limits{MaxHeaders: 1000}); err != nil {
			t.Fatalf("clamped limit: got %v", err)
		}
	})
	t.Run("100 headers accepted by default", func(t *testing.T) {
		raw := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 99) + "\r\n"
		var r Request
		if err := r.Parse([]byte(raw), nil); err != nil || r.N != 100 {
			t.Fatalf("got %v, N=%d", err, r.N)
		}
	})
	t.Run("too many leading empty lines", func(t *testing.T) {
		var r Request
		if err := r.Parse([]byte(strings.Repeat("\r\n", 5)+"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), nil); err != ErrBadMethod {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRequestGetAndIsMethod(t *testing.T) {
	buf := []byte(browserGET)
	var r Request
	if err := r.Parse(buf, nil); err != nil {
		t.Fatal(err)
	}
	if !r.IsMethod(buf, "GET") || r.IsMethod(buf, "get") || r.IsMethod(buf, "POST") {
		t.Error("IsMethod")
	}
	if v, ok := r.Get(buf, "user-agent"); !ok || !strings.HasPrefix(string(v), "Mozilla/5.0") {
		t.Errorf("Get user-agent = %q %v", v, ok)
	}
	if v, ok := r.Get(buf, "COOKIE"); !ok || string(v) != "session=abc123; theme=dark" {
		t.Errorf("Get cookie = %q %v", v, ok)
	}
	if _, ok := r.Get(buf, "X-Missing"); ok {
		t.Error("Get missing header")
	}
}

func TestParseResetsRequest(t *testing.T) {
	var r Request
	if err := r.Parse([]byte(wsHandshake), nil); err != nil {
		t.Fatal(err)
	}
	raw := "POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
	if err := r.Parse([]byte(raw), nil); err != nil {
		t.Fatal(err)
	}
	if r.WebSocket || r.Upgrade || r.N != 2 || !r.Chunked || r.ContentLength != -1 || r.WSKey != (Span{}) {
		t.Fatalf("state leaked: %+v", r)
	}
}

func TestStatusOf(t *testing.T) {
	if StatusOf(errors.New("x")) != 400 || StatusOf(ErrURITooLong) != 414 || StatusOf(ErrConnect) != 501 {
		t.Fatal("StatusOf")
	}
	if ErrHeaderTooLarge.Error() != "http1: request header too large" {
		t.Fatal(ErrHeaderTooLarge.Error())
	}
}

// Oracle: what we accept, net/http reads the same way.
func TestParseRequestAgreesWithNetHTTP(t *testing.T) {
	for _, tc := range validRequests {
		t.Run(tc.name, func(t *testing.T) {
			compareWithNetHTTP(t, []byte(tc.raw))
		})
	}
}

// compareWithNetHTTP parses buf with both parsers; Parse must have accepted it.
func compareWithNetHTTP(t testing.TB, buf []byte) {
	t.Helper()
	var r Request
	if err := r.Parse(buf, nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	// net/http does not skip leading empty lines.
	head := buf[:r.HeadLen]
	for len(head) >= 2 && head[0] == '\r' && head[1] == '\n' {
		head = head[2:]
	}
	hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(head))))
	if err != nil {
		t.Fatalf("we accept, net/http rejects %q: %v", head, err)
	}
	if hr.Method != string(r.Method.Of(buf)) || hr.RequestURI != string(r.Target.Of(buf)) {
		t.Errorf("method/target: net/http %q %q", hr.Method, hr.RequestURI)
	}
	if !strings.EqualFold(hr.Host, string(r.Host.Of(buf))) {
		t.Errorf("host: net/http %q, we %q", hr.Host, r.Host.Of(buf))
	}
	chunked := len(hr.TransferEncoding) == 1 && hr.TransferEncoding[0] == "chunked"
	if chunked != r.Chunked {
		t.Errorf("chunked: net/http %v, we %v", chunked, r.Chunked)
	}
	wantCL := r.ContentLength
	if r.Chunked {
		wantCL = -1
	}
	if wantCL < 0 && !r.Chunked {
		wantCL = 0 // net/http: no body
	}
	if hr.ContentLength != wantCL {
		t.Errorf("content length: net/http %d, we %d", hr.ContentLength, r.ContentLength)
	}
	if hr.ProtoMinor != r.Minor || hr.ProtoMajor != 1 {
		t.Errorf("version: net/http %d.%d", hr.ProtoMajor, hr.ProtoMinor)
	}
	// Every header value we saw is among net/http's values for that name.
	for i := 0; i < r.N; i++ {
		name := string(r.Headers[i].Name.Of(buf))
		val := string(r.Headers[i].Value.Of(buf))
		if strings.EqualFold(name, "Host") || strings.EqualFold(name, "Transfer-Encoding") {
			continue // net/http moves these out of Header
		}
		found := false
		for _, v := range hr.Header.Values(name) {
			found = found || v == val
		}
		if !found {
			t.Errorf("header %s: we %q, net/http %q", name, val, hr.Header.Values(name))
		}
	}
	if hr.Close != r.Close {
		t.Errorf("close: net/http %v, we %v", hr.Close, r.Close)
	}
}

func TestParseContentLengthBounds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		okay bool
	}{
		{"0", 0, true},
		{"4611686018427387903", 1<<62 - 1, true},
		{"0004611686018427387903", 1<<62 - 1, true},
		{"4611686018427387904", 0, false},
		{"9227000000000000000", 0, false}, // wrapped int64 once (fuzz)
		{"18446744073709551617", 0, false},
		{"", 0, false},
	} {
		n, ok := parseContentLength([]byte(tc.in))
		if ok != tc.okay || (ok && n != tc.n) {
			t.Errorf("%q: %d %v", tc.in, n, ok)
		}
	}
}
