// Package rawsys makes the system calls of wsgate's socket paths that never
// block, without telling the Go scheduler (no entersyscall/exitsyscall).
//
// Every fd passed here is non-blocking, splice gets SPLICE_F_NONBLOCK, and
// no socket lingers on close, so none of these calls can block. A call
// through syscall.Syscall marks the P as in a system call: when sysmon
// sleeps (the P was idle) the call wakes it, and it then polls every 20 µs
// for a millisecond before slowing down; and a call the kernel preempts (on
// a busy box the peer it woke runs first) looks long enough for sysmon to
// take the P and start another thread. Measured on 2 cores before these
// were raw: sysmon woke about once per WebSocket handshake and used 9% of
// wsgate's CPU, and a tenth of the relay's CPU on a 64 B echo.
//
// Both the reactor (loop) and the tunnel engine use it; it knows nothing of
// HTTP or of tunnels.
package rawsys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Err turns an errno into the error callers compare against: the common
// values are returned as the unix package's own (comparable with ==).
func Err(e unix.Errno) error {
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

// Socket creates a socket; typ should carry SOCK_NONBLOCK.
func Socket(family, typ int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), 0)
	if e != 0 {
		return -1, Err(e)
	}
	return int(fd), nil
}

// Nodelay sets TCP_NODELAY; errors are ignored, as by every caller.
func Nodelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// Inq returns how many bytes wait unread in a TCP socket's receive queue
// (ioctl SIOCINQ).
func Inq(fd int) (int, error) {
	var v int32
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCINQ, uintptr(unsafe.Pointer(&v)))
	if e != 0 {
		return 0, Err(e)
	}
	return int(v), nil
}

// SoError reads and clears the socket's pending error (SO_ERROR).
func SoError(fd int) (int, error) {
	var v int32
	n := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, Err(e)
	}
	return int(v), nil
}

// Read, Write, Peek and Splice retry on EINTR themselves, so that no
// caller needs a case for it (on a non-blocking fd it should not happen,
// but a signal handler without SA_RESTART could make it).

// Read and Write are for sockets only: they are recvfrom(2) and sendto(2)
// without an address, which go to the socket directly, where read(2) and
// write(2) go through the VFS first (the file position lock, the
// read/write iterators; in a perf profile of the WebSocket handshake load
// that path was about 1.7 µs of kernel time per handshake, over its ten
// reads and writes). sendto is given MSG_NOSIGNAL: a write
// to a connection the peer reset fails with EPIPE and raises no SIGPIPE.

// Read reads into p from a socket; an empty p reads nothing. EAGAIN:
// nothing to read.
func Read(fd int, p []byte) (int, error) {
	return rw(unix.SYS_RECVFROM, fd, p, 0)
}

// Write writes p to a socket, or as much of it as fits; an empty p writes
// nothing. EAGAIN: no room.
func Write(fd int, p []byte) (int, error) {
	return rw(unix.SYS_SENDTO, fd, p, unix.MSG_NOSIGNAL)
}

func rw(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		r, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), flags, 0, 0)
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, Err(e)
		}
	}
}

// Peek reports whether a socket has input (or is at its end, or failed)
// without taking any of it: recvfrom(MSG_PEEK|MSG_DONTWAIT) into b, which
// must hold a byte. False only when there is nothing to read yet (EAGAIN).
func Peek(fd int, b []byte) bool {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return e != unix.EAGAIN
		}
	}
}

// PeekN is Peek that also says what is there: n > 0 bytes waiting, 0 and
// no error at the end of input (the peer's FIN), EAGAIN when there is
// nothing to read yet, or the socket's error. b must hold a byte.
func PeekN(fd int, b []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, Err(e)
		}
	}
}

// Splice moves up to n bytes from one fd to another (one of them a pipe).
func Splice(from, to, n, flags int) (int, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), uintptr(flags))
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, Err(e)
		}
	}
}

// ShutdownWrite half-closes a socket (SHUT_WR); errors are ignored.
func ShutdownWrite(fd int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
}

// Dup duplicates fd, close-on-exec.
func Dup(fd int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return -1, Err(e)
	}
	return int(r), nil
}

// Fcntl is fcntl(2) with an int argument.
func Fcntl(fd, cmd, arg int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if e != 0 {
		return 0, Err(e)
	}
	return int(r), nil
}

// EpollCtl is epoll_ctl(2).
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return Err(e)
	}
	return nil
}

// Close closes fd; errors are ignored (a non-lingering socket's close
// cannot fail in a way the caller could act on).
func Close(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
