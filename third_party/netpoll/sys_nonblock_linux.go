// wsgate patch (new file): see WSGATE.md.

package netpoll

import "syscall"

// setNonblockRaw is syscall.SetNonblock(fd, true) without telling the
// scheduler: fcntl on a socket never blocks, and syscall.SetNonblock's
// entersyscall woke the runtime's sysmon thread from its idle sleep on
// every accepted connection.
func setNonblockRaw(fd int) {
	fl, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 || fl&syscall.O_NONBLOCK != 0 {
		return
	}
	syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFL, fl|syscall.O_NONBLOCK)
}
