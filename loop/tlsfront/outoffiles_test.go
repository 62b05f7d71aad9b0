package tlsfront

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Out of files after the handshake: the client gets a 503 with Retry-After
// and a clean close, over TLS 1.3 (sealed with the front's own record
// state) and TLS 1.2 (crypto/tls).
func TestOutOfFilesAnswers503(t *testing.T) {
	emfile := func(*net.UnixAddr) (*net.UnixConn, error) {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	testDialInner.Store(&emfile)
	defer testDialInner.Store(nil)
	tf := startFront(t)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tf.f.Addrs()[0].String(),
			&tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c) // io.EOF (close_notify) ends it without an error
		c.Close()
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 503 ") || !strings.Contains(string(got), "Retry-After: 1") {
			t.Fatalf("TLS %x: %q %v, want a 503 with Retry-After and close_notify", v, got, err)
		}
	}
}
