package loop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// System calls on non-blocking sockets, made without telling the scheduler
// (no entersyscall/exitsyscall), as the tunnel engine makes its own
// (tunnel/rawsys_linux.go). A call through syscall.Syscall marks the P as
// in a system call: when sysmon sleeps (the P was idle), the call wakes it,
// and it then polls every 20 µs for a millisecond before it slows down;
// and a call the kernel preempts (on a busy box, the peer it woke runs
// first) looks long enough for sysmon to take the P and start another
// thread. Measured on 2 cores under handshake load before this file:
// sysmon's thread woke about once per handshake and used 9% of wsgate's CPU.
// None of these calls block: every socket here is non-blocking, and no
// socket lingers on close.

func rawErr(e unix.Errno) error {
	switch e {
	case 0:
		return nil
	case unix.EAGAIN:
		return unix.EAGAIN
	case unix.EINTR:
		return unix.EINTR
	case unix.EINPROGRESS:
		return unix.EINPROGRESS
	}
	return e
}

func rawSocket(family, typ int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), 0)
	if e != 0 {
		return -1, rawErr(e)
	}
	return int(fd), nil
}

// rawNodelay sets TCP_NODELAY; errors are ignored, as by every caller.
func rawNodelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

func rawSoError(fd int) (int, error) {
	var v int32
	n := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, rawErr(e)
	}
	return int(v), nil
}

func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, rawErr(e)
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, rawErr(e)
	}
	return int(r), nil
}

// rawDup duplicates fd, close-on-exec.
func rawDup(fd uintptr) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_FCNTL, fd, unix.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, rawErr(e)
	}
	return int(r), nil
}

func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
