package tlsrec

import "errors"

// Alert levels and descriptions (RFC 8446 §6).
const (
	AlertLevelWarning = 1
	AlertLevelFatal   = 2

	AlertCloseNotify           = 0
	AlertUnexpectedMessage     = 10
	AlertBadRecordMAC          = 20
	AlertRecordOverflow        = 22
	AlertHandshakeFailure      = 40
	AlertIllegalParameter      = 47
	AlertDecodeError           = 50
	AlertDecryptError          = 51
	AlertProtocolVersion       = 70
	AlertInternalError         = 80
	AlertUserCanceled          = 90
	AlertCertificateRequired   = 116
	AlertNoApplicationProtocol = 120
)

// Post-handshake handshake message types (RFC 8446 §4).
const (
	HandshakeNewSessionTicket   = 4
	HandshakeCertificateRequest = 13 // post-handshake auth: crypto/tls never offers it
	HandshakeKeyUpdate          = 24

	HandshakeHeaderLen = 4
)

// recordError is a protocol error with the alert RFC 8446 prescribes for it.
// Every recordError matches ErrBadRecord with errors.Is.
type recordError struct {
	alert uint8
	msg   string
}

func (e *recordError) Error() string        { return "tlsrec: " + e.msg }
func (e *recordError) Is(target error) bool { return target == ErrBadRecord }

// Errors. All except ErrBadRecordMAC match ErrBadRecord with errors.Is;
// AlertFor gives the alert to send for each before closing.
var (
	// ErrBadRecordMAC: the record did not authenticate (bad_record_mac).
	ErrBadRecordMAC = errors.New("tlsrec: bad record MAC")
	// ErrBadRecord matches every malformed-record error below.
	ErrBadRecord = errors.New("tlsrec: bad record")

	// ErrUnexpectedType: an outer content type other than application_data
	// after the handshake, or not a TLS content type at all
	// (unexpected_message).
	ErrUnexpectedType error = &recordError{AlertUnexpectedMessage, "unexpected outer record type"}
	// ErrBadVersion: legacy_record_version is not 0x0303 (decode_error).
	ErrBadVersion error = &recordError{AlertDecodeError, "bad legacy record version"}
	// ErrRecordOverflow: TLSCiphertext.length > MaxCipher, or the decrypted
	// TLSInnerPlaintext longer than MaxPlain+1 (record_overflow).
	ErrRecordOverflow error = &recordError{AlertRecordOverflow, "record overflow"}
	// ErrShortRecord: TLSCiphertext.length < TagLen+1: cannot hold a tag and
	// a content type (decode_error).
	ErrShortRecord error = &recordError{AlertDecodeError, "record too short"}
	// ErrLengthMismatch: Open was given a buffer that is not exactly one
	// record (decode_error; a caller bug when RecordLen was used).
	ErrLengthMismatch error = &recordError{AlertDecodeError, "buffer is not exactly one record"}
	// ErrNoContentType: the inner plaintext is all zeros (unexpected_message,
	// RFC 8446 §5.4).
	ErrNoContentType error = &recordError{AlertUnexpectedMessage, "inner plaintext has no content type"}
	// ErrBadInnerType: the real content type is not application_data,
	// handshake or alert (unexpected_message).
	ErrBadInnerType error = &recordError{AlertUnexpectedMessage, "unexpected inner content type"}
	// ErrEmptyFragment: a zero-length handshake or alert record (RFC 8446
	// §5.1 forbids them; unexpected_message).
	ErrEmptyFragment error = &recordError{AlertUnexpectedMessage, "zero-length handshake or alert record"}
	// ErrSeqExhausted: the 64-bit sequence number would wrap; the peer never
	// updated its keys (internal_error; unreachable in practice).
	ErrSeqExhausted error = &recordError{AlertInternalError, "sequence number exhausted"}

	// ErrFragmented: a handshake message is cut by the end of the record
	// content. TLS allows handshake messages to span records, but this
	// package handles only post-handshake messages within one record (what
	// crypto/tls, BoringSSL and OpenSSL send); the caller has to close the
	// connection (internal_error: our limitation, not the peer's fault).
	ErrFragmented error = &recordError{AlertInternalError, "handshake message spans records"}
	// ErrKeyUpdateNotLast: a KeyUpdate followed by more data in the same
	// record (RFC 8446 §5.1: must align with the record; unexpected_message).
	ErrKeyUpdateNotLast error = &recordError{AlertUnexpectedMessage, "KeyUpdate not at the end of its record"}
	// ErrBadKeyUpdate: a KeyUpdate body is not one byte (decode_error).
	ErrBadKeyUpdate error = &recordError{AlertDecodeError, "malformed KeyUpdate"}
	// ErrBadRequestUpdate: request_update is neither 0 nor 1
	// (illegal_parameter, RFC 8446 §4.6.3).
	ErrBadRequestUpdate error = &recordError{AlertIllegalParameter, "KeyUpdate request_update not 0 or 1"}
	// ErrBadAlert: an alert content is not exactly two bytes (decode_error).
	ErrBadAlert error = &recordError{AlertDecodeError, "malformed alert"}
)

// AlertFor returns the alert description to send (fatal) before closing
// because of err: bad_record_mac for ErrBadRecordMAC, the alert attached to
// each ErrBadRecord error, and internal_error for anything else (nil gives
// close_notify).
func AlertFor(err error) uint8 {
	if err == nil {
		return AlertCloseNotify
	}
	if err == ErrBadRecordMAC {
		return AlertBadRecordMAC
	}
	var re *recordError
	if errors.As(err, &re) {
		return re.alert
	}
	return AlertInternalError
}

// NextHandshake returns the first handshake message in content (the content
// of a TypeHandshake record): its type, its body (a sub-slice of content)
// and the rest of content after it. Loop while len(rest) > 0.
//
// Messages may not span records in this package's use: an empty content or
// a message cut by the end of content gives ErrFragmented. A KeyUpdate
// that is not the last message of the content gives ErrKeyUpdateNotLast.
func NextHandshake(content []byte) (msgType uint8, body, rest []byte, err error) {
	if len(content) < HandshakeHeaderLen {
		return 0, nil, nil, ErrFragmented
	}
	n := int(content[1])<<16 | int(content[2])<<8 | int(content[3])
	if len(content)-HandshakeHeaderLen < n {
		return 0, nil, nil, ErrFragmented
	}
	msgType = content[0]
	end := HandshakeHeaderLen + n
	if msgType == HandshakeKeyUpdate && end != len(content) {
		return 0, nil, nil, ErrKeyUpdateNotLast
	}
	return msgType, content[HandshakeHeaderLen:end:end], content[end:], nil
}

// ParseKeyUpdate decodes a KeyUpdate body (as returned by NextHandshake):
// requestUpdate reports update_requested (1). The receiver calls Update on
// its read Half; if requestUpdate, it must send its own KeyUpdate (with
// requestUpdate false) and Update its write Half.
func ParseKeyUpdate(body []byte) (requestUpdate bool, err error) {
	if len(body) != 1 {
		return false, ErrBadKeyUpdate
	}
	switch body[0] {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, ErrBadRequestUpdate
}

// AppendKeyUpdate appends a KeyUpdate handshake message (4-byte header + 1
// byte) to dst, to be sealed as TypeHandshake in a record of its own; call
// Update on the write Half right after sealing it.
func AppendKeyUpdate(dst []byte, requestUpdate bool) []byte {
	var r byte
	if requestUpdate {
		r = 1
	}
	return append(dst, HandshakeKeyUpdate, 0, 0, 1, r)
}

// AppendAlert appends an alert content (2 bytes: level, description) to
// dst, to be sealed as TypeAlert. In TLS 1.3 every alert but close_notify
// and user_canceled is fatal; level is sent as given.
func AppendAlert(dst []byte, level, desc uint8) []byte {
	return append(dst, level, desc)
}

// ParseAlert decodes an alert content (the content of a TypeAlert record).
// RFC 8446 §5.1 forbids several alerts in one record, so anything but
// exactly two bytes is ErrBadAlert.
func ParseAlert(content []byte) (level, desc uint8, err error) {
	if len(content) != 2 {
		return 0, 0, ErrBadAlert
	}
	return content[0], content[1], nil
}
