// wsgate patch tests (patch 1, poll_park_linux.go: the poller parks on Go's
// netpoller instead of blocking in epoll_wait).

package netpoll

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pollerGoroutine returns the stack dump of the goroutine that runs
// defaultPoll.Wait and was started by a function whose name contains by.
func pollerGoroutine(by string) string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "netpoll.(*defaultPoll).Wait(") && strings.Contains(g, by) {
			return g
		}
	}
	return ""
}

// epollWaiters returns the threads of this process blocked in
// epoll_wait/epoll_pwait on fd, read from /proc/self/task/*/syscall;
// ok is false where that cannot be read.
func epollWaiters(fd int) (tids []string, ok bool) {
	var nrs []string // epoll_wait, epoll_pwait, epoll_pwait2
	switch runtime.GOARCH {
	case "amd64":
		nrs = []string{"232", "281", "441"}
	case "arm64", "loong64", "riscv64":
		nrs = []string{"22", "441"}
	default:
		return nil, false
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, false
	}
	arg0 := "0x" + strconv.FormatInt(int64(fd), 16)
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "syscall"))
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread exited
			}
			return nil, false
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue // running
		}
		for _, nr := range nrs {
			if f[0] == nr && f[1] == arg0 {
				tids = append(tids, task.Name())
			}
		}
	}
	return tids, true
}

// An idle poller parks its goroutine on Go's netpoller ("IO wait", in
// parker.wait) and holds no thread: no thread of the process is blocked in
// epoll_wait on its epoll fd. Upstream's poller sits in a system call
// (goroutine state "syscall", in EpollWait), one thread per poller.
// Closing the poller still ends its Wait.
func TestParkIdlePollerHoldsNoThread(t *testing.T) {
	p, err := openDefaultPoll()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		p.Wait()
		close(done)
	}()
	var g string
	deadline := time.Now().Add(5 * time.Second)
	for {
		g = pollerGoroutine("TestParkIdlePollerHoldsNoThread")
		if strings.Contains(g, "[IO wait") && strings.Contains(g, "netpoll.(*parker).wait(") {
			break
		}
		if time.Now().After(deadline) {
			p.Close()
			t.Fatalf("the idle poller is not parked on Go's netpoller (want state IO wait in parker.wait):\n%s", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if tids, ok := epollWaiters(p.fd); !ok {
		t.Log("/proc/self/task/*/syscall unreadable: thread check skipped")
	} else if len(tids) > 0 {
		t.Errorf("threads %v are blocked in epoll_wait on the idle poller's epoll fd %d", tids, p.fd)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a parked poller's Wait")
	}
}

// The wake-up at the parker's edge: an event that arrives while the poller
// is between its last non-blocking epoll_wait and parking, or just after
// parking, must wake it. Each of many writes to a pipe comes right after
// the poller reported the previous one (spinning a random few µs to sweep
// the window where it goes back to park); every one must be seen.
func TestParkWakeUpAtParkingEdge(t *testing.T) {
	p, err := openDefaultPoll()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { // never Waited on: Close would leave its fds to Wait
		syscall.Close(p.wop.FD)
		syscall.Close(p.fd)
	}()
	p.Reset(128, barriercap)
	k := newParker(p)
	if k == nil {
		t.Fatal("newParker failed: the poller would block in epoll_wait")
	}
	defer k.close()
	parks := 0 // times the poller found nothing and went to park
	try := k.try
	k.try = func(fd uintptr) bool {
		ok := try(fd)
		if !ok {
			parks++
		}
		return ok
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := fds[0], fds[1]
	defer syscall.Close(r)
	// Level-triggered, as netpoll registers connections.
	if err := EpollCtl(p.fd, syscall.EPOLL_CTL_ADD, r, &epollevent{events: syscall.EPOLLIN}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan int, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := k.wait()
			if err != nil && err != syscall.EINTR {
				seen <- -1
				return
			}
			for i := 0; i < n; i++ {
				m, _ := syscall.Read(r, buf)
				if m == 0 { // the writer closed: done
					seen <- -1
					return
				}
				if m > 0 {
					seen <- m
				}
			}
		}
	}()
	rounds := 20000
	if testing.Short() {
		rounds = 5000
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < rounds; i++ {
		for spin, n := 0, rng.Intn(2000); spin < n; spin++ { // 0 to a few µs
			runtime.KeepAlive(spin)
		}
		if i%64 == 63 {
			time.Sleep(100 * time.Microsecond) // now and then, well parked
		}
		if _, err := syscall.Write(w, []byte{1}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-seen:
			if m != 1 {
				t.Fatalf("round %d: read %d bytes, want 1", i, m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: a write to a watched pipe did not wake the parked poller (lost wake-up)", i)
		}
	}
	syscall.Close(w)
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the pipe's hang-up did not wake the poller")
	}
	t.Logf("%d writes, the poller went to park %d times", rounds, parks)
	if parks < rounds/2 {
		t.Fatalf("the poller went to park only %d times in %d rounds: the edge was not exercised", parks, rounds)
	}
}

// Many connections talk in bursts separated by pauses, so the poller
// parks between bursts and must be woken for each: every message is
// answered. Messages up to 128 KiB take more than one read, so the poller
// also sees connections still readable after a read (level-triggered
// events it must not sleep on).
func TestParkNoLostWakeupBursts(t *testing.T) {
	for _, threshold := range []int{0, 64 << 10} {
		t.Run(fmt.Sprintf("threshold=%d", threshold), func(t *testing.T) {
			testParkBursts(t, threshold)
		})
	}
}

func testParkBursts(t *testing.T, threshold int) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []Option{}
	if threshold > 0 {
		opts = append(opts, WithReadThreshold(threshold))
	}
	// An echo server.
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		n := r.Len()
		b, err := r.Next(n)
		if err != nil {
			return err
		}
		c.Writer().WriteBinary(append([]byte(nil), b...))
		r.Release()
		return c.Writer().Flush()
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		loop.Shutdown(ctx)
	}()

	conns, bursts := 16, 20
	sizes := []int{1, 100, 1000, 16 << 10, 128 << 10}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for ci := 0; ci < conns; ci++ {
		wg.Add(1)
		go func(ci int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(ci)))
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			for b := 0; b < bursts; b++ {
				// A burst: 1 to 4 messages written back to back, then all
				// echoes awaited.
				var sent bytes.Buffer
				for m := 1 + rng.Intn(4); m > 0; m-- {
					msg := make([]byte, sizes[rng.Intn(len(sizes))])
					rng.Read(msg)
					sent.Write(msg)
				}
				go nc.Write(sent.Bytes()) // written while the echo is read: no deadlock on full buffers
				got := make([]byte, sent.Len())
				nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(nc, got); err != nil {
					errs <- fmt.Errorf("conn %d burst %d: echo of %d bytes: %v (lost wake-up?)", ci, b, sent.Len(), err)
					return
				}
				if !bytes.Equal(got, sent.Bytes()) {
					errs <- fmt.Errorf("conn %d burst %d: echo differs", ci, b)
					return
				}
				time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond) // the poller parks
			}
		}(ci)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// One connection in tight ping-pong: each ping is sent right after the
// previous answer, when the server's poller has just handled the previous
// ping and is going back to park. Every ping is answered.
func TestParkPingPong(t *testing.T) {
	ln, err := CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loop, err := NewEventLoop(func(ctx context.Context, c Connection) error {
		r := c.Reader()
		b, err := r.Next(r.Len())
		if err != nil {
			return err
		}
		c.Writer().WriteBinary(append([]byte(nil), b...))
		r.Release()
		return c.Writer().Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	go loop.Serve(ln)
	defer loop.Shutdown(context.Background())
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rounds := 5000
	if testing.Short() {
		rounds = 1000
	}
	rng := rand.New(rand.NewSource(2))
	b := []byte{0}
	for i := 0; i < rounds; i++ {
		for spin, n := 0, rng.Intn(3000); spin < n; spin++ {
			runtime.KeepAlive(spin)
		}
		b[0] = byte(i)
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, b); err != nil || b[0] != byte(i) {
			t.Fatalf("round %d: answer %d, %v (lost wake-up?)", i, b[0], err)
		}
	}
}
