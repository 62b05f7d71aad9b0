//go:build !linux

package bench

import "syscall"

// controlNoPort does nothing outside Linux.
func controlNoPort(network, address string, c syscall.RawConn) error { return nil }

// readRSS is unknown outside Linux.
func readRSS() uint64 { return 0 }
