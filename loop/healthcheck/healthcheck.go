// Package healthcheck is wsgate's active backend check: a GET of a path on
// a fresh TCP connection, judged by the response head (http1). It is the
// I/O side of health; balancer keeps the state (rise, fall, passive
// failures) and calls the probe, and knows nothing of sockets.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// DefaultPath is the path active checks GET unless told otherwise.
const DefaultPath = "/health"

// Probe returns the active check for balancer.HealthConfig.Probe: a
// GET of path on a new plain TCP connection to the backend, with the
// backend's configured HOST:PORT as Host and "Connection: close"; any
// 2xx or 3xx status is healthy. The whole check (connect, send, response
// head) must finish within timeout and ctx's deadline; the body is not
// read. path must start with "/".
func Probe(path string, timeout time.Duration) func(ctx context.Context, b *balancer.Backend) error {
	return probe(path, timeout, nil)
}

// Default is the check used when the operator did not choose a
// health path: like Probe(DefaultPath, timeout), except that an
// answer saying the path does not exist (404, 405, 501) also counts as
// alive: the backend speaks HTTP, it just has no health endpoint, and
// `wsgate -b A -b B` must work in front of apps that never heard of
// /health. logf is told once per backend. Connect failures, timeouts,
// garbage and every other 4xx/5xx still fail the check.
func Default(timeout time.Duration, logf func(format string, args ...any)) func(ctx context.Context, b *balancer.Backend) error {
	var told sync.Map // *balancer.Backend → struct{}
	return probe(DefaultPath, timeout, func(b *balancer.Backend, status int) {
		if _, seen := told.LoadOrStore(b, struct{}{}); !seen && logf != nil {
			logf("backend %s: GET %s answers %d; counted as alive (set --health-path to a real check, or \"\" to disable checks)", b, DefaultPath, status)
		}
	})
}

// probe is Probe; when missing is set, a 404, 405 or 501 is
// healthy and reported to missing.
func probe(path string, timeout time.Duration, missing func(*balancer.Backend, int)) func(ctx context.Context, b *balancer.Backend) error {
	req := func(host string) []byte {
		return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsgate-health\r\nAccept: */*\r\nConnection: close\r\n\r\n", path, host)
	}
	return func(ctx context.Context, b *balancer.Backend) error {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", b.Addr())
		if err != nil {
			return err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }) // cancel wakes the reads
		defer stop()
		if _, err := c.Write(req(b.Host())); err != nil {
			return err
		}
		buf := make([]byte, 4096)
		var resp http1.Response
		lim := http1.Limits{MaxHeaderBytes: len(buf), MaxLineBytes: len(buf)}
		n := 0
		for {
			m, rerr := c.Read(buf[n:])
			n += m
			if n > 0 {
				perr := resp.Parse(buf[:n], &lim)
				switch {
				case perr == nil && resp.Status < 200:
					// An interim response (100, 103): the final one follows.
					n = copy(buf, buf[resp.HeadLen:n])
					continue
				case perr == nil:
					if missing != nil && (resp.Status == 404 || resp.Status == 405 || resp.Status == 501) {
						missing(b, resp.Status)
						return nil
					}
					if resp.Status >= 400 {
						return fmt.Errorf("GET %s: status %d", path, resp.Status)
					}
					return nil
				case perr != http1.ErrNeedMore:
					return fmt.Errorf("GET %s: %w", path, perr)
				case n == len(buf):
					return fmt.Errorf("GET %s: response head over %d bytes", path, len(buf))
				}
			}
			if rerr != nil {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(rerr) {
					return fmt.Errorf("GET %s: no response within the health timeout", path)
				}
				return fmt.Errorf("GET %s: %w", path, rerr)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
