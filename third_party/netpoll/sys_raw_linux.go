// wsgate patch (new file): see WSGATE.md.

package netpoll

import (
	"syscall"
	"unsafe"
)

// The system calls netpoll makes for every connection on its accept, set-up
// and close paths, made raw: without entersyscall, which wakes the runtime's
// sysmon thread from its idle sleep (sysmon then polls every 20 µs for about
// a millisecond). Raw is only right for calls that cannot block: a raw call
// keeps its P, and the scheduler cannot hand it to another thread meanwhile.
// netpoll's reads and writes (readv, writev, sendmsg) and epoll_ctl are
// already raw upstream.

// closeRaw is syscall.Close(fd) without telling the scheduler.
//
// close(2) of a socket does not block: the kernel queues the FIN (or sends
// an RST when unread input is left) and returns; the connection's shutdown
// goes on in the kernel without the process. The one exception is SO_LINGER
// with a non-zero timeout, with which close(2) of a TCP socket waits until
// the unsent data has been acknowledged or the timeout has passed, whether
// the socket is non-blocking or not. Neither netpoll nor wsgate sets
// SO_LINGER, and checking for it would cost every close a getsockopt (a
// system call per WebSocket handshake, which wsgate counts): a user of
// Conn.Fd() who sets a linger timeout must close that socket itself.
func closeRaw(fd int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
		return e
	}
	return nil
}

// setsockoptIntRaw is syscall.SetsockoptInt without telling the scheduler.
// Used for TCP_NODELAY: setting an option takes the socket's lock at most,
// it never waits for the network.
func setsockoptIntRaw(fd, level, opt, value int) error {
	v := int32(value)
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v), 0)
	if e != 0 {
		return e
	}
	return nil
}

// acceptRaw is syscall.Accept without telling the scheduler (accept4 with
// no flags, as syscall.Accept calls it). It must not be called on a
// blocking socket, where it would wait for a connection holding its P:
// netpoll's listener makes its socket non-blocking when it is created
// (CreateListener, ConvertListener fail otherwise), so accept(2) returns
// EAGAIN when no connection is pending.
func acceptRaw(fd int) (nfd int, sa syscall.Sockaddr, err error) {
	var rsa syscall.RawSockaddrAny
	n := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(fd),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)), 0, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	nfd = int(r)
	if sa, err = rawToSockaddr(&rsa); err != nil {
		syscall.RawSyscall(syscall.SYS_CLOSE, r, 0, 0)
		return -1, nil, err
	}
	return nfd, sa, nil
}

// rawToSockaddr is syscall's anyToSockaddr (unexported) for the families a
// stream listener accepts: AF_INET, AF_INET6 and AF_UNIX.
func rawToSockaddr(rsa *syscall.RawSockaddrAny) (syscall.Sockaddr, error) {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		pp := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		sa := &syscall.SockaddrInet4{Addr: pp.Addr}
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		sa.Port = int(p[0])<<8 + int(p[1])
		return sa, nil
	case syscall.AF_INET6:
		pp := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		sa := &syscall.SockaddrInet6{Addr: pp.Addr, ZoneId: pp.Scope_id}
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		sa.Port = int(p[0])<<8 + int(p[1])
		return sa, nil
	case syscall.AF_UNIX:
		pp := (*syscall.RawSockaddrUnix)(unsafe.Pointer(rsa))
		if pp.Path[0] == 0 {
			pp.Path[0] = '@' // an abstract name (or none), written as syscall does
		}
		path := (*[len(pp.Path)]byte)(unsafe.Pointer(&pp.Path))
		n := 0
		for n < len(path) && path[n] != 0 { // the name ends at its NUL, as in syscall
			n++
		}
		return &syscall.SockaddrUnix{Name: string(path[:n])}, nil
	}
	return nil, syscall.EAFNOSUPPORT
}
