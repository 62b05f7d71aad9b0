// Package accesslog is wsgate's access-log sink (--access-log): JSON lines
// built by hand into pooled buffers on the goroutine that has the facts (no
// fmt, no reflection, no allocation once the pool is warm), handed to one
// writer goroutine through a bounded queue. When the queue is full (the sink
// is slower than the traffic) a line is dropped and counted: whoever logs
// never waits for the log.
//
// The package knows JSON lines, not exchanges: which fields a line has is
// the caller's (loop/record.go for wsgate's request and tunnel lines).
//
//	l := accesslog.New(w, 0)
//	ln := l.Line("request") // {"time":"…","type":"request"
//	ln.String("client", ip)
//	ln.Int("status", 200)
//	l.Submit(ln) // closes the object, queues the line (or drops it)
//	…
//	l.Close() // writes and flushes what is queued
package accesslog

import (
	"bufio"
	"io"
	"sync"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"
)

// DefaultQueue is the number of lines queued for the writer when New is
// given none.
const DefaultQueue = 8192

// Log is one sink: a bounded queue of lines and the goroutine that writes
// them. Its methods may be called from any goroutine.
type Log struct {
	lines   chan *bytebufferpool.ByteBuffer // bounded; owned buffers travel through it
	w       *bufio.Writer                   // writer goroutine only
	dropped atomic.Uint64
	written atomic.Uint64
	done    chan struct{}
	once    sync.Once

	// bufs holds this log's line buffers. bytebufferpool sizes new buffers
	// by the lengths it has seen returned and drops buffers much larger
	// than most lines, so one huge line does not pin a huge buffer for
	// good. A pool per Log: two logs in a process share nothing. Buffers
	// go back through put.
	bufs bytebufferpool.Pool
}

// minLine is the length every line is counted as when its buffer goes
// back to the pool. bytebufferpool sizes by powers of two and drops a
// buffer above the size that 95% of lines fit in: without a floor, lines a
// little over 256 bytes (a path of 40 bytes more than most) would each
// allocate whenever they are under 5% of the traffic. Every buffer has
// at least minLine bytes (get), and lines up to minLine all count as that
// size; longer ones are calibrated as bytebufferpool does.
const minLine = 512

// get returns an empty buffer of at least minLine bytes.
func (l *Log) get() *bytebufferpool.ByteBuffer {
	b := l.bufs.Get()
	if cap(b.B) < minLine { // new, before the pool calibrated
		b.B = make([]byte, 0, minLine)
	}
	return b
}

// put returns b to the pool, with its length (the pool calibrates on it),
// counted as at least minLine.
func (l *Log) put(b *bytebufferpool.ByteBuffer) {
	if len(b.B) < minLine {
		b.B = b.B[:minLine]
	}
	l.bufs.Put(b)
}

// New starts the writer goroutine for w; queue <= 0 means DefaultQueue.
// Close flushes and stops it.
func New(w io.Writer, queue int) *Log {
	if queue <= 0 {
		queue = DefaultQueue
	}
	l := &Log{lines: make(chan *bytebufferpool.ByteBuffer, queue), w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *Log) run() {
	defer close(l.done)
	for {
		b, ok := <-l.lines
		if !ok {
			l.w.Flush()
			return
		}
		l.write(b)
		// Write what queued meanwhile, then flush once the queue is empty.
		for more := true; more; {
			select {
			case b, ok := <-l.lines:
				if !ok {
					l.w.Flush()
					return
				}
				l.write(b)
			default:
				more = false
			}
		}
		l.w.Flush()
	}
}

func (l *Log) write(b *bytebufferpool.ByteBuffer) {
	l.w.Write(b.B)
	l.written.Add(1)
	l.put(b)
}

// Close stops accepting lines, writes and flushes what is queued, and
// returns once the writer is done. Lines submitted after Close are dropped.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.lines)
	})
	<-l.done
	return nil
}

// Dropped is the number of lines dropped because the writer fell behind
// (or the log was closed).
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Written is the number of lines handed to the writer's sink.
func (l *Log) Written() uint64 { return l.written.Load() }

// Submit ends ln's JSON object and its line, and queues it for the writer,
// or drops it (counted in Dropped) when the queue is full or the log
// closed. It never blocks. ln's buffer belongs to the log from here: ln is
// left empty, and must be started again with Line before more use.
func (l *Log) Submit(ln *Line) {
	b := ln.b
	ln.b = nil
	b.B = append(b.B, "}\n"...)
	l.send(b)
}

func (l *Log) send(b *bytebufferpool.ByteBuffer) {
	defer func() {
		if recover() != nil { // sent after Close: the channel is closed
			l.dropped.Add(1)
			l.put(b)
		}
	}()
	select {
	case l.lines <- b:
	default:
		l.dropped.Add(1)
		l.put(b)
	}
}
