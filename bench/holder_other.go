//go:build !linux

package bench

import (
	"errors"
	"time"
)

// holder is Linux-only (epoll); elsewhere each held connection keeps its
// goroutine.
type holder struct{}

func newHolder(func(int, error), time.Duration) (*holder, error) {
	return nil, errors.New("bench: no epoll holder on this platform")
}
func (h *holder) add(*Conn, int) error       { return errors.New("bench: no epoll holder") }
func (h *holder) closeAll(time.Duration) int { return 0 }
