package loop

import (
	"context"
	"time"
)

// DrainPhase is where a Server is in its drain, for metrics and status.
type DrainPhase int32

const (
	DrainServing DrainPhase = iota // not draining
	DrainWaiting                   // not accepting; requests finishing, tunnels kept open
	DrainClosing                   // closing the tunnels still open, spread over the rest of the window
	DrainDone                      // everything closed
)

// String returns "serving", "waiting", "closing" or "done".
func (p DrainPhase) String() string {
	switch p {
	case DrainServing:
		return "serving"
	case DrainWaiting:
		return "waiting"
	case DrainClosing:
		return "closing"
	}
	return "done"
}

// Phase is the server's drain phase.
func (s *Server) Phase() DrainPhase { return DrainPhase(s.drainPhase.Load()) }

// Drain shuts the server down gracefully within timeout:
//
//   - it hands its listeners over to a successor, if one is bound to the
//     same addresses, and stops accepting (Shutdown; drain_linux.go);
//   - requests in progress finish, each answered with Connection: close,
//     and idle keep-alive connections close;
//   - tunnels stay up while they last, until the final spread of the
//     window (timeout-spread .. timeout), when the ones still open are
//     closed at an even rate (tunnel.Engine.CloseSpread) so that their
//     clients do not all reconnect in the same instant.
//
// It returns early once no request and no tunnel is left, and when ctx is
// done (a second signal) after closing everything at once. spread <= 0
// means a quarter of timeout; spread is at most timeout.
func (s *Server) Drain(ctx context.Context, timeout, spread time.Duration) {
	if spread <= 0 {
		spread = timeout / 4
	}
	spread = min(spread, timeout)
	start := time.Now()
	end := start.Add(timeout)
	s.drainPhase.Store(int32(DrainWaiting))
	defer s.drainPhase.Store(int32(DrainDone))

	// Requests finish (or the window ends) while tunnels are watched.
	sctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		if err := s.Shutdown(sctx); err != nil && ctx.Err() == nil && time.Now().Before(end) {
			s.cfg.Logf("drain: %v", err)
		}
	}()

	// Tunnels: wait while they end by themselves, up to the spread.
	engine := s.cfg.Tunnels
	spreadAt := end.Add(-spread)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	shutDone := false
	for !(shutDone && engine.Len() == 0) && time.Now().Before(spreadAt) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-shut:
			shutDone, shut = true, nil // a handshake in progress may still add a tunnel until then
		case <-t.C:
		}
	}
	if n := engine.Len(); n > 0 {
		s.drainPhase.Store(int32(DrainClosing))
		left := time.Until(end)
		s.cfg.Logf("drain: closing %d tunnels over %v", n, left.Round(time.Millisecond))
		engine.CloseSpread(ctx, left)
	}
	if !shutDone {
		<-shut
	}
}
