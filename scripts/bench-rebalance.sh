#!/usr/bin/env bash
# Shards moving under load on a real dataset: a fresh `shale up` (3 nodes, 2 replica groups,
# 16 shards, fsync on), loaded with KEYS keys of 100 bytes, then a 50-client mixed load alone
# and while group 2 leaves, joins again and ten random shards move (`shale bench --rebalance`
# prints each step's time, latency before and during, elections and resident memory); then
# Ctrl-C and `shale up` again on the same data, timing until a key reads back.
#
#   scripts/bench-rebalance.sh [keys, default 2000000] [seconds measured alone, default 20] \
#       [more `shale up` flags, e.g. --handover-kib-per-sec 2048]
#
# Needs redis-cli (Debian: redis-tools) for the restart check.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-2000000}
seconds=${2:-20}
shift $(($# < 2 ? $# : 2))
up_flags=("$@")
work=$(mktemp -d)
port=17411
addrs=(--addr "127.0.0.1:$port" --addr "127.0.0.1:$((port + 1))" --addr "127.0.0.1:$((port + 2))")
cleanup() {
  [ -n "${shale_pid:-}" ] && kill -INT "$shale_pid" 2>/dev/null && wait "$shale_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --bin shale >/dev/null 2>&1
shale=target/release/shale
start_up() {
  "$shale" up --data-dir "$work/shale-data" --port "$port" --peer-port 17511 \
    --metrics-port 17611 --cluster-port 17711 --log-level warn "${up_flags[@]}" >>"$work/shale.log" 2>&1 &
  shale_pid=$!
}
# Seconds until key:0 reads back through the first node
until_served() {
  local started
  started=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    if [ -n "$(redis-cli -p "$port" get key:0 2>/dev/null)" ]; then
      echo "$(date +%s.%N) - $started" | bc
      return 0
    fi
    sleep 0.05
  done
  echo "never"
}

echo "machine: $(nproc) cores; $(uname -sr)"
start_up
"$shale" bench --rebalance --keys "$keys" "${addrs[@]}" --duration "$seconds" \
  --pid "$shale_pid" --quiet
kill -INT "$shale_pid"
wait "$shale_pid" || true
start_up
echo "after Ctrl-C, shale up served key:0 again in $(until_served) s"
