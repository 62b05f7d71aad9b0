package http1

import "errors"

// Error is a head or framing violation. Status is the HTTP status the
// connection layer answers with; only that layer turns an Error into bytes on
// the wire (AppendError). Errors returned by this package are the sentinels
// below, compared by identity (errors.Is or ==).
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return "http1: " + e.Msg }

// ErrNeedMore means the buffer does not yet hold a complete head (or the
// chunked body is not complete): read more and call again. It is not an *Error.
var ErrNeedMore = errors.New("http1: need more data")

// StatusOf returns the status an error should be answered with: e.Status for
// an *Error (also when wrapped), 400 for anything else.
func StatusOf(err error) int {
	if e, ok := err.(*Error); ok { // the common case, without allocating
		return e.Status
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 400
}

// ecode names a head violation independently of which side (request or
// response) saw it; reqErr and respErr turn it into the sentinel of that side.
type ecode uint8

const (
	eNone ecode = iota
	eNeedMore
	eHeaderTooLarge
	eLineTooLong
	eTooManyHeaders
	eBadRequestLine
	eBadMethod
	eBadTarget
	eVersion
	eBadVersion
	eBadLineEnd
	eObsFold
	eBadHeaderName
	eBadHeaderValue
	eMissingHost
	eDuplicateHost
	eBadHost
	eHostMismatch
	eBadContentLength
	eBadTransferEncoding
	eUnknownTransferCoding
	eTEWithCL
	eTEHTTP10
	eBadConnection
	eExpectation
	eBadWebSocket
	eBadWebSocketKey
	eBadWebSocketVersion
	eConnect
	eBadPath
	eBadStatusLine
	nCodes
)

// Request-side sentinels. Each doc line says what triggers it; doc.go has the
// full table.
var (
	// ErrHeaderTooLarge: the head exceeds Limits.MaxHeaderBytes (431).
	ErrHeaderTooLarge = &Error{431, "request header too large"}
	// ErrTooManyHeaders: more than Limits.MaxHeaders header lines (431).
	ErrTooManyHeaders = &Error{431, "too many header fields"}
	// ErrURITooLong: the request line exceeds Limits.MaxLineBytes (414).
	ErrURITooLong = &Error{414, "request line too long"}
	// ErrBadRequest is the generic 400, for callers that need one.
	ErrBadRequest = &Error{400, "bad request"}
	// ErrBadRequestLine: request line not METHOD SP TARGET SP VERSION CRLF (400).
	ErrBadRequestLine = &Error{400, "malformed request line"}
	// ErrBadMethod: method is empty or not a token (400).
	ErrBadMethod = &Error{400, "invalid method"}
	// ErrBadTarget: request-target has a forbidden byte, a bad percent-escape,
	// or a form the method does not allow (400).
	ErrBadTarget = &Error{400, "invalid request target"}
	// ErrVersion: a well-formed HTTP/d.d other than 1.0 and 1.1 (505).
	ErrVersion = &Error{505, "HTTP version not supported"}
	// ErrBadVersion: the version is not HTTP/d.d (400).
	ErrBadVersion = &Error{400, "malformed HTTP version"}
	// ErrBadLineEnd: bare LF or bare CR where CRLF is required (400).
	ErrBadLineEnd = &Error{400, "line not terminated by CRLF"}
	// ErrObsFold: a header line starting with SP or HTAB (400).
	ErrObsFold = &Error{400, "obsolete line folding"}
	// ErrBadHeaderName: empty or non-token field name, no colon, or (in a
	// request) Content_Length / Transfer_Encoding spelled with '_' (400).
	ErrBadHeaderName = &Error{400, "malformed header field name"}
	// ErrBadHeaderValue: NUL, CTL or DEL in a field value (400).
	ErrBadHeaderValue = &Error{400, "invalid header field value"}
	// ErrMissingHost: HTTP/1.1 request without Host (400).
	ErrMissingHost = &Error{400, "missing Host header"}
	// ErrDuplicateHost: more than one Host header (400).
	ErrDuplicateHost = &Error{400, "duplicate Host header"}
	// ErrBadHost: Host (or the authority of the target) is not
	// reg-name / IP-literal / IPv4 with an optional port (400).
	ErrBadHost = &Error{400, "invalid Host"}
	// ErrHostMismatch: absolute-form authority differs from Host (400).
	ErrHostMismatch = &Error{400, "Host does not match request target"}
	// ErrBadContentLength: Content-Length not 1*DIGIT, too large, empty, a
	// list, or repeated with a different value (400).
	ErrBadContentLength = &Error{400, "invalid Content-Length"}
	// ErrBadTransferEncoding: malformed Transfer-Encoding list (400).
	ErrBadTransferEncoding = &Error{400, "malformed Transfer-Encoding"}
	// ErrNotImplemented: a well-formed Transfer-Encoding other than exactly
	// "chunked" (501).
	ErrNotImplemented = &Error{501, "unsupported transfer coding"}
	// ErrTEWithCL: both Transfer-Encoding and Content-Length (400).
	ErrTEWithCL = &Error{400, "both Transfer-Encoding and Content-Length"}
	// ErrTEHTTP10: Transfer-Encoding in an HTTP/1.0 message (400).
	ErrTEHTTP10 = &Error{400, "Transfer-Encoding in HTTP/1.0"}
	// ErrBadConnection: Connection is not a token list, or names more than
	// MaxConnectionTokens other headers (400).
	ErrBadConnection = &Error{400, "invalid Connection header"}
	// ErrExpectation: an Expect other than 100-continue in HTTP/1.1 (417).
	ErrExpectation = &Error{417, "unsupported expectation"}
	// ErrBadWebSocket: an HTTP/1.1 request with Upgrade naming websocket and
	// the Connection option "upgrade" that is not a GET or has a body
	// (RFC 6455 4.1) (400).
	ErrBadWebSocket = &Error{400, "invalid WebSocket handshake"}
	// ErrBadWebSocketKey: Sec-WebSocket-Key missing, repeated, or not base64
	// of 16 bytes in a WebSocket handshake (400).
	ErrBadWebSocketKey = &Error{400, "invalid Sec-WebSocket-Key"}
	// ErrBadWebSocketVersion: Sec-WebSocket-Version missing, repeated or not
	// 13 in a WebSocket handshake (426; AppendRejection adds
	// "Sec-WebSocket-Version: 13", RFC 6455 4.2.2).
	ErrBadWebSocketVersion = &Error{426, "unsupported Sec-WebSocket-Version"}
	// ErrConnect: CONNECT; the proxy does not tunnel (501).
	ErrConnect = &Error{501, "CONNECT not supported"}
	// ErrBadPath: the request path holds %2F, %5C or %00 (any case), or a
	// literal '\': a backend that decodes (or takes '\' for '/') could see
	// other segments than the ones wsgate decided on (400). See
	// AppendNormalPath.
	ErrBadPath = &Error{400, "encoded '/', '\\' or NUL, or a '\\', in the request path"}
	// ErrBodyTooLarge is for the connection layer: body over --max-body-bytes (413).
	ErrBodyTooLarge = &Error{413, "request body too large"}

	// ErrBadChunk: malformed chunked body (400).
	ErrBadChunk = &Error{400, "malformed chunked encoding"}
	// ErrChunkLineTooLong: chunk-size line (with extensions) over
	// MaxChunkLineBytes (400).
	ErrChunkLineTooLong = &Error{400, "chunk line too long"}
	// ErrChunkOverhead: too many bytes of chunk framing per data byte (the
	// same rule as net/http, so what we pass a Go backend accepts) (400).
	ErrChunkOverhead = &Error{400, "chunked encoding contains too much non-data"}
	// ErrTrailerTooLarge: trailer section over MaxTrailerBytes (400).
	ErrTrailerTooLarge = &Error{400, "chunked trailer too large"}
)

// Response-side errors. Every error of Response.Parse and CheckWebSocket has
// Status 502: a bad backend answer is a bad gateway for the client.
var (
	// ErrBadStatusLine: status line not HTTP/1.x SP 3DIGIT [SP reason] CRLF,
	// or a status outside 100..599.
	ErrBadStatusLine = &Error{502, "malformed response status line"}
	// ErrResponseVersion: a response version other than HTTP/1.0 or HTTP/1.1.
	ErrResponseVersion = &Error{502, "response HTTP version not supported"}
	// ErrResponseHeaderTooLarge: response head over Limits.MaxHeaderBytes.
	ErrResponseHeaderTooLarge = &Error{502, "response header too large"}

	// ErrWebSocketStatus: the backend did not answer the handshake with 101.
	// The connection layer forwards that answer as a normal response.
	ErrWebSocketStatus = &Error{502, "websocket: backend did not answer 101"}
	// ErrWebSocketUpgrade: 101 without an Upgrade token "websocket".
	ErrWebSocketUpgrade = &Error{502, "websocket: 101 without Upgrade: websocket"}
	// ErrWebSocketConnection: 101 without a Connection token "upgrade".
	ErrWebSocketConnection = &Error{502, "websocket: 101 without Connection: upgrade"}
	// ErrWebSocketAccept: Sec-WebSocket-Accept missing, repeated or wrong.
	ErrWebSocketAccept = &Error{502, "websocket: wrong Sec-WebSocket-Accept"}
)

var reqErr = [nCodes]*Error{
	eHeaderTooLarge:        ErrHeaderTooLarge,
	eLineTooLong:           ErrURITooLong,
	eTooManyHeaders:        ErrTooManyHeaders,
	eBadRequestLine:        ErrBadRequestLine,
	eBadMethod:             ErrBadMethod,
	eBadTarget:             ErrBadTarget,
	eVersion:               ErrVersion,
	eBadVersion:            ErrBadVersion,
	eBadLineEnd:            ErrBadLineEnd,
	eObsFold:               ErrObsFold,
	eBadHeaderName:         ErrBadHeaderName,
	eBadHeaderValue:        ErrBadHeaderValue,
	eMissingHost:           ErrMissingHost,
	eDuplicateHost:         ErrDuplicateHost,
	eBadHost:               ErrBadHost,
	eHostMismatch:          ErrHostMismatch,
	eBadContentLength:      ErrBadContentLength,
	eBadTransferEncoding:   ErrBadTransferEncoding,
	eUnknownTransferCoding: ErrNotImplemented,
	eTEWithCL:              ErrTEWithCL,
	eTEHTTP10:              ErrTEHTTP10,
	eBadConnection:         ErrBadConnection,
	eExpectation:           ErrExpectation,
	eBadWebSocket:          ErrBadWebSocket,
	eBadWebSocketKey:       ErrBadWebSocketKey,
	eBadWebSocketVersion:   ErrBadWebSocketVersion,
	eConnect:               ErrConnect,
	eBadPath:               ErrBadPath,
	eBadStatusLine:         ErrBadRequestLine,
}

// respErr holds the response twin of each request error: Status 502 and the
// message prefixed with "response: ".
var respErr = func() (t [nCodes]*Error) {
	for c, e := range reqErr {
		if e != nil {
			t[c] = &Error{502, "response: " + e.Msg}
		}
	}
	t[eHeaderTooLarge] = ErrResponseHeaderTooLarge
	t[eBadStatusLine] = ErrBadStatusLine
	t[eVersion] = ErrResponseVersion
	t[eBadVersion] = ErrBadStatusLine
	return t
}()

func (c ecode) req() error {
	switch {
	case c == eNeedMore:
		return ErrNeedMore
	case reqErr[c] == nil:
		return nil // eNone; never a typed nil in an interface
	}
	return reqErr[c]
}

func (c ecode) resp() error {
	switch {
	case c == eNeedMore:
		return ErrNeedMore
	case respErr[c] == nil:
		return nil
	}
	return respErr[c]
}
