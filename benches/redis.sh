#!/usr/bin/env bash
# kv_server (thread mode and --park-idle) against redis-server itself,
# driven by redis-benchmark: requests/s for PING, SET and GET at 50 and at
# 1,000 simultaneous connections, in rounds that alternate the servers;
# prints a markdown table with each server's median and its ratio to
# redis-server. Needs Debian's redis-server and redis-tools.
#
#   benches/redis.sh [ROUNDS] [REQUESTS]      # defaults: 3 rounds, 100000
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-100000}
cargo build -q --release --example kv_server
kv=target/release/examples/kv_server

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
redis-server --port 6390 --save '' --appendonly no --daemonize no >/dev/null &
pids+=($!)
"$kv" --bind 127.0.0.1:6391 >/dev/null &
pids+=($!)
"$kv" --bind 127.0.0.1:6392 --park-idle >/dev/null &
pids+=($!)
for port in 6390 6391 6392; do
    for _ in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
done

declare -A got
names=([6390]=redis-server [6391]=kv_server [6392]="kv_server --park-idle")
for clients in 50 1000; do
    for r in $(seq "$rounds"); do
        for port in 6390 6391 6392; do
            while IFS=, read -r test rps _; do
                test=${test//\"/}; rps=${rps//\"/}
                got[$clients,$port,$test]+="$rps "
            done < <(redis-benchmark -p $port -c "$clients" -n "$requests" -t ping,set,get --csv 2>/dev/null | tail -n +2)
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) CPUs, $(redis-server --version | awk '{print $1, $2, $3}'), $rounds rounds of $requests requests"
echo
echo "| clients | test | redis-server req/s | kv_server | × redis | kv_server --park-idle | × redis |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for clients in 50 1000; do
    for test in PING_INLINE PING_MBULK SET GET; do
        base=$(echo "${got[$clients,6390,$test]}" | median)
        threads=$(echo "${got[$clients,6391,$test]}" | median)
        parked=$(echo "${got[$clients,6392,$test]}" | median)
        awk -v c="$clients" -v t="$test" -v b="$base" -v th="$threads" -v pk="$parked" \
            'BEGIN { printf "| %s | %s | %.0f | %.0f | %.2f | %.0f | %.2f |\n", c, t, b, th, th / b, pk, pk / b }'
    done
done
