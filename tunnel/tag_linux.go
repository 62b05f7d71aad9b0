package tunnel

// CloseTagged closes every open tunnel added with AddTagged(tag, ...) (or
// AddTLS), with reason Shutdown, and returns how many it closed, after
// their done callbacks have run. The closes are graceful (close frames,
// 1012 to the client: close_linux.go), so it may take up to about
// CloseBoundaryWait + CloseFinWait (+2 ticks) when peers are slow to
// answer. Tunnels of that tag already closing are waited for too. Like
// CloseAll, it must not be called from a done callback. The scan visits
// every slot of every loop: it is meant for rare events (a removed
// backend's drain timeout), not the hot path.
func (e *Engine) CloseTagged(tag uint64) int {
	_, waited := e.startCloses(-1, Shutdown, waitAll, func(t *tunnel) bool { return t.tag == tag })
	return waited
}
