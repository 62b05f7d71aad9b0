// wsgate patch (new file): see WSGATE.md.

//go:build !windows && !linux

package netpoll

import "syscall"

func setNonblockRaw(fd int) { syscall.SetNonblock(fd, true) }
