#!/usr/bin/env bash
# Where a WebSocket handshake's CPU goes, wsgate against HAProxy: each
# pinned to CPU 0 with one worker, the backend and the load (wsbench
# handshake -c 16) on CPU 1, `perf record` of each proxy under the same
# load, then the CPU per handshake split by kind (kernel: epoll, scheduler,
# system-call entry, locks, the rest: TCP/IP and the like; user: Go
# runtime, netpoll, wsgate, HAProxy's own code), in µs per handshake.
#
#   bench/scripts/handshake-perf.sh WSGATE [SECONDS]
#
# WSBENCH and DEMO as in handshake-ab.sh. Needs perf, haproxy, taskset.
set -euo pipefail
G=$1; D=${2:-6}
WSBENCH=${WSBENCH:-/tmp/wsbench}; DEMO=${DEMO:-/tmp/demo}
dir=$(mktemp -d)
taskset -c 1 "$DEMO" -l 127.0.0.1:39201 -name a >/dev/null 2>&1 & d1=$!
GOMAXPROCS=1 taskset -c 0 "$G" -l 127.0.0.1:39213 --admin 127.0.0.1:39223 -b 127.0.0.1:39201 --access-log off >/dev/null 2>&1 & pg=$!
printf 'global\n    nbthread 1\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n    timeout tunnel 3600s\n    option forwardfor\nfrontend fe\n    bind 127.0.0.1:39212\n    default_backend be\nbackend be\n    server s0 127.0.0.1:39201\n' > "$dir/h.cfg"
taskset -c 0 haproxy -db -f "$dir/h.cfg" >/dev/null 2>&1 & ph=$!
trap 'kill $d1 $pg $ph 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1.5
for x in "wsgate $pg 39213" "haproxy $ph 39212"; do
	set -- $x
	perf record -q -p "$2" -o "$dir/$1.data" -- sleep "$D" >/dev/null 2>&1 & pp=$!
	taskset -c 1 "$WSBENCH" handshake -q --json -c 16 -d "${D}s" "ws://127.0.0.1:$3/ws" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["connected"])' > "$dir/$1.n"
	wait $pp
	perf report -i "$dir/$1.data" --stdio --no-children --sort sym > "$dir/$1.txt" 2>/dev/null
done
python3 - "$dir" <<'P'
import collections, re, sys
d = sys.argv[1]
def kind(sym, kernel):
    if kernel:
        if re.match(r'(ep_|do_epoll|__x64_sys_epoll|__ep_)', sym): return 'kernel: epoll'
        if re.match(r'(schedule|__schedule|finish_task_switch|pick_next|enqueue_|dequeue_|try_to_wake_up|ttwu|update_curr|__switch_to|switch_mm|psi_|set_next_entity|put_prev|select_task|__wake_up|futex|hrtimer|do_nanosleep|prepare_task_switch|update_rq|sched_|update_load|__update_load|raw_spin_rq|newidle|check_preempt|resched)', sym): return 'kernel: scheduler'
        if re.match(r'(do_syscall_64|entry_SYSCALL|syscall_exit|exit_to_user|__x64_sys_|x64_sys_call|irqentry|switch_fpu|arch_exit)', sym): return 'kernel: system-call entry'
        if re.match(r'(_raw_spin|__raw_callee|native_queued|queued_spin|_raw_read|_raw_write)', sym): return 'kernel: locks'
        return 'kernel: TCP/IP and the rest'
    if sym.startswith(('runtime.', 'internal/runtime', 'gcWriteBarrier')): return 'user: Go runtime'
    if 'netpoll' in sym: return 'user: netpoll'
    if 'wsgate' in sym: return 'user: wsgate'
    return 'user: other (HAProxy\'s own code)'
res = {}
for name in ('wsgate', 'haproxy'):
    n = int(open(f'{d}/{name}.n').read())
    text = open(f'{d}/{name}.txt').read()
    total = int(re.search(r'Event count \(approx.\): (\d+)', text).group(1)) / n / 1000  # µs per handshake
    c = collections.Counter()
    for l in text.splitlines():
        m = re.match(r'\s*([\d.]+)%\s+\[(k|\.)\]\s+(\S+)', l)
        if m: c[kind(m.group(3), m.group(2) == 'k')] += float(m.group(1)) * total / 100
    res[name] = (total, c, n)
print('CPU per handshake: wsgate %.1f µs (%d handshakes), HAProxy %.1f µs (%d)' % (res['wsgate'][0], res['wsgate'][2], res['haproxy'][0], res['haproxy'][2]))
for k in sorted(set(res['wsgate'][1]) | set(res['haproxy'][1])):
    g, h = res['wsgate'][1][k], res['haproxy'][1][k]
    print('%-34s wsgate %6.1f  HAProxy %6.1f  difference %+6.1f' % (k, g, h, g - h))
P
