#!/usr/bin/env bash
# Instructions per call that the `metrics` feature adds, from `benches/observe.rs`, counted by
# callgrind (repeatable on a loaded machine, unlike wall time): each case runs N1 and N2 calls,
# and (instructions(N2) - instructions(N1)) / (N2 - N1) is the figure per call. The feature
# off and on are two builds of the same bench. Usage: scripts/bench-metrics.sh [N1 N2]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchover-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
n1="${1:-2000}"
n2="${2:-22000}"
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

bench_bin() { # features...
  cargo bench --bench observe --no-run --message-format=json "$@" 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}

instructions() { # binary case n
  local out
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" --calls "$2" "$3" >/dev/null 2>&1
  sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out"
  rm -f "$out"
}

per_call() { # binary case
  local a b
  a="$(instructions "$1" "$2" "$n1")"
  b="$(instructions "$1" "$2" "$n2")"
  echo "scale=1; ($b - $a) / ($n2 - $n1)" | bc
}

off="$(bench_bin)"
on="$(bench_bin --features metrics)"
printf '%-34s %s\n' "case (instructions per call)" "count"
for c in first_try checkout; do
  printf '%-34s %s\n' "$c, feature off" "$(per_call "$off" "$c")"
  printf '%-34s %s\n' "$c, on, no recorder (no-op handles)" "$(per_call "$on" "$c")"
  printf '%-34s %s\n' "$c, on, Prometheus exporter" "$(per_call "$on" "${c}_prometheus")"
done
