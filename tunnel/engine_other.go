//go:build !linux

package tunnel

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Engine is unavailable on this OS; New returns ErrUnsupported.
type Engine struct{}

// New returns ErrUnsupported: the engine needs epoll and splice.
func New(cfg Config) (*Engine, error) { return nil, ErrUnsupported }

// Add returns ErrUnsupported. It cannot close fds portably here.
func (e *Engine) Add(clientFd, backendFd int, toBackend, toClient []byte, done func(Stats)) error {
	return ErrUnsupported
}

// AddTagged returns ErrUnsupported.
func (e *Engine) AddTagged(tag uint64, clientFd, backendFd int, toBackend, toClient []byte, done func(Stats)) error {
	return ErrUnsupported
}

// CloseTagged does nothing where the engine is unavailable.
func (e *Engine) CloseTagged(tag uint64) int { return 0 }

func (e *Engine) Len() int     { return 0 }
func (e *Engine) CloseAll()    {}
func (e *Engine) Close() error { return nil }

// Metrics returns an empty set.
func (e *Engine) Metrics() *metrics.Set { return metrics.NewSet() }

// CloseTaggedBefore does nothing where the engine is unavailable.
func (e *Engine) CloseTaggedBefore(tag uint64, before time.Time, n int, r Reason) int { return 0 }

// Pending is unavailable on this OS (Attach returns ErrUnsupported).
type Pending struct{}

// Attach returns ErrUnsupported.
func (e *Engine) Attach(fd int, connecting bool) (*Pending, error) { return nil, ErrUnsupported }

// Fd returns -1.
func (p *Pending) Fd() int { return -1 }

// Wait returns ErrUnsupported.
func (p *Pending) Wait(deadline time.Time) error { return ErrUnsupported }

// Close does nothing.
func (p *Pending) Close() {}

// WantOutput returns ErrUnsupported.
func (p *Pending) WantOutput() error { return ErrUnsupported }

// AddPending returns ErrUnsupported.
func (e *Engine) AddPending(tag uint64, clientFd int, p *Pending, toBackend, toClient []byte, done func(Stats)) error {
	return ErrUnsupported
}
