#!/usr/bin/env bash
# Plants each bug of shale-core's `planted-*` features in turn and runs the simulator suites
# (shale-core, shale-sim, shale-tests, without the transcripts, which fail on any change) against
# it; prints, per planted bug, the tests that failed. A planted bug no test catches is a
# missing scenario.
#
#   scripts/planted-bugs.sh [feature ...]    # default: every planted-* feature
#
# Extra environment (SHALE_SEEDS=...) is passed to the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
features=("$@")
if [ ${#features[@]} -eq 0 ]; then
  mapfile -t features < <(sed -n 's/^\(planted-[a-z-]*\) = \[\]$/\1/p' core/Cargo.toml)
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
uncaught=0
for feature in "${features[@]}"; do
  # The interaction transcripts fail on any change of behaviour; only tests that check a
  # property count as catching a planted bug.
  cargo test -p shale-core -p shale-sim -p shale-tests --no-fail-fast \
    --features "shale-core/$feature" -- --skip interaction_transcripts >"$log" 2>&1
  caught=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | sort -u | tr '\n' ' ')
  if [ -z "$caught" ]; then
    if grep -q "^error" "$log"; then
      echo "$feature: build failed"; grep -m5 "^error" "$log"
    else
      echo "$feature: NOT CAUGHT"
    fi
    uncaught=$((uncaught + 1))
  else
    echo "$feature: caught by $caught"
  fi
done
exit $((uncaught > 0))
