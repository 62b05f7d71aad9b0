package http1

// Byte classes, as 256-entry tables so the scanners cost one load per byte.
const (
	cToken      = 1 << iota // tchar (RFC 9110 5.6.2)
	cValue                  // field-vchar / SP / HTAB / obs-text (RFC 9110 5.5)
	cTarget                 // visible ASCII allowed in a request-target (percent handled apart)
	cHost                   // reg-name byte: unreserved / sub-delims (RFC 3986 3.2.2), no pct-encoding
	cHex                    // HEXDIG
	cReason                 // reason-phrase: HTAB / SP / VCHAR / obs-text
	cUnreserved             // unreserved (RFC 3986 2.3): ALPHA / DIGIT / "-" / "." / "_" / "~"
	cPathPlain              // cTarget but '?', '.' and '\\': a path byte that needs no second look
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if isTchar(b) {
			t[c] |= cToken
		}
		if b == '\t' || b == ' ' || (b >= 0x21 && b != 0x7f) {
			t[c] |= cValue | cReason
		}
		if b >= 0x21 && b <= 0x7e && b != '%' {
			t[c] |= cTarget
		}
		if isAlnum(b) || b == '-' || b == '.' || b == '_' || b == '~' ||
			b == '!' || b == '$' || b == '&' || b == '\'' || b == '(' || b == ')' ||
			b == '*' || b == '+' || b == ',' || b == ';' || b == '=' {
			t[c] |= cHost
		}
		if (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F') {
			t[c] |= cHex
		}
		if isAlnum(b) || b == '-' || b == '.' || b == '_' || b == '~' {
			t[c] |= cUnreserved
		}
		if b >= 0x21 && b <= 0x7e && b != '%' && b != '?' && b != '.' && b != '\\' {
			t[c] |= cPathPlain
		}
	}
	return t
}()

func isAlnum(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
}

func isTchar(b byte) bool {
	if isAlnum(b) {
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isToken(b byte) bool { return class[b]&cToken != 0 }
func isHex(b byte) bool   { return class[b]&cHex != 0 }
func isOWS(b byte) bool   { return b == ' ' || b == '\t' }

func unhex(b byte) byte {
	switch {
	case b >= '0' && b <= '9':
		return b - '0'
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10
	default:
		return b - 'A' + 10
	}
}

// lower folds an ASCII letter to lower case.
func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// equalFold reports whether b equals s ignoring ASCII case. s may hold any bytes.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != s[i] && lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals s ignoring ASCII case: for header
// names and tokens, which are ASCII (strings.EqualFold would also fold
// Unicode, and bytes.EqualFold needs s as bytes).
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// equalFoldBytes is equalFold for two byte slices.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] && lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func allToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isToken(c) {
			return false
		}
	}
	return true
}
