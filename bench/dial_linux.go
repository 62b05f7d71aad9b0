package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// controlNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket before it is bound
// to a source address, so the kernel picks the source port at connect time
// by the full 4-tuple: each source address then gives a whole ephemeral
// port range per destination instead of one port per bind.
func controlNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	_ = serr // best effort: older kernels lack the option and still work
	return nil
}

// readRSS returns the process's resident set size in bytes, 0 if unknown.
func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
