package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/tunnel"
)

// statusJSON is the document /status.json serves.
type statusJSON struct {
	Time  time.Time             `json:"time"`
	TLS   *tlsStatus            `json:"tls,omitempty"`
	Pools []balancer.PoolStatus `json:"pools"`
}

// tlsStatus says where TLS records are handled, when wsgate terminates TLS.
type tlsStatus struct {
	// Records is "engine": TLS 1.3 records opened and sealed by wsgate's
	// own code (tunnel/tlsrec; tunnels on the tunnel engine), TLS 1.2 by
	// crypto/tls.
	Records string `json:"records"`
	// KernelTLS: whether this kernel has the tls ULP; KernelTLSWhy says
	// why not. Keys are not installed in the kernel yet either way.
	KernelTLS    bool   `json:"kernel_tls"`
	KernelTLSWhy string `json:"kernel_tls_why,omitempty"`
}

// detectTLS probes the kernel once and says where records go.
func detectTLS() *tlsStatus {
	st := &tlsStatus{Records: "engine"}
	if err := tunnel.KTLSAvailable(); err != nil {
		st.KernelTLSWhy = err.Error()
	} else {
		st.KernelTLS = true
	}
	return st
}

// statusHandler serves every pool and backend (live and draining) with its
// state, counts, failures and last check, and where TLS records go (tls
// nil: no TLS listener): GET /status.json on --admin.
func statusHandler(bal *balancer.Balancer, tls *tlsStatus) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(statusJSON{Time: time.Now(), TLS: tls, Pools: bal.Status()})
	})
}
