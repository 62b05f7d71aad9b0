package bench

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// holder keeps idle connections open without a goroutine each: their fds sit
// in one epoll set (level-triggered) served by one goroutine, which answers
// pings, skips pushed messages and notices closes. A held connection costs
// its Conn and the kernel's socket, not a goroutine stack (about 8 KiB).
//
// Ownership: once added, a Conn belongs to the holder until closeAll; nothing
// else reads it.
type holder struct {
	epfd   int
	onDrop func(err error) // called once per connection the peer ended
	buf    []byte          // read scratch; owned by the loop goroutine

	mu    sync.Mutex
	conns map[int32]*heldConn // by fd; mu must be held

	stopc chan struct{}
	done  chan struct{}
}

type heldConn struct {
	c  *Conn
	fd int
	// skip is how many payload bytes of a data frame are still to be
	// discarded; owned by the loop goroutine.
	skip uint64
}

func newHolder(onDrop func(error)) (*holder, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	h := &holder{epfd: epfd, onDrop: onDrop, buf: make([]byte, 64<<10), conns: map[int32]*heldConn{},
		stopc: make(chan struct{}), done: make(chan struct{})}
	go h.loop()
	return h, nil
}

// add hands c to the holder.
func (h *holder) add(c *Conn) error {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return errors.New("bench: connection has no fd")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	hc := &heldConn{c: c, fd: fd}
	h.mu.Lock()
	h.conns[int32(fd)] = hc
	h.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if err := unix.EpollCtl(h.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		h.mu.Lock()
		delete(h.conns, int32(fd))
		h.mu.Unlock()
		return err
	}
	return nil
}

func (h *holder) loop() {
	defer close(h.done)
	events := make([]unix.EpollEvent, 256)
	for {
		select {
		case <-h.stopc:
			return
		default:
		}
		n, err := unix.EpollWait(h.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			h.mu.Lock()
			hc := h.conns[ev.Fd]
			h.mu.Unlock()
			if hc == nil {
				continue
			}
			if err := h.service(hc); err != nil {
				h.drop(hc, err)
			}
		}
	}
}

// drop forgets hc, closes it and reports why it ended.
func (h *holder) drop(hc *heldConn, err error) {
	unix.EpollCtl(h.epfd, unix.EPOLL_CTL_DEL, hc.fd, nil)
	h.mu.Lock()
	delete(h.conns, int32(hc.fd))
	h.mu.Unlock()
	hc.c.nc.Close()
	h.onDrop(err)
}

// service reads what is there and handles every complete frame in it.
func (h *holder) service(hc *heldConn) error {
	c := hc.c
	n, err := unix.Read(hc.fd, h.buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err != nil:
		return err
	case n == 0:
		return io.EOF
	}
	p := h.buf[:n]
	for len(p) > 0 {
		if hc.skip > 0 {
			k := min(hc.skip, uint64(len(p)))
			hc.skip -= k
			p = p[k:]
			continue
		}
		// Keep unparsed bytes in c.rb until a whole frame head (and, for a
		// control frame, its payload) is there.
		if c.w+len(p) > len(c.rb) {
			c.w = copy(c.rb, c.rb[c.r:c.w])
			c.r = 0
			if c.w+len(p) > len(c.rb) {
				nb := make([]byte, c.w+len(p))
				copy(nb, c.rb[:c.w])
				c.rb = nb
			}
		}
		c.w += copy(c.rb[c.w:], p)
		p = nil
		for {
			b := c.rb[c.r:c.w]
			if len(b) < 2 {
				break
			}
			fop, masked, plen := b[0]&0x0F, b[1]&0x80 != 0, uint64(b[1]&0x7F)
			hl := 2
			switch plen {
			case 126:
				hl = 4
			case 127:
				hl = 10
			}
			if masked {
				hl += 4
			}
			if len(b) < hl {
				break
			}
			switch plen {
			case 126:
				plen = uint64(binary.BigEndian.Uint16(b[2:]))
			case 127:
				plen = binary.BigEndian.Uint64(b[2:])
			}
			if fop < opClose {
				// Data: not ours to keep; skip what is here, the rest later.
				c.r += hl
				k := min(plen, uint64(c.w-c.r))
				c.r += int(k)
				if rest := plen - k; rest > 0 {
					hc.skip = rest
					c.r, c.w = 0, 0
					// Bytes after this frame cannot be in rb (it was all
					// consumed); later reads go through skip first.
				}
				continue
			}
			if plen > 125 {
				return ErrProtocol
			}
			if len(b) < hl+int(plen) {
				break
			}
			payload := b[hl : hl+int(plen)]
			if masked {
				maskBytes(payload, binary.LittleEndian.Uint32(b[hl-4:]))
			}
			c.r += hl + int(plen)
			switch fop {
			case opPing:
				c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				if err := c.WriteMessage(opPong, payload); err != nil {
					return err
				}
			case opClose:
				code := []byte{0x03, 0xE8}
				if len(payload) >= 2 {
					code = payload[:2]
				}
				c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				c.WriteMessage(opClose, code)
				return ErrClosed
			}
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
	}
	return nil
}

// closeAll stops the loop and closes every held connection politely, at
// most 256 at a time, each waiting up to wait for the peer. It returns how
// many were still open.
func (h *holder) closeAll(wait time.Duration) int {
	close(h.stopc)
	<-h.done
	unix.Close(h.epfd)
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, hc := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			hc.c.CloseGracefully(wait)
		})
	}
	wg.Wait()
	return len(conns)
}
