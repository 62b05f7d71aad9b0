//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func uintptrOf(p *int32) uintptr             { return uintptr(unsafe.Pointer(p)) }
func uintptrOfEv(p *unix.EpollEvent) uintptr { return uintptr(unsafe.Pointer(p)) }
func uintptrOfB(b []byte) uintptr            { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
func uintptrOfSa(p *unix.RawSockaddrInet4) uintptr {
	return uintptr(unsafe.Pointer(p))
}

// rawSockaddr is sa as connect(2) takes it.
func rawSockaddr(sa *unix.SockaddrInet4) unix.RawSockaddrInet4 {
	r := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: sa.Addr}
	p := (*[2]byte)(unsafe.Pointer(&r.Port))
	p[0], p[1] = byte(sa.Port>>8), byte(sa.Port)
	return r
}
