package tunnel

import "github.com/VictoriaMetrics/metrics"

// engineMetrics are one Engine's counters, in its own metrics.Set
// (Engine.Metrics), so two engines in one process share nothing. Gauges
// (open tunnels) are registered by the cmd layer from Engine.Len. Loops
// add bytes once per epoll batch, not per read.
type engineMetrics struct {
	set *metrics.Set

	opened *metrics.Counter
	closes [Rebalance + 1]*metrics.Counter // by Reason
	bytes  [2]*metrics.Counter             // by the source side of the direction

	spliceSwitches, spliceBytes, pipesCreated, pipeErrors *metrics.Counter
	tlsRested                                             *metrics.Counter // TLS tunnels whose AEADs went at rest (restIdleTLS)

	// Close frames the engine sent, by destination side and code (index
	// 0: CodeGoingAway, 1: CodeServiceRestart), and tunnels it meant to end
	// with close frames that got a plain close instead.
	closeFrames    [2][2]*metrics.Counter
	closeFallbacks *metrics.Counter
}

// frameSent counts a close frame sent to side to.
func (m *engineMetrics) frameSent(to int, code uint16) {
	i := 0
	if code == CodeServiceRestart {
		i = 1
	}
	m.closeFrames[to][i].Inc()
}

func newEngineMetrics() *engineMetrics {
	set := metrics.NewSet()
	m := &engineMetrics{set: set}
	m.opened = set.NewCounter(`wsgate_tunnel_opened_total`)
	m.closes[ClientClosed] = set.NewCounter(`wsgate_tunnel_closes_total{reason="client_closed"}`)
	m.closes[BackendClosed] = set.NewCounter(`wsgate_tunnel_closes_total{reason="backend_closed"}`)
	m.closes[IdleTimeout] = set.NewCounter(`wsgate_tunnel_closes_total{reason="idle_timeout"}`)
	m.closes[Error] = set.NewCounter(`wsgate_tunnel_closes_total{reason="error"}`)
	m.closes[Shutdown] = set.NewCounter(`wsgate_tunnel_closes_total{reason="shutdown"}`)
	m.closes[Rebalance] = set.NewCounter(`wsgate_tunnel_closes_total{reason="rebalance"}`)
	m.bytes[SideClient] = set.NewCounter(`wsgate_tunnel_bytes_total{dir="client_to_backend"}`)
	m.bytes[SideBackend] = set.NewCounter(`wsgate_tunnel_bytes_total{dir="backend_to_client"}`)
	m.spliceSwitches = set.NewCounter(`wsgate_tunnel_splice_switches_total`)
	m.spliceBytes = set.NewCounter(`wsgate_tunnel_splice_bytes_total`)
	m.pipesCreated = set.NewCounter(`wsgate_tunnel_pipes_created_total`)
	m.pipeErrors = set.NewCounter(`wsgate_tunnel_pipe_errors_total`)
	m.tlsRested = set.NewCounter(`wsgate_tunnel_tls_rested_total`)
	m.closeFrames[SideClient][0] = set.NewCounter(`wsgate_tunnel_close_frames_total{to="client",code="1001"}`)
	m.closeFrames[SideClient][1] = set.NewCounter(`wsgate_tunnel_close_frames_total{to="client",code="1012"}`)
	m.closeFrames[SideBackend][0] = set.NewCounter(`wsgate_tunnel_close_frames_total{to="backend",code="1001"}`)
	m.closeFallbacks = set.NewCounter(`wsgate_tunnel_close_fallbacks_total`)
	return m
}
