package loop

import (
	"errors"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/wsgate/wsgate/tunnel/rawsys"
	"golang.org/x/sys/unix"
)

// dialRaw connects to ap without net.Dialer. The dialer's context, deadline
// timer and address bookkeeping (getsockname, getpeername, SO_ERROR) were a
// third of the allocations of a WebSocket handshake through wsgate. Here:
// a non-blocking socket, TCP_NODELAY, connect(2), the socket handed to the
// runtime poller as an *os.File (named name, which error messages show),
// and one poll(2) that finds the connection already up on a loopback or LAN
// backend; only when it is not does the caller wait, parked, up to timeout.
func dialRaw(ap netip.AddrPort, name string, timeout time.Duration) (*os.File, error) {
	fd, err := startConnect(ap, name)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name) // non-blocking: polled by the runtime
	if f.SetDeadline(time.Time{}) != nil {
		// Not polled (the runtime could not register it): reads would block
		// a thread and deadlines would not work. Never seen; refuse loudly.
		f.Close()
		return nil, &os.PathError{Op: "connect", Path: name, Err: errors.New("socket not pollable by the Go runtime")}
	}
	if up, err := connectDone(fd); up || err != nil {
		if err != nil {
			f.Close()
			return nil, &os.PathError{Op: "connect", Path: name, Err: err}
		}
		return f, nil
	}
	// Still connecting: wait for writability, parked, until the timeout.
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	if timeout > 0 {
		f.SetWriteDeadline(time.Now().Add(timeout))
	}
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		up, err := connectDone(int(fd))
		cerr = err
		return up || err != nil
	})
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		f.Close()
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			return nil, &os.PathError{Op: "connect", Path: name, Err: os.ErrDeadlineExceeded}
		}
		var pe *os.PathError
		if errors.As(werr, &pe) {
			werr = pe.Err
		}
		return nil, &os.PathError{Op: "connect", Path: name, Err: werr}
	}
	return f, nil
}

// startConnect opens a non-blocking socket with TCP_NODELAY and starts its
// connect to ap (name is the backend's, for errors): connected or in
// progress.
func startConnect(ap netip.AddrPort, name string) (int, error) {
	family := unix.AF_INET
	if !ap.Addr().Is4() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := rawsys.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	rawsys.Nodelay(fd)
	if err := connectRaw(fd, ap, family); err != nil && err != unix.EINPROGRESS {
		rawsys.Close(fd)
		return -1, &os.PathError{Op: "connect", Path: name, Err: err}
	}
	return fd, nil
}

// connectRaw is connect(2) with the address built on the stack.
func connectRaw(fd int, ap netip.AddrPort, family int) error {
	var p unsafe.Pointer
	var n uintptr
	port := ap.Port()
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	if family == unix.AF_INET {
		sa4.Family = unix.AF_INET
		sa4.Addr = ap.Addr().Unmap().As4()
		pb := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		p, n = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = unix.AF_INET6
		sa6.Addr = ap.Addr().As16()
		pb := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		p, n = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	_, _, errno := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), n) // non-blocking
	return rawsys.Err(errno)
}

// connectDone reports whether a non-blocking connect has finished, and its
// error when it failed; (false, nil) while it is in progress.
func connectDone(fd int) (bool, error) {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	var zero unix.Timespec // ppoll with a zero timeout: never blocks
	r, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd[0])), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if e != 0 && e != unix.EINTR {
		return false, rawsys.Err(e)
	}
	if r == 0 || e == unix.EINTR {
		return false, nil
	}
	if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
		soerr, err := rawsys.SoError(fd)
		if err != nil {
			return false, err
		}
		if soerr == 0 { // HUP without an error: the peer reset before we looked
			return false, unix.ECONNRESET
		}
		return false, unix.Errno(soerr)
	}
	return true, nil
}
