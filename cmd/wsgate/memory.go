package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// trimMemory returns memory to the OS after a burst. A proxy holding
// thousands of idle tunnels allocates almost nothing, so after the burst
// that opened them no garbage collection runs (Go collects when allocation
// reaches the heap goal, or every two minutes), and the burst's garbage
// (handshake buffers, netpoll's connection state) stays resident. Every
// interval, if no collection has run since the last look and the heap holds
// at least slack bytes more than the last collection found live, it
// collects and returns free pages (debug.FreeOSMemory): a few milliseconds
// of CPU, only when the process is quiet.
func trimMemory(interval time.Duration, slack uint64) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	var lastCycles uint64
	for range time.Tick(interval) {
		metrics.Read(samples)
		cycles := samples[0].Value.Uint64()
		live, objects := samples[1].Value.Uint64(), samples[2].Value.Uint64()
		if cycles == lastCycles && objects > live+slack {
			// Twice: the first collection moves sync.Pool contents to the
			// pools' victim caches, the second frees them.
			debug.FreeOSMemory()
			debug.FreeOSMemory()
			metrics.Read(samples)
			cycles = samples[0].Value.Uint64()
		}
		lastCycles = cycles
	}
}
