#!/usr/bin/env bash
# kv_server (thread mode and --park-idle) against redis-server itself,
# driven by redis-benchmark: requests/s for PING, SET and GET at 50 and at
# 1,000 simultaneous connections. Each round runs the three servers one
# after the other, in an order that turns from round to round, and each
# kv_server figure is divided by redis-server's of the same round; the
# table gives the median requests/s and the median ratio with its range.
# A second table gives the CPU time each request cost redis-benchmark
# and the server, for GET at 50 connections: what sets the ceiling when
# the single-threaded redis-benchmark is the bottleneck.
# Needs Debian's redis-server and redis-tools.
#
#   benches/redis.sh [ROUNDS] [REQUESTS]      # defaults: 5 rounds, 100000
set -euo pipefail
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

# got[clients,port,test] holds one figure per round, in round order.
declare -A got
for clients in 50 1000; do
    for r in $(seq "$rounds"); do
        for k in 0 1 2; do
            port=${ports[$(((k + r) % 3))]}
            while IFS=, read -r test rps _; do
                test=${test//\"/}; rps=${rps//\"/}
                got[$clients,$port,$test]+="$rps "
            done < <(timeout 300 redis-benchmark -p "$port" -c "$clients" -n "$requests" \
                -t ping,set,get --csv 2>/dev/null | tail -n +2)
        done
    done
done

# CPU per request, in microseconds, of redis-benchmark and of the server
# (all its threads) over one run of 200,000 GETs at 50 connections.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_per_request() { # port pid
    local n=200000 before after client
    before=$(cpu_ticks "$2")
    client=$( (timeout 300 redis-benchmark -p "$1" -c 50 -n $n -t get -q >/dev/null 2>&1; times) | tail -n 1 |
        awk '{t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); t += a[1] * 60 + a[2]} print t}')
    after=$(cpu_ticks "$2")
    awk -v c="$client" -v s=$((after - before)) -v hz="$hz" -v n=$n \
        'BEGIN { printf "%.1f | %.1f", c * 1e6 / n, s / hz * 1e6 / n }'
}
cpu=()
for i in 0 1 2; do cpu+=("$(cpu_per_request "${ports[$i]}" "${pids[$i]}")"); done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# ratios A B: each figure of A over the figure of B from the same round.
ratios() { paste -d' ' <(echo "$1" | tr -s ' ' '\n') <(echo "$2" | tr -s ' ' '\n') | awk 'NF == 2 && $2 > 0 {print $1 / $2}'; }
summary() { # median (min–max) of the ratios on stdin
    sort -g | awk '{a[NR]=$1} END {printf "%.2f (%.2f–%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'
}
echo "machine: $(nproc) CPUs, $(redis-server --version | awk '{print $1, $2, $3}'), $rounds rounds of $requests requests"
echo
echo "| clients | test | redis-server req/s | kv_server | × redis | kv_server --park-idle | × redis |"
echo "|---:|---|---:|---:|---|---:|---|"
for clients in 50 1000; do
    for test in PING_INLINE PING_MBULK SET GET; do
        base=${got[$clients,6390,$test]:-}
        threads=${got[$clients,6391,$test]:-}
        parked=${got[$clients,6392,$test]:-}
        printf '| %s | %s | %.0f | %.0f | %s | %.0f | %s |\n' "$clients" "$test" \
            "$(echo "$base" | median)" \
            "$(echo "$threads" | median)" "$(ratios "$threads" "$base" | summary)" \
            "$(echo "$parked" | median)" "$(ratios "$parked" "$base" | summary)"
    done
done

echo
echo "CPU time per request, GET at 50 connections (200,000 requests):"
echo
echo "| server | redis-benchmark µs | server µs |"
echo "|---|---:|---:|"
echo "| redis-server | ${cpu[0]} |"
echo "| kv_server | ${cpu[1]} |"
echo "| kv_server --park-idle | ${cpu[2]} |"
