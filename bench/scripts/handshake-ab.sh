#!/usr/bin/env bash
# Paired handshake CPU: two wsgate builds and HAProxy up at once, each
# pinned to CPU 0 with one worker (GOMAXPROCS=1, nbthread 1), the backend
# and the load (wsbench handshake -c 16) pinned to CPU 1; the load goes to
# each proxy in turn, in a rotating order, and each proxy's CPU per
# handshake is read from /proc. Prints every round and the medians of the
# per-round ratios.
#
#   bench/scripts/handshake-ab.sh OLD_WSGATE NEW_WSGATE [ROUNDS] [SECONDS]
#
# Build the binaries first, e.g.
#   git worktree add /tmp/old REV && (cd /tmp/old && go build -o /tmp/wsgate-old ./cmd/wsgate)
#   go build -o /tmp/wsgate-new ./cmd/wsgate && go build -o /tmp/wsbench ./cmd/wsbench
#   go build -o /tmp/demo ./cmd/wsgate-demo
# WSBENCH and DEMO name those (defaults /tmp/wsbench, /tmp/demo). Needs
# haproxy and taskset; uses ports 39201, 39211-39213, 39221-39223.
set -euo pipefail
A=$1; B=$2; R=${3:-9}; D=${4:-4}
WSBENCH=${WSBENCH:-/tmp/wsbench}; DEMO=${DEMO:-/tmp/demo}
dir=$(mktemp -d)
taskset -c 1 "$DEMO" -l 127.0.0.1:39201 -name a >/dev/null 2>&1 & d1=$!
GOMAXPROCS=1 taskset -c 0 "$A" -l 127.0.0.1:39211 --admin 127.0.0.1:39221 -b 127.0.0.1:39201 --access-log off >/dev/null 2>&1 & pa=$!
GOMAXPROCS=1 taskset -c 0 "$B" -l 127.0.0.1:39213 --admin 127.0.0.1:39223 -b 127.0.0.1:39201 --access-log off >/dev/null 2>&1 & pb=$!
cat > "$dir/h.cfg" <<EOC
global
    nbthread 1
    maxconn 9900
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 3600s
    option forwardfor
frontend fe
    bind 127.0.0.1:39212
    default_backend be
backend be
    balance leastconn
    server s0 127.0.0.1:39201
EOC
taskset -c 0 haproxy -db -f "$dir/h.cfg" >/dev/null 2>&1 & ph=$!
trap 'kill $d1 $pa $pb $ph 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1.5
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # pid port: CPU µs per handshake
	local c0 c1 n
	c0=$(cpu "$1")
	n=$(taskset -c 1 "$WSBENCH" handshake -q --json -c 16 -d "${D}s" "ws://127.0.0.1:$2/ws" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["connected"])')
	c1=$(cpu "$1")
	python3 -c "print('%.1f' % (($c1-$c0)*1e6/$(getconf CLK_TCK)/$n))"
}
for i in $(seq "$R"); do
	case $((i % 3)) in
	1) a=$(run $pa 39211); b=$(run $pb 39213); h=$(run $ph 39212) ;;
	2) b=$(run $pb 39213); h=$(run $ph 39212); a=$(run $pa 39211) ;;
	0) h=$(run $ph 39212); a=$(run $pa 39211); b=$(run $pb 39213) ;;
	esac
	echo "round $i: old $a new $b haproxy $h µs per handshake"
done | tee "$dir/rounds"
python3 - "$dir/rounds" <<'P'
import re, statistics as st, sys
r = [tuple(map(float, m.groups())) for l in open(sys.argv[1])
     if (m := re.search(r'old ([\d.]+) new ([\d.]+) haproxy ([\d.]+)', l))]
print('medians of the per-round ratios: old/HAProxy %.2f  new/HAProxy %.2f  new/old %.2f' % (
    st.median(a / h for a, b, h in r), st.median(b / h for a, b, h in r), st.median(b / a for a, b, h in r)))
P
