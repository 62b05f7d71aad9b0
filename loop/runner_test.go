package loop

import (
	"context"
	"sync"
	"testing"
	"time"
)

// A worker that finished a task is parked and takes the next one; no more
// than maxIdle stay parked; a panicking task does not end its worker.
func TestRunnerReusesParkedWorkers(t *testing.T) {
	r := &runner{maxIdle: 2}
	ctx := context.Background()

	// Four tasks at once: four workers, of which two stay parked.
	var started, release sync.WaitGroup
	release.Add(1)
	started.Add(4)
	var done sync.WaitGroup
	done.Add(4)
	for range 4 {
		r.run(ctx, func() {
			started.Done()
			release.Wait()
			done.Done()
		})
	}
	started.Wait()
	if n := r.parked(); n != 0 {
		t.Fatalf("%d workers parked while all four run", n)
	}
	release.Done()
	done.Wait()
	waitParked(t, r, 2)

	// A panic is recovered; the worker parks again and runs the next task.
	done.Add(1)
	r.run(ctx, func() { defer done.Done(); panic("boom") })
	done.Wait()
	waitParked(t, r, 2)

	// One task at a time: each goes to a parked worker, none is started.
	for range 100 {
		done.Add(1)
		r.run(ctx, func() { done.Done() })
		done.Wait()
		waitParked(t, r, 2)
	}
	r.mu.Lock()
	spawned := r.spawned
	r.mu.Unlock()
	if spawned != 4 {
		t.Fatalf("%d workers started, want the 4 of the burst only", spawned)
	}
}

func waitParked(t *testing.T, r *runner, want int) {
	t.Helper()
	for range 1000 {
		if r.parked() == want {
			return
		}
		runtimeGosched()
	}
	t.Fatalf("parked %d, want %d", r.parked(), want)
}

func runtimeGosched() { time.Sleep(time.Millisecond) }
