package tunnel

import "github.com/VictoriaMetrics/metrics"

// engineMetrics are one Engine's counters, in its own metrics.Set
// (Engine.Metrics), so two engines in one process share nothing. Gauges
// (open tunnels) are registered by the cmd layer from Engine.Len. Loops
// add bytes once per epoll batch, not per read.
type engineMetrics struct {
	set *metrics.Set

	opened *metrics.Counter
	closes [Shutdown + 1]*metrics.Counter // by Reason
	bytes  [2]*metrics.Counter            // by the source side of the direction

	spliceSwitches, spliceBytes, pipesCreated, pipeErrors *metrics.Counter
	tlsRested                                             *metrics.Counter // TLS tunnels whose AEADs went at rest (restIdleTLS)
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
	m.bytes[SideClient] = set.NewCounter(`wsgate_tunnel_bytes_total{dir="client_to_backend"}`)
	m.bytes[SideBackend] = set.NewCounter(`wsgate_tunnel_bytes_total{dir="backend_to_client"}`)
	m.spliceSwitches = set.NewCounter(`wsgate_tunnel_splice_switches_total`)
	m.spliceBytes = set.NewCounter(`wsgate_tunnel_splice_bytes_total`)
	m.pipesCreated = set.NewCounter(`wsgate_tunnel_pipes_created_total`)
	m.pipeErrors = set.NewCounter(`wsgate_tunnel_pipe_errors_total`)
	m.tlsRested = set.NewCounter(`wsgate_tunnel_tls_rested_total`)
	return m
}
