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
// at least slack bytes more than the last collection found live, or at
// least slack free bytes not yet returned to the OS, it collects and
// returns free pages (debug.FreeOSMemory): a few milliseconds of CPU, only
// when the process is quiet.
func trimMemory(interval time.Duration, slack uint64) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	var lastCycles uint64
	for range time.Tick(interval) {
		metrics.Read(samples)
		cycles := samples[0].Value.Uint64()
		live, objects := samples[1].Value.Uint64(), samples[2].Value.Uint64()
		free := samples[3].Value.Uint64() // free pages not yet given back
		// Garbage left by the burst, or pages a collection during the
		// burst freed that the runtime's slow background scavenger still
		// holds (measured: 4 KiB instead of 0.9 KiB per idle tunnel, 15 s
		// after opening 3,000, in about one run of three without this).
		if cycles == lastCycles && (objects > live+slack || free > slack) {
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
