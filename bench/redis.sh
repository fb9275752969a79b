#!/usr/bin/env bash
# kv_server (thread mode and --park-idle) against redis-server itself,
# driven by redis-benchmark: requests/s for PING, SET and GET at 50 and at
# 1,000 simultaneous connections. Each round runs the three servers one
# after the other, in an order that turns from round to round, and each
# kv_server figure is divided by redis-server's of the same round; the
# table gives the median requests/s and the median ratio with its range.
# A second table, from one more run per server of GET at 50 connections,
# gives what each request cost redis-benchmark and the server in CPU
# time, and how busy redis-benchmark (one thread) was: what sets the
# ceiling when it is the bottleneck.
# Needs Debian's redis-server and redis-tools.
#
#   bench/redis.sh [ROUNDS] [REQUESTS]      # defaults: 5 rounds, 100000
set -euo pipefail
export LC_ALL=C # a decimal point in `times`, awk and printf
cd "$(dirname "$0")/.."
rounds=${1:-5}
requests=${2:-100000}
cargo build -q --release --example kv_server
kv=target/release/examples/kv_server

ports=(6390 6391 6392)
for port in "${ports[@]}"; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "port $port is taken: stop what listens there first" >&2
        exit 1
    fi
done
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
redis-server --port 6390 --save '' --appendonly no --daemonize no >/dev/null &
pids+=($!)
"$kv" --bind 127.0.0.1:6391 >/dev/null &
pids+=($!)
"$kv" --bind 127.0.0.1:6392 --park-idle >/dev/null &
pids+=($!)
for i in 0 1 2; do
    for _ in $(seq 50); do redis-cli -p "${ports[$i]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "the server on port ${ports[$i]} did not start" >&2; exit 1; }
done

# got[clients,port,test,round]: requests/s.
declare -A got
for clients in 50 1000; do
    for r in $(seq "$rounds"); do
        for k in 0 1 2; do
            port=${ports[$(((k + r) % 3))]}
            while IFS=, read -r test rps _; do
                test=${test//\"/}; rps=${rps//\"/}
                got[$clients,$port,$test,$r]=$rps
            done < <(timeout 300 redis-benchmark -p "$port" -c "$clients" -n "$requests" \
                -t ping,set,get --csv 2>/dev/null | tail -n +2)
        done
    done
done

# One run of 200,000 GETs at 50 connections: "req/s | redis-benchmark's
# CPU µs per request | its busy share | the server's CPU µs per request"
# (the server's over all its threads).
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_run() { # port pid
    local n=200000 before after start end client
    before=$(cpu_ticks "$2")
    start=$(date +%s.%N)
    client=$( (timeout 300 redis-benchmark -p "$1" -c 50 -n $n -t get -q >/dev/null 2>&1; times) | tail -n 1 |
        awk '{t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]} print t}')
    end=$(date +%s.%N)
    after=$(cpu_ticks "$2")
    awk -v c="$client" -v s=$((after - before)) -v hz="$hz" -v n=$n -v start="$start" -v end="$end" \
        'BEGIN { w = end - start; printf "%.0f | %.1f | %.0f%% | %.1f", n / w, c * 1e6 / n, 100 * c / w, s / hz * 1e6 / n }'
}
cpu=()
for i in 0 1 2; do cpu+=("$(cpu_run "${ports[$i]}" "${pids[$i]}")"); done

# series clients port test: the figures of every round that has one.
series() { for r in $(seq "$rounds"); do echo "${got[$1,$2,$3,$r]:-}"; done | grep -v '^$' || true; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) printf "%.0f", a[int((NR+1)/2)]; else printf "–"}'; }
# ratios clients port test: the figure over redis-server's, for each
# round where both ran.
ratios() {
    for r in $(seq "$rounds"); do
        local a=${got[$1,$2,$3,$r]:-} b=${got[$1,6390,$3,$r]:-}
        [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) print a / b}'
    done
    true
}
summary() { # median (min–max) of the ratios on stdin
    sort -g | awk '{a[NR]=$1} END {if (NR) printf "%.2f (%.2f–%.2f)", a[int((NR+1)/2)], a[1], a[NR]; else printf "–"}'
}
echo "machine: $(nproc) CPUs, $(redis-server --version | awk '{print $1, $2, $3}'), $rounds rounds of $requests requests"
echo
echo "| clients | test | redis-server req/s | kv_server | × redis | kv_server --park-idle | × redis |"
echo "|---:|---|---:|---:|---|---:|---|"
for clients in 50 1000; do
    for test in PING_INLINE PING_MBULK SET GET; do
        echo "| $clients | $test | $(series $clients 6390 $test | median)" \
            "| $(series $clients 6391 $test | median) | $(ratios $clients 6391 $test | summary)" \
            "| $(series $clients 6392 $test | median) | $(ratios $clients 6392 $test | summary) |"
    done
done

echo
echo "One run of 200,000 GETs at 50 connections per server, in CPU time:"
echo
echo "| server | req/s | redis-benchmark µs per request | redis-benchmark busy | server µs per request |"
echo "|---|---:|---:|---:|---:|"
echo "| redis-server | ${cpu[0]} |"
echo "| kv_server | ${cpu[1]} |"
echo "| kv_server --park-idle | ${cpu[2]} |"
