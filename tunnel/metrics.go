package tunnel

import "github.com/VictoriaMetrics/metrics"

// Package-level counters, served by cmd/wsgate from the default set.
// Gauges (open tunnels) are registered by the cmd layer from Engine.Len.
// Loops add bytes once per epoll batch, not per read.
var (
	openedTotal = metrics.GetOrCreateCounter(`wsgate_tunnel_opened_total`)

	closesTotal = [...]*metrics.Counter{
		ClientClosed:  metrics.GetOrCreateCounter(`wsgate_tunnel_closes_total{reason="client_closed"}`),
		BackendClosed: metrics.GetOrCreateCounter(`wsgate_tunnel_closes_total{reason="backend_closed"}`),
		IdleTimeout:   metrics.GetOrCreateCounter(`wsgate_tunnel_closes_total{reason="idle_timeout"}`),
		Error:         metrics.GetOrCreateCounter(`wsgate_tunnel_closes_total{reason="error"}`),
		Shutdown:      metrics.GetOrCreateCounter(`wsgate_tunnel_closes_total{reason="shutdown"}`),
	}

	// Indexed by the source side of the direction.
	bytesTotal = [2]*metrics.Counter{
		SideClient:  metrics.GetOrCreateCounter(`wsgate_tunnel_bytes_total{dir="client_to_backend"}`),
		SideBackend: metrics.GetOrCreateCounter(`wsgate_tunnel_bytes_total{dir="backend_to_client"}`),
	}

	spliceSwitchesTotal = metrics.GetOrCreateCounter(`wsgate_tunnel_splice_switches_total`)
	spliceBytesTotal    = metrics.GetOrCreateCounter(`wsgate_tunnel_splice_bytes_total`)
	pipesCreatedTotal   = metrics.GetOrCreateCounter(`wsgate_tunnel_pipes_created_total`)
	pipeErrorsTotal     = metrics.GetOrCreateCounter(`wsgate_tunnel_pipe_errors_total`)
)
