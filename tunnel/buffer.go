package tunnel

import "sync"

// bufPool hands out fixed-size read buffers (Config.ReadSize). A buffer is
// owned by exactly one holder at a time: a loop's scratch slot, or a tunnel
// direction holding bytes not yet written. Forbidden to touch after put.
//
// Own sync.Pool of *[]byte rather than bytebufferpool: reads need exactly
// ReadSize bytes of room, and a pointer round-trips through the pool
// without allocating.
type bufPool struct {
	size int
	pool sync.Pool
}

func newBufPool(size int) *bufPool {
	p := &bufPool{size: size}
	p.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

func (p *bufPool) get() *[]byte { return p.pool.Get().(*[]byte) }

// put returns b; buffers of another size (large initial bytes) are dropped.
func (p *bufPool) put(b *[]byte) {
	if b != nil && len(*b) == p.size {
		p.pool.Put(b)
	}
}

// copyIn returns a buffer holding a copy of data: pooled when it fits.
func (p *bufPool) copyIn(data []byte) *[]byte {
	if len(data) <= p.size {
		b := p.get()
		copy(*b, data)
		return b
	}
	b := make([]byte, len(data))
	copy(b, data)
	return &b
}
