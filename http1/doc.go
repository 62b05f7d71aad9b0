// Package http1 handles HTTP/1.1 heads as bytes: incremental request and
// response head parsing, body framing (Content-Length, chunked) validation,
// the strictness rules with the status each violation gets, head rewriting
// for forwarding, and the WebSocket handshake checks.
//
// It does no I/O, starts no goroutines and imports nothing internal. The hot
// paths (Request.Parse, Response.Parse, ChunkScanner.Scan, AppendRequest,
// AppendResponse, AppendError, AppendRejection, AcceptKey, CheckWebSocket)
// allocate nothing
// when dst has room (MaxAppendRequest, MaxAppendResponse); alloc_test.go
// checks it.
//
// # Parsing model
//
// Parse is given the bytes read so far and parses from the start each time
// (heads are small and bounded). Header positions are Spans (offset, length)
// into that buffer, kept in a fixed array of MaxHeaders. The caller owns the
// buffer and must keep the head bytes in place while it uses the Request.
// Parse returns ErrNeedMore while the head is incomplete, but it refuses as
// soon as a complete prefix is invalid or a limit is provably exceeded, so
// garbage (a TLS ClientHello on the plain port, say) is answered at once.
// The answer for a prefix of buf is always ErrNeedMore or the answer for buf.
//
// # Rejections (requests)
//
// Every error is an *Error sentinel; Status is what the client gets.
//
//	what                                                          status  error
//	head (request line .. final CRLF) over MaxHeaderBytes (16 KiB) 431   ErrHeaderTooLarge
//	more than MaxHeaders (100) header lines                        431   ErrTooManyHeaders
//	request line (no CRLF) over MaxLineBytes (8 KiB)               414   ErrURITooLong
//	method empty or not a token; not followed by one SP            400   ErrBadMethod
//	empty target (two SPs), no version (HTTP/0.9 simple request)   400   ErrBadRequestLine
//	target byte not visible ASCII (CTL, SP, DEL, >= 0x80)          400   ErrBadTarget
//	"%" not followed by two HEXDIG in the target                   400   ErrBadTarget
//	path (the target up to "?") with %2F, %5C or %00 (any case),
//	  or a literal '\' (see Paths)                                 400   ErrBadPath
//	origin-form not starting with "/"; "*" except OPTIONS "*";
//	  authority-form except with CONNECT; absolute-form with a
//	  scheme other than http/https                                 400   ErrBadTarget
//	absolute-form with empty/invalid authority or userinfo         400   ErrBadHost
//	absolute-form authority != Host (case-insensitive, byte exact) 400   ErrHostMismatch
//	CONNECT (the proxy does not tunnel; 501 = method not
//	  implemented here, RFC 9110 15.6.2)                           501   ErrConnect
//	version not "HTTP/" DIGIT "." DIGIT (http/1.1, HTTP/1.10 ...)  400   ErrBadVersion
//	well-formed version other than 1.0/1.1 (0.9, 1.2, 2.0, 3.0)    505   ErrVersion
//	bare LF or bare CR anywhere a line ends, or CR/LF in a value   400   ErrBadLineEnd
//	header line starting with SP/HTAB (obs-fold, also before the
//	  first header)                                                400   ErrObsFold
//	empty or non-token name, whitespace before the colon, no colon 400   ErrBadHeaderName
//	Content_Length / Transfer_Encoding ('_' for '-', any case)     400   ErrBadHeaderName
//	NUL, other CTL or DEL in a value (HTAB and obs-text allowed)   400   ErrBadHeaderValue
//	HTTP/1.1 without Host (also with absolute-form)                400   ErrMissingHost
//	two Host headers                                               400   ErrDuplicateHost
//	Host not reg-name / IPv4 / [IPv6] with optional port <= 65535
//	  (pct-encoding, userinfo, IPvFuture, zones, ":80" refused;
//	  an empty Host is allowed, RFC 9110 7.2)                      400   ErrBadHost
//	Content-Length not 1*DIGIT (sign, space, hex), empty, >= 2^62,
//	  a comma list ("5, 5"), or repeated with a value that is not
//	  byte-identical (as net/http; identical repeats are accepted
//	  and forwarded once)                                          400   ErrBadContentLength
//	Transfer-Encoding not a well-formed coding list ("chun ked",
//	  empty, "\"chunked\"")                                        400   ErrBadTransferEncoding
//	Transfer-Encoding with Content-Length                          400   ErrTEWithCL
//	Transfer-Encoding in HTTP/1.0                                  400   ErrTEHTTP10
//	Transfer-Encoding other than exactly one "chunked" (gzip,
//	  chunked; chunked, chunked; identity; chunked;q=1; two
//	  headers)                                                     501   ErrNotImplemented
//	Connection not a token list, or naming more than
//	  MaxConnectionTokens (8) headers besides close/keep-alive/
//	  upgrade                                                      400   ErrBadConnection
//	Upgrade not a list of protocol[/version] tokens                400   ErrBadHeaderValue
//	HTTP/1.1 Expect other than exactly "100-continue"
//	  (HTTP/1.0 Expect is ignored, RFC 9110 10.1.1)                417   ErrExpectation
//	HTTP/1.1 Upgrade naming websocket with Connection token
//	  "upgrade", but not GET, or with a body (RFC 6455 4.1)        400   ErrBadWebSocket
//	  ... Sec-WebSocket-Key missing/repeated/not base64 of 16 bytes 400   ErrBadWebSocketKey
//	  ... Sec-WebSocket-Version missing/repeated/not "13"          426   ErrBadWebSocketVersion
//
// Choices: bare LF is rejected everywhere (RFC 9112 2.2 permits, never
// requires, accepting it). Up to 4 empty lines before the request line are
// skipped (RFC 9112 2.2) and count in HeadLen. An upgrade is requested only
// by HTTP/1.1 with both an Upgrade header and the Connection option
// "upgrade" (RFC 9110 7.8); an unpaired one, or either in HTTP/1.0, is
// ignored: Upgrade stays false and the request is plain HTTP. An upgrade to
// anything but websocket (h2c, say) is not an error either: the request is
// forwarded without Upgrade and HTTP2-Settings. AppendRejection writes the
// 426 with "Upgrade: websocket" and "Sec-WebSocket-Version: 13".
// RULES.md lists every rule with its RFC section and what nginx and HAProxy
// answer.
//
// Responses follow the same header rules; every Response.Parse error has
// Status 502 (ErrBadStatusLine, ErrResponseVersion,
// ErrResponseHeaderTooLarge, or the request rule's twin with a "response: "
// message). The status line must be HTTP/1.0 or HTTP/1.1, SP, a status in
// 100..599, then optionally SP and a reason. Transfer-Encoding is accepted
// only as exactly "chunked" there too (a backend sending gzip, chunked gets
// 502).
//
// # Chunked bodies
//
// ChunkScanner validates a chunked body byte by byte while the raw bytes are
// forwarded; its errors (ErrBadChunk, ErrChunkLineTooLong, ErrChunkOverhead,
// ErrTrailerTooLarge) are 400. Committed tells a body limit the size a chunk
// announced before its data arrives. Trailers stay in the body: they are
// never merged into the head. Its limits are kept inside what net/http
// accepts so that a Go backend never refuses a body we passed.
// Trailer fields are checked for syntax only.
//
// # Paths
//
// Parse normalizes the target's path once (RFC 3986 6.2.2, path.go):
// percent-encoded unreserved characters decoded, other percent-encodings
// upper-cased, dot segments removed ("%2e" ones too; ".." stops at the
// root); repeated slashes are kept. Request.Path is that path, Query the
// query as received; every decision on a path should read Path, and
// AppendRequest sends it (Request.AppendTarget), so the backend gets what
// the decision saw. An absolute-form target is sent in origin form. A path
// already normal (PathIsNormal) costs one scan and no copy.
//
// # Rewriting
//
// AppendRequest and AppendResponse remove hop-by-hop headers (Connection,
// Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, HTTP2-Settings,
// Proxy-Authorization
// on requests, Proxy-Authenticate on responses, and any header named in
// Connection except Host, Content-Length and Transfer-Encoding), keep the
// body framing headers, set X-Forwarded-*, X-Real-IP and Forwarded, restore
// Connection/Upgrade for a WebSocket handshake, send the normalized path in
// origin form, and write the response version as HTTP/1.1. See each
// function for the details.
//
// # Oracle
//
// The fuzz tests check that what this package accepts, net/http reads with
// the same meaning (method, target, Host, framing, header values, chunked
// payload), and that rewritten heads parse again with the same framing.
package http1
