#!/usr/bin/env bash
# Shale (3 nodes on loopback, fsync on) side by side with one redis-server that fsyncs every
# write (appendonly yes, appendfsync always), measured in the same run with the same commands:
# redis-benchmark -t set,get and shale bench, 50 clients, no pipelining.
#
#   scripts/bench-vs-redis.sh [requests per redis-benchmark test] [shale bench seconds]
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
seconds=${2:-10}
work=$(mktemp -d)
redis_port=16379
shale_port=17401
cleanup() {
  [ -n "${shale_pid:-}" ] && kill -INT "$shale_pid" 2>/dev/null && wait "$shale_pid" 2>/dev/null
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --bin shale >/dev/null 2>&1
shale=target/release/shale

redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save "" \
  --appendonly yes --appendfsync always --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
"$shale" up --data-dir "$work/shale-data" --port "$shale_port" --peer-port 17501 \
  --metrics-port 17601 --cluster-port 17701 --log-level warn >"$work/shale.log" 2>&1 &
shale_pid=$!

# Wait until both take writes.
for _ in $(seq 1 100); do
  if redis-cli -p "$redis_port" set ready 1 >/dev/null 2>&1 &&
     [ "$(redis-cli -p "$shale_port" set ready 1 2>/dev/null)" = "OK" ]; then
    break
  fi
  sleep 0.2
done

echo "machine: $(nproc) cores; $(uname -sr); redis $(redis-server --version | awk '{print $3}')"
for target in redis shale; do
  port=$redis_port
  [ "$target" = shale ] && port=$shale_port
  echo "== $target: redis-benchmark -t set,get -n $requests -c 50 -P 1"
  redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$requests" -c 50 -P 1 --csv
done
for target in redis shale; do
  port=$redis_port
  [ "$target" = shale ] && port=$shale_port
  echo "== $target: shale bench, 50 clients, 50% reads, ${seconds}s"
  "$shale" bench --addr "127.0.0.1:$port" --clients 50 --duration "$seconds" --quiet
done
