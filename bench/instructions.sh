#!/usr/bin/env bash
# Counts instructions per request of each in-process scenario and route with
# callgrind, a figure that does not depend on machine load.
#
# Usage: bench/instructions.sh [ITERATIONS]   (default 2000)
# Needs valgrind, and the `profile` binary built with
# `cargo build --profile bench -p session-bench --bin profile`.
# Prints a Markdown table. Each count covers `measured_requests` only: the
# requests themselves, without start-up, login or the warm-up request.
set -euo pipefail

iterations="${1:-2000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
binary="${CARGO_TARGET_DIR:-$root/target}/release/profile"
if [ ! -x "$binary" ]; then
    echo "error: $binary not found; build it with: cargo build --profile bench -p session-bench --bin profile" >&2
    exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
    echo "error: valgrind not found; install it (apt-get install valgrind)" >&2
    exit 1
fi

output="$(mktemp -d)"
trap 'rm -rf "$output"' EXIT

# Counts one scenario and route; extra arguments go to `profile`.
count() {
    local scenario="$1" route="$2"
    shift 2
    local log="$output/log"
    valgrind --tool=callgrind --callgrind-out-file="$output/callgrind.out" \
        --toggle-collect='*measured_requests*' \
        "$binary" "$scenario" "$route" "$iterations" "$@" 2>"$log"
    local collected
    collected="$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log")"
    if [ -z "$collected" ]; then
        echo "error: no callgrind count for $scenario $route; valgrind output:" >&2
        cat "$log" >&2
        exit 1
    fi
    echo $((collected / iterations))
}

echo "| scenario | read | write | untouched |"
echo "|---|---|---|---|"
for scenario in axum ours-memory ours-cookie tower-memory tower-memory-signed; do
    echo "| $scenario | $(count "$scenario" read) | $(count "$scenario" write) | $(count "$scenario" untouched) |"
done
echo "| axum + pass-through layer | $(count axum read --identity-layer) | $(count axum write --identity-layer) | $(count axum untouched --identity-layer) |"
# The layer's verified-id and record caches turned off: requests that miss both.
export SESSION_BENCH_NO_CACHES=1
echo "| ours-memory, caches off | $(count ours-memory read) | $(count ours-memory write) | $(count ours-memory untouched) |"
unset SESSION_BENCH_NO_CACHES
