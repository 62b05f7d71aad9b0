// wsgate patch tests (patch 2, connection_pause.go: read backpressure).

//go:build linux

package netpoll

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

const pauseN = 16 << 10 // the read threshold of these tests

// pauseServer is an event loop with WithReadThreshold(pauseN) whose
// handler reports its connection on conns, then runs handle.
type pauseServer struct {
	addr   string
	conns  chan Connection
	closed atomic.Int32 // close callbacks run
}

func startPauseServer(t *testing.T, handle func(c Connection) error) *pauseServer {
	t.Helper()
	s := &pauseServer{conns: make(chan Connection, 1)}
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		return handle(c)
	}, WithReadThreshold(pauseN), WithOnPrepare(func(c Connection) context.Context {
		c.AddCloseCallback(func(Connection) error {
			s.closed.Add(1)
			return nil
		})
		s.conns <- c
		return context.Background()
	}))
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		loop.Shutdown(ctx)
	})
	return s
}

// pattern is the byte at offset i of what the uploader sends.
func pattern(i int64) byte { return byte(i*7 + i>>13) }

// uploader writes total pattern bytes on a client connection, counting
// what the kernel took.
type uploader struct {
	nc      net.Conn
	total   int64
	written atomic.Int64
	done    chan error
}

func startUpload(t *testing.T, addr string, total int64) *uploader {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	u := &uploader{nc: nc, total: total, done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 32<<10)
		var off int64
		nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for off < total {
			n := int64(len(buf))
			if total-off < n {
				n = total - off
			}
			for i := int64(0); i < n; i++ {
				buf[i] = pattern(off + i)
			}
			m, err := nc.Write(buf[:n])
			off += int64(m)
			u.written.Store(off)
			if err != nil {
				u.done <- err
				return
			}
		}
		u.done <- nil
	}()
	return u
}

// stalled waits until the uploader's writes have made no progress for
// 300 ms and reports whether it stopped short of the total (false: it
// sent everything, nothing held it back).
func (u *uploader) stalled(t *testing.T) bool {
	t.Helper()
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		w := u.written.Load()
		if w == u.total {
			return false
		}
		if w != last {
			last, since = w, time.Now()
			continue
		}
		if time.Since(since) > 300*time.Millisecond {
			return true
		}
	}
	t.Fatalf("the upload neither stalled nor finished: %d of %d bytes written", u.written.Load(), u.total)
	return false
}

// checkPaused asserts what the patch promises once the client is held
// back: the server stopped reading with its unread input at the
// threshold or more (it paused because of it) and under twice it.
func checkPaused(t *testing.T, u *uploader, c Connection) {
	t.Helper()
	if !u.stalled(t) {
		t.Fatalf("the client wrote all %d bytes to a handler that consumed none: reading never paused (server input %d bytes)",
			u.total, c.Reader().Len())
	}
	if n := c.Reader().Len(); n < pauseN || n >= 2*pauseN {
		t.Fatalf("server input %d bytes with reading paused at %d: want [%d, %d)", n, pauseN, pauseN, 2*pauseN)
	}
}

// drain reads the pattern's bytes [from, want), releasing as it goes, in
// reads of at most chunk bytes.
func drain(c Connection, from, want int64, chunk int) error {
	r := c.Reader()
	got := from
	for got < want {
		n := r.Len()
		if n == 0 {
			n = 1 // waits for input (and resumes a paused read)
		}
		if n > chunk {
			n = chunk
		}
		if int64(n) > want-got {
			n = int(want - got)
		}
		b, err := r.Next(n)
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", got, want, err)
		}
		for i, x := range b {
			if x != pattern(got+int64(i)) {
				return fmt.Errorf("byte %d is %d, want %d", got+int64(i), x, pattern(got+int64(i)))
			}
		}
		got += int64(n)
		if err := r.Release(); err != nil {
			return err
		}
	}
	return nil
}

const uploadSize = 48 << 20 // far beyond the socket buffers on both sides

// A client writing to a handler that consumes nothing is held back: the
// server reads until pauseN bytes are unread and stops, so its input stays
// under 2*pauseN however much the client sends (upstream reads it all).
func TestReadPauseStopsAtThreshold(t *testing.T) {
	release := make(chan struct{})
	s := startPauseServer(t, func(c Connection) error {
		<-release
		return c.Close()
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	defer close(release)
	checkPaused(t, u, c)
	time.Sleep(200 * time.Millisecond) // still paused a while later
	if n := c.Reader().Len(); n >= 2*pauseN {
		t.Fatalf("server input grew to %d bytes while paused", n)
	}
	t.Logf("client held back after %d of %d bytes; server input %d bytes", u.written.Load(), u.total, c.Reader().Len())
}

// Once the handler consumes and releases its input, reading resumes: every
// byte of the upload arrives, in order, and the input never exceeds
// 2*pauseN meanwhile.
func TestReadPauseResumesAfterRelease(t *testing.T) {
	release := make(chan struct{})
	var maxLen atomic.Int64
	result := make(chan error, 1)
	s := startPauseServer(t, func(c Connection) error {
		<-release
		r := c.Reader()
		var err error
		var got int64
		for got < uploadSize && err == nil {
			if n := int64(r.Len()); n > maxLen.Load() {
				maxLen.Store(n)
			}
			// Consume in pieces smaller than the threshold, as a handler
			// forwarding a body would.
			want := int64(4 << 10)
			if uploadSize-got < want {
				want = uploadSize - got
			}
			err = drain(c, got, got+want, 4<<10)
			got += want
		}
		result <- err
		if err == nil {
			c.Writer().WriteBinary([]byte("done"))
			err = c.Writer().Flush()
		}
		return err
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	checkPaused(t, u, c)
	close(release)
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("the handler's reads after resuming: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("reading did not resume: the handler is stuck with %d bytes unread, client at %d of %d",
			c.Reader().Len(), u.written.Load(), u.total)
	}
	if err := <-u.done; err != nil {
		t.Fatalf("upload: %v", err)
	}
	if m := maxLen.Load(); m >= 2*pauseN {
		t.Fatalf("server input reached %d bytes while the handler drained it: want under %d", m, 2*pauseN)
	}
	u.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(u.nc, b); err != nil || string(b) != "done" {
		t.Fatalf("answer %q, %v", b, err)
	}
}

// A handler that consumes what is buffered and returns, never waiting in
// a read (the next input starts it again), gets the whole upload: its
// Release, or the end of its task, resumes reading.
func TestReadPauseResumesAfterHandlerReturns(t *testing.T) {
	release := make(chan struct{})
	var got atomic.Int64
	var bad atomic.Value
	s := startPauseServer(t, func(c Connection) error {
		<-release
		r := c.Reader()
		n := r.Len()
		if n == 0 {
			return nil
		}
		b, err := r.Next(n)
		if err != nil {
			return err
		}
		off := got.Load()
		for i, x := range b {
			if x != pattern(off+int64(i)) {
				bad.Store(fmt.Sprintf("byte %d is %d, want %d", off+int64(i), x, pattern(off+int64(i))))
				return c.Close()
			}
		}
		got.Add(int64(n))
		return r.Release()
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	checkPaused(t, u, c)
	close(release)
	deadline := time.Now().Add(60 * time.Second)
	for got.Load() < uploadSize {
		if b := bad.Load(); b != nil {
			t.Fatal(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %d of %d bytes (server input %d bytes): reading was not resumed", got.Load(), int64(uploadSize), c.Reader().Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-u.done; err != nil {
		t.Fatalf("upload: %v", err)
	}
}

// A handler waiting for more than is buffered while reading is paused
// (Next beyond the threshold) resumes reading itself, rather than waiting
// forever for input that nothing reads. (Correctness of the patch, not a
// difference from upstream, which never pauses.)
func TestReadPauseNextBeyondThreshold(t *testing.T) {
	result := make(chan error, 1)
	s := startPauseServer(t, func(c Connection) error {
		c.SetReadTimeout(20 * time.Second)
		r := c.Reader()
		var err error
		for i := int64(0); i < 2 && err == nil; i++ {
			var b []byte
			if b, err = r.Next(4 * pauseN); err != nil {
				break
			}
			for j, x := range b {
				if off := i*4*pauseN + int64(j); x != pattern(off) {
					err = fmt.Errorf("byte %d is %d, want %d", off, x, pattern(off))
					break
				}
			}
			r.Release()
		}
		result <- err
		return c.Close()
	})
	u := startUpload(t, s.addr, 8*pauseN)
	<-s.conns
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Next(4*threshold) never returned: reading stayed paused")
	}
	if err := <-u.done; err != nil {
		t.Fatalf("upload: %v", err)
	}
}

// fdInode is the inode of the socket behind fd, or "" once fd is closed.
func fdInode(fd int) string {
	s, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return s
}

// waitClosed waits until the server closed its socket (fd no longer names
// it), the close callback has run once, and the client sees the end.
func waitClosed(t *testing.T, s *pauseServer, u *uploader, fd int, inode string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.closed.Load() == 0 || fdInode(fd) == inode {
		if time.Now().After(deadline) {
			t.Fatalf("not closed: close callbacks %d, fd %d still %q", s.closed.Load(), fd, inode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The client's writes (held back) end with an error, not a hang.
	select {
	case err := <-u.done:
		if err == nil {
			t.Fatal("the whole upload was written to a connection closed while paused")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's write still blocks after the server closed")
	}
	time.Sleep(50 * time.Millisecond)
	if n := s.closed.Load(); n != 1 {
		t.Fatalf("close callback ran %d times", n)
	}
}

// Close while paused, from the handler: the connection closes, its close
// callback runs once, its socket is closed, the client's blocked write
// fails, and nothing hangs.
func TestReadPauseCloseFromHandler(t *testing.T) {
	closeNow := make(chan struct{})
	returned := make(chan struct{})
	s := startPauseServer(t, func(c Connection) error {
		<-closeNow
		err := c.Close()
		close(returned)
		return err
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	checkPaused(t, u, c)
	fd := c.(Conn).Fd()
	inode := fdInode(fd)
	close(closeNow)
	<-returned
	waitClosed(t, s, u, fd, inode)
}

// Close while paused, from another goroutine (as wsgate's idle timer or
// shutdown do) while the handler still waits: the close completes once the
// handler returns.
func TestReadPauseCloseFromOutside(t *testing.T) {
	handlerDone := make(chan struct{})
	s := startPauseServer(t, func(c Connection) error {
		<-handlerDone
		return nil
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	checkPaused(t, u, c)
	fd := c.(Conn).Fd()
	inode := fdInode(fd)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	close(handlerDone)
	waitClosed(t, s, u, fd, inode)
}

// The client resets the connection while reading is paused (only errors
// are watched then): the hang-up is still seen, the waiting handler's read
// fails, and the connection closes.
func TestReadPausePeerResetWhilePaused(t *testing.T) {
	wake := make(chan struct{})
	readErr := make(chan error, 1)
	s := startPauseServer(t, func(c Connection) error {
		<-wake
		// Read on until the reads fail: what the kernel had received before
		// the reset may still be read, then only the hang-up can end it.
		r := c.Reader()
		for {
			n := r.Len()
			if n == 0 {
				n = 1
			}
			if _, err := r.Next(n); err != nil {
				readErr <- err
				return c.Close()
			}
			r.Release()
		}
	})
	u := startUpload(t, s.addr, uploadSize)
	c := <-s.conns
	checkPaused(t, u, c)
	fd := c.(Conn).Fd()
	inode := fdInode(fd)
	u.nc.(*net.TCPConn).SetLinger(0)
	u.nc.Close() // RST
	close(wake)
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("reads after the peer's reset ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's read still waits after the peer's reset")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.closed.Load() == 0 || fdInode(fd) == inode {
		if time.Now().After(deadline) {
			t.Fatalf("not closed after the peer's reset: close callbacks %d", s.closed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-u.done; err == nil {
		t.Fatal("the whole upload was written to a connection reset while paused")
	}
}
