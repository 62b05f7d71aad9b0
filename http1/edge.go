package http1

import "strconv"

// AppendRedirectHTTPS appends a 301 to "https://" + host + [":" + port] +
// target, with an empty body: the answer to a plain-HTTP request when
// https is required. host (without port) and target come from a parsed
// request, so they hold only visible ASCII; anything else is dropped so
// the Location line stays one line. port "" or "443" is left out. No
// allocation when dst has room.
func AppendRedirectHTTPS(dst, host []byte, port string, target []byte, close bool) []byte {
	dst = append(dst, "HTTP/1.1 301 Moved Permanently\r\nLocation: https://"...)
	dst = appendVisible(dst, host)
	if port != "" && port != "443" {
		dst = append(dst, ':')
		dst = append(dst, port...)
	}
	if len(target) == 0 || target[0] != '/' {
		dst = append(dst, '/')
	}
	dst = appendVisible(dst, target)
	dst = append(dst, "\r\nContent-Length: 0"...)
	if close {
		dst = append(dst, "\r\nConnection: close"...)
	}
	return append(dst, "\r\n\r\n"...)
}

// AppendRetryAfter appends AppendError's response for status (429 or 503)
// with a "Retry-After: secs" header.
func AppendRetryAfter(dst []byte, status, secs int, close bool) []byte {
	conn := ""
	if close {
		conn = "close"
	}
	var b [32]byte
	extra := append(b[:0], "\r\nRetry-After: "...)
	extra = strconv.AppendInt(extra, int64(max(secs, 1)), 10)
	return appendError(dst, status, string(extra), conn)
}

func appendVisible(dst, b []byte) []byte {
	for _, c := range b {
		if c > ' ' && c < 0x7f {
			dst = append(dst, c)
		}
	}
	return dst
}
