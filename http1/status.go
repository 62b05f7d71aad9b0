package http1

import (
	"errors"
	"strconv"
)

// StatusText returns the reason phrase of code ("" when unknown).
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 206:
		return "Partial Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 411:
		return "Length Required"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 417:
		return "Expectation Failed"
	case 421:
		return "Misdirected Request"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}

// AppendError appends a complete small response for status: status line
// with reason phrase, "Content-Type: text/plain; charset=utf-8",
// Content-Length, "Connection: close" when close, and a one-line body naming
// the status ("400 Bad Request\n"). A status outside 100..999 is written as
// 500. No allocation when dst has room (~150 bytes).
func AppendError(dst []byte, status int, close bool) []byte {
	conn := ""
	if close {
		conn = "close"
	}
	return appendError(dst, status, "", conn)
}

// AppendRejection appends the answer to a request refused with err (an error
// of Request.Parse, ChunkScanner.Scan or ErrBodyTooLarge): AppendError with
// StatusOf(err), plus the headers the status requires. For
// ErrBadWebSocketVersion that is a 426 with "Upgrade: websocket",
// "Sec-WebSocket-Version: 13" (RFC 6455 4.2.2) and the "upgrade" connection
// option (RFC 9110 15.5.22, 7.8). No allocation when dst has room (~200
// bytes).
func AppendRejection(dst []byte, err error, close bool) []byte {
	status := StatusOf(err)
	if !errors.Is(err, ErrBadWebSocketVersion) {
		return AppendError(dst, status, close)
	}
	conn := "Upgrade"
	if close {
		conn = "Upgrade, close"
	}
	return appendError(dst, status, "\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13", conn)
}

// appendError writes the error response; extra is header lines, each
// preceded by CRLF, and conn the Connection value ("" for none).
func appendError(dst []byte, status int, extra, conn string) []byte {
	if status < 100 || status > 999 {
		status = 500
	}
	text := StatusText(status)
	blen := 3 + 1 // "NNN\n"
	if text != "" {
		blen += 1 + len(text)
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(blen), 10)
	dst = append(dst, extra...)
	if conn != "" {
		dst = append(dst, "\r\nConnection: "...)
		dst = append(dst, conn...)
	}
	dst = append(dst, "\r\n\r\n"...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	if text != "" {
		dst = append(dst, ' ')
		dst = append(dst, text...)
	}
	return append(dst, '\n')
}
