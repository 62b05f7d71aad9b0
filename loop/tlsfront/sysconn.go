package tlsfront

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/tunnel/rawsys"
)

// sysConn is a socket of the TLS front (the client's, under crypto/tls, or
// the inner one) whose reads and writes are raw system calls made inside
// the runtime poller's wait (syscall.RawConn), with the conn's deadlines.
// The net package's own Read and Write go through syscall.Syscall, whose
// entersyscall wakes the runtime's sysmon whenever the process had been
// idle: on a relay that is most messages (see tunnel/rawsys). Everything
// else (deadlines, addresses, Close, CloseWrite) is the embedded conn's.
type sysConn struct {
	net.Conn
	rc syscall.RawConn

	// The callbacks and their arguments and results, bound once per
	// connection so that a read or a write allocates nothing. A sysConn is
	// read by one goroutine and written by one at a time.
	readFn, writeFn func(fd uintptr) bool
	rbuf            []byte
	rn              int
	rerr            error
	wbuf            []byte
	wn              int
	werr            error
}

// newSysConn wraps c, which must be a *net.TCPConn or a *net.UnixConn.
func newSysConn(c interface {
	net.Conn
	SyscallConn() (syscall.RawConn, error)
}) (*sysConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	sc := &sysConn{Conn: c, rc: rc}
	sc.readFn = func(fd uintptr) bool {
		n, err := rawsys.Read(int(fd), sc.rbuf)
		if err == unix.EAGAIN {
			return false // wait for input
		}
		sc.rn, sc.rerr = n, err
		return true
	}
	sc.writeFn = func(fd uintptr) bool {
		for sc.wn < len(sc.wbuf) {
			n, err := rawsys.Write(int(fd), sc.wbuf[sc.wn:])
			switch err {
			case nil:
				sc.wn += n
			case unix.EAGAIN:
				return false // wait for room
			default:
				sc.werr = err
				return true
			}
		}
		return true
	}
	return sc, nil
}

// Read reads into p, waiting (up to the read deadline) while there is
// nothing to read; 0 bytes at the end of input is io.EOF.
func (sc *sysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	sc.rbuf, sc.rn, sc.rerr = p, 0, nil
	err := sc.rc.Read(sc.readFn)
	sc.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case sc.rerr != nil:
		return 0, os.NewSyscallError("read", sc.rerr)
	case sc.rn == 0:
		return 0, io.EOF
	}
	return sc.rn, nil
}

// Write writes all of p, waiting (up to the write deadline) for room.
func (sc *sysConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	sc.wbuf, sc.wn, sc.werr = p, 0, nil
	err := sc.rc.Write(sc.writeFn)
	n := sc.wn
	sc.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case sc.werr != nil:
		return n, os.NewSyscallError("write", sc.werr)
	}
	return n, nil
}
