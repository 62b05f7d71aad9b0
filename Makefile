# wsgate — see README.md.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build run test test-race vet bench bench-compare bench-scale fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wsgate ./cmd/wsgate
	$(GO) build -trimpath -o $(BIN)/wsgate-demo ./cmd/wsgate-demo
	$(GO) build -trimpath -o $(BIN)/wsbench ./cmd/wsbench

# wsgate on 127.0.0.1:8080 in front of two demo backends (3001, 3002); Ctrl-C stops all three.
run: build
	@set -e; \
	trap 'kill $$a $$b $$g 2>/dev/null; wait 2>/dev/null' EXIT INT TERM; \
	$(BIN)/wsgate-demo -l 127.0.0.1:3001 -name node-a & a=$$!; \
	$(BIN)/wsgate-demo -l 127.0.0.1:3002 -name node-b & b=$$!; \
	$(BIN)/wsgate -l 127.0.0.1:8080 --admin 127.0.0.1:9090 -b 127.0.0.1:3001 -b 127.0.0.1:3002 & g=$$!; \
	sleep 1; \
	echo; \
	echo "wsgate is on http://127.0.0.1:8080 in front of node-a (:3001) and node-b (:3002). Try:"; \
	echo "  curl -i http://127.0.0.1:8080/echo                 # X-Forwarded-For, X-Backend: node-a or node-b"; \
	echo "  curl -i -d 'hello' http://127.0.0.1:8080/echo      # a POST body, forwarded"; \
	echo "  open http://127.0.0.1:8080/ in a browser           # a WebSocket page that echoes through wsgate"; \
	echo "  curl -i -N -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \\"; \
	echo "       -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://127.0.0.1:8080/ws   # raw 101 + first frame"; \
	echo "  websocat ws://127.0.0.1:8080/ws   (or: npx wscat -c ws://127.0.0.1:8080/ws)"; \
	echo "  curl -s http://127.0.0.1:9090/metrics | grep ^wsgate_"; \
	echo "Ctrl-C to stop."; \
	wait $$g; true

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

# Everything CI runs (.ci/run calls this).
test: vet
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -short -timeout 20m ./...
	cd third_party/netpoll && $(GO) vet ./... && $(GO) test -count=1 -race -timeout 10m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=300000x

# Go benchmarks of the hot paths, then wsgate's memory and files per idle tunnel (5,000 tunnels).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./http1 ./balancer ./tunnel ./tunnel/tlsrec
	WSGATE_MEASURE=1 $(GO) test -count=1 -run 'TestMeasure' -v ./cmd/wsgate | grep -v 'wsgate stderr'

# Every fuzz target in the module (func FuzzX in a _test.go file), each for FUZZTIME.
# New corpus entries land in the Go build cache; crashers in the package's testdata/fuzz/.
# make test gives each target a count of executions (300000x: about 10 s for
# http1's targets, 35 s for loop's here), not a duration: before Go 1.27 a
# duration can end a run that found nothing with a spurious "context deadline
# exceeded" failure (golang/go#75804, a race in the fuzz coordinator's stop),
# which failed CI once in FuzzRequestFields. A count sets no deadline.
FUZZTIME ?= 60s
# wsgate beside HAProxy, nginx and a direct connection, all up at once,
# under the same load against the same two echo backends: memory and files
# per idle tunnel (8,000), CPU per handshake and per echo, messages/s,
# latency, HTTP keep-alive requests/s, each the median of paired rounds
# (WSGATE_COMPARE_ROUNDS, default 3) and a median ratio to HAProxy; then the
# same with TLS terminated by each proxy (4,000 wss tunnels); then a
# reconnect storm (6,000 clients, one of 3 backends dies) through HAProxy,
# nginx, wsgate, and wsgate with max-conns and with handshake pacing
# (cmd/wsgate/compare_test.go; BENCHMARKS.md has a full run). Installs
# nginx, haproxy and wrk from Debian when absent. Then wsbench's own
# efficiency: 64 B echo beside a plain gorilla/websocket client, and 9,000
# connections held from one process.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench-compare:
	@command -v nginx >/dev/null && command -v haproxy >/dev/null && command -v wrk >/dev/null && command -v strace >/dev/null || { \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends nginx haproxy wrk strace; }
	WSGATE_COMPARE=1 $(GO) test -count=1 -timeout 40m -v -run 'TestCompareProxies|TestCompareStorm' ./cmd/wsgate
	$(GO) test -run '^$$' -bench 'Echo64' -benchtime 200000x -count 3 ./bench
	WSBENCH_MEASURE=1 $(GO) test -count=1 -run 'TestMeasure' -v ./bench | grep -E 'round|connect 9000|^(ok|FAIL|---)'

# 9,900 tunnels in one wsgate under the 20,000-file limit, a 60 s hold, then
# clients past the limit (about 3 minutes; cmd/wsgate/scale_test.go); then
# the same with 9,900 wss tunnels (TLS 1.3 terminated by wsgate).
bench-scale:
	WSGATE_SCALE=1 $(GO) test -count=1 -timeout 15m -run 'TestScale9900' -v ./cmd/wsgate | grep -E 'scale_test|^(ok|FAIL|---)'
	WSGATE_SCALE=1 WSGATE_SCALE_TLS=1 $(GO) test -count=1 -timeout 15m -run 'TestScale9900' -v ./cmd/wsgate | grep -E 'scale_test|^(ok|FAIL|---)'

fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		d=$$(dirname $$f); \
		for n in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$d $$n $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$n$$" -fuzztime $(FUZZTIME) $$d; \
		done; \
	done

clean:
	rm -rf $(BIN)
