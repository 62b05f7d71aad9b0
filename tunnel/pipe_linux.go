package tunnel

import "golang.org/x/sys/unix"

// maxPooledPipes bounds each loop's pipe pool; extra pipes are closed.
const maxPooledPipes = 32

// pipeBackoffTicks: after a failed pipe2 (EMFILE...), the loop uses buffers
// only for this many ticks instead of trying again on every bulk read.
const pipeBackoffTicks = 1

// pipe is a splice pipe: read end r, write end w. Owned by one loop; a pipe
// in the pool is empty, a pipe that may hold data is closed, never pooled
// (as Go's internal/poll/splice_linux.go does).
type pipe struct{ r, w int32 }

// getPipe returns an empty pipe from the pool or a new one; ok is false
// when none could be made (the caller stays on buffers).
func (l *loop) getPipe() (p pipe, ok bool) {
	if n := len(l.pipes); n > 0 {
		p = l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, true
	}
	if l.nowTick < l.pipeRetryTick {
		return p, false
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		l.e.m.pipeErrors.Inc()
		l.pipeRetryTick = l.nowTick + pipeBackoffTicks
		return p, false
	}
	if l.e.cfg.MaxPending > 64<<10 {
		// Best effort; the kernel may refuse above pipe-max-size.
		unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, l.e.cfg.MaxPending)
	}
	l.e.m.pipesCreated.Inc()
	return pipe{int32(fds[0]), int32(fds[1])}, true
}

// putPipe returns p to the pool if it is empty (held == 0) and the pool
// has room; otherwise it closes it.
func (l *loop) putPipe(p pipe, held int32) {
	if held == 0 && len(l.pipes) < maxPooledPipes && !l.stopping {
		l.pipes = append(l.pipes, p)
		return
	}
	closePipe(p)
}

func closePipe(p pipe) {
	unix.Close(int(p.r))
	unix.Close(int(p.w))
}
