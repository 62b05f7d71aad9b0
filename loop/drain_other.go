//go:build !linux

package loop

import "context"

// handOver has no steering outside Linux: the listeners close at once.
func (s *Server) handOver(ctx context.Context) {}
