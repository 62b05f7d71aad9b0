package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

// statusJSON is the document /status.json serves.
type statusJSON struct {
	Time  time.Time             `json:"time"`
	Pools []balancer.PoolStatus `json:"pools"`
}

// statusHandler serves every pool and backend (live and draining) with its
// state, counts, failures and last check: GET /status.json on --admin.
func statusHandler(bal *balancer.Balancer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(statusJSON{Time: time.Now(), Pools: bal.Status()})
	})
}
