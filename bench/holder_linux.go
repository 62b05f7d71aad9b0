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
	epfd int
	// onDrop is called once per connection that ended before closeAll (the
	// peer closed, an error, or a missing pong), on the loop goroutine, with
	// the id given to add; it must not block.
	onDrop func(id int, err error)
	buf    []byte // read scratch; owned by the loop goroutine
	// ping, when positive, sends a ping on every connection once per ping
	// and drops (ErrNoPong) one that sent nothing since the previous ping.
	ping     time.Duration
	nextPing time.Time // owned by the loop goroutine

	mu    sync.Mutex
	conns map[int32]*heldConn // by fd; mu must be held

	stopc chan struct{}
	done  chan struct{}
}

type heldConn struct {
	c  *Conn
	fd int
	id int
	// pinged: a ping went out and nothing was read since; owned by the
	// loop goroutine.
	pinged bool
	// skip is how many payload bytes of a data frame are still to be
	// discarded; owned by the loop goroutine.
	skip uint64
}

func newHolder(onDrop func(id int, err error), ping time.Duration) (*holder, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	h := &holder{epfd: epfd, onDrop: onDrop, buf: make([]byte, 64<<10), conns: map[int32]*heldConn{},
		ping: ping, nextPing: time.Now().Add(ping),
		stopc: make(chan struct{}), done: make(chan struct{})}
	go h.loop()
	return h, nil
}

// add hands c to the holder; id is passed back to onDrop, which may be
// called before add returns (when the frames that came with the 101 end the
// connection). A connection without a file descriptor of its own (TLS) is
// refused with an error, and stays the caller's.
func (h *holder) add(c *Conn, id int) error {
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
	hc := &heldConn{c: c, fd: fd, id: id}
	if c.w > c.r {
		// Frames that came with the 101 (a greeting, a ping, a close): the
		// loop does not know hc yet, so they are handled here.
		pending := append([]byte(nil), c.rb[c.r:c.w]...)
		c.r, c.w = 0, 0
		if err := h.frames(hc, pending); err != nil {
			c.nc.Close()
			h.onDrop(id, err)
			return nil
		}
	}
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
		if h.ping > 0 && !time.Now().Before(h.nextPing) {
			h.pingAll()
			h.nextPing = time.Now().Add(h.ping)
		}
	}
}

// pingAll pings every held connection, dropping those that sent nothing
// since the last ping.
func (h *holder) pingAll() {
	h.mu.Lock()
	all := make([]*heldConn, 0, len(h.conns))
	for _, hc := range h.conns {
		all = append(all, hc)
	}
	h.mu.Unlock()
	for _, hc := range all {
		if hc.pinged {
			h.drop(hc, ErrNoPong)
			continue
		}
		hc.pinged = true
		if err := hc.c.writeWithin(opPing, nil, time.Second); err != nil {
			h.drop(hc, err)
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
	h.onDrop(hc.id, err)
}

// service reads what is there and handles every complete frame in it.
func (h *holder) service(hc *heldConn) error {
	n, err := unix.Read(hc.fd, h.buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil
	case err != nil:
		return err
	case n == 0:
		return io.EOF
	}
	hc.pinged = false
	return h.frames(hc, h.buf[:n])
}

// frames handles the bytes p read from hc: every complete frame in them,
// and what is left of one kept for the next read.
func (h *holder) frames(hc *heldConn, p []byte) error {
	c := hc.c
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
				if err := c.writeWithin(opPong, payload, time.Second); err != nil {
					return err
				}
			case opClose:
				ce := closeFrame(payload)
				c.writeWithin(opClose, closeReply(payload), time.Second)
				return ce
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
