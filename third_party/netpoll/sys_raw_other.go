// wsgate patch (new file): see WSGATE.md.

//go:build !windows && !linux

package netpoll

import "syscall"

func closeRaw(fd int) error { return syscall.Close(fd) }

func setsockoptIntRaw(fd, level, opt, value int) error {
	return syscall.SetsockoptInt(fd, level, opt, value)
}

func acceptRaw(fd int) (int, syscall.Sockaddr, error) { return syscall.Accept(fd) }
