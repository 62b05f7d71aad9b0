package loop

import (
	"context"
	"log"
	"runtime/debug"
	"sync"

	"github.com/cloudwego/netpoll"
)

// netpoll runs every handler (onRequest) through a runner. Its default,
// gopool, starts a fresh goroutine for nearly every task and lets it exit
// when the queue is empty, so each request paid for a goroutine's creation,
// its stack growing from 2 KiB to what serve needs (copied twice), and its
// exit: 12% of wsgate's CPU under HTTP keep-alive load, in the profile.
// This runner keeps a bounded number of finished workers parked, stacks
// already grown, and hands each new task to the most recently parked one
// (its stack is the most likely to be in cache).
type runner struct {
	mu      sync.Mutex
	idle    []*worker // parked workers, LIFO
	maxIdle int       // immutable
	spawned int       // workers started, for tests; guarded by mu
}

type worker struct {
	task chan func() // capacity 1: a hand-over never blocks the poller
}

// maxIdleWorkers bounds the parked workers: 128 stacks of a few KiB each,
// a fixed cost that does not grow with the connections held.
const maxIdleWorkers = 128

var handlers = &runner{maxIdle: maxIdleWorkers}

var configureNetpoll sync.Once

// useRunner makes netpoll run handlers on the shared runner; once per process.
func useRunner() {
	configureNetpoll.Do(func() {
		netpoll.Configure(netpoll.Config{Runner: handlers.run})
	})
}

// run starts f on a parked worker, or on a new one when none is parked.
func (r *runner) run(_ context.Context, f func()) {
	r.mu.Lock()
	if n := len(r.idle); n > 0 {
		w := r.idle[n-1]
		r.idle[n-1] = nil
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		w.task <- f
		return
	}
	r.spawned++
	r.mu.Unlock()
	go r.work(f)
}

// work runs tasks until the runner has enough parked workers.
func (r *runner) work(f func()) {
	var w *worker
	for {
		runTask(f)
		r.mu.Lock()
		if len(r.idle) >= r.maxIdle {
			r.mu.Unlock()
			return
		}
		if w == nil {
			w = &worker{task: make(chan func(), 1)}
		}
		r.idle = append(r.idle, w)
		r.mu.Unlock()
		f = <-w.task
	}
}

// runTask runs f; a panic is logged with its stack and the worker goes on,
// as netpoll's default runner does: one bad request must not take the
// proxy, and every tunnel it holds, down with it.
func runTask(f func()) {
	defer func() {
		if p := recover(); p != nil {
			log.Printf("panic in a connection handler: %v\n%s", p, debug.Stack())
		}
	}()
	f()
}

// parked is the number of workers waiting for a task (tests).
func (r *runner) parked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.idle)
}
