//go:build !linux

package tunnel

import (
	"context"
	"time"
)

// CloseSome does nothing where the engine is unavailable.
func (e *Engine) CloseSome(n int) int { return 0 }

// CloseSpread does nothing where the engine is unavailable.
func (e *Engine) CloseSpread(ctx context.Context, d time.Duration) int { return 0 }
