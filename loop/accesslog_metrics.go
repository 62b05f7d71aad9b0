package loop

// Why a WebSocket handshake did not become a tunnel.
const (
	hsBadHandshake = "bad_handshake"   // not a GET, or has a body (400)
	hsBadKey       = "bad_key"         // Sec-WebSocket-Key missing or invalid (400)
	hsBadVersion   = "bad_version"     // Sec-WebSocket-Version not 13 (426)
	hsNoRoute      = "no_route"        // no route for the host and path (404)
	hsNoBackend    = "no_backend"      // no healthy backend in the pool (503)
	hsConnect      = "connect_failed"  // no backend could be reached (502)
	hsTimeout      = "backend_timeout" // the backend did not answer in time (504)
	hsBad101       = "bad_101"         // a 101 with a wrong Sec-WebSocket-Accept or Upgrade (502)
	hsBadResponse  = "bad_response"    // the backend's answer was not HTTP, or it reset (502)
	hsDeclined     = "declined"        // the backend answered with another status
	hsAborted      = "aborted"         // the client went away before an answer
	hsOther        = "other"           // anything else the proxy refused (413, 431, ...)
)

// handshakeReason classifies a valid handshake that got status instead
// of 101; backendStatus is the status line the backend sent, if any.
func handshakeReason(r *accessRec, status, backendStatus int) string {
	switch {
	case r.upstream:
		return hsDeclined
	case status == 0:
		return hsAborted
	case status == 404:
		return hsNoRoute
	case status == 503:
		return hsNoBackend
	case status == 504:
		return hsTimeout
	case status == 502 && r.backend == nil:
		return hsConnect
	case status == 502 && backendStatus == 101:
		return hsBad101
	case status == 502:
		return hsBadResponse
	}
	return hsOther
}
