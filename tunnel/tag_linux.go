package tunnel

import "sync/atomic"

// CloseTagged closes every open tunnel added with AddTagged(tag, ...), with
// reason Shutdown, and returns how many it closed, after their done
// callbacks have run. Like CloseAll, it must not be called from a done
// callback. The scan visits every slot of every loop: it is meant for rare
// events (a removed backend's drain timeout), not the hot path.
func (e *Engine) CloseTagged(tag uint64) int {
	var closed atomic.Int64
	e.run(func(l *loop) {
		for ci := range l.chunks {
			for j := range l.chunks[ci] {
				if t := &l.chunks[ci][j]; t.open && t.tag == tag {
					l.close(t, int32(ci<<chunkBits|j), Shutdown, nil)
					closed.Add(1)
				}
			}
		}
	})
	return int(closed.Load())
}
