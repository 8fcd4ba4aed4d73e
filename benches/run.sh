#!/usr/bin/env bash
# Runs every lowprof benchmark once, as for the "Latest results" in
# benches/README.md, and writes the markdown report:
#
#   1. cargo bench -p lowprof-benches            (heap_*, cpu_*; pprof-rs with
#                                                 its default unwinder)
#   2. the pprof-rs targets again with --features pprof-frame-pointer
#      (cargo unifies features per build, so pprof-rs's frame-pointer
#      unwinder needs a build of its own; its results go to *_fp groups)
#   3. python3 benches/report.py > target/criterion/report.md
#
# Usage: bash benches/run.sh [--no-fp]    (JOBS=2 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
start=$(date +%s)
cargo bench -j "$JOBS" -p lowprof-benches
if [ "${1:-}" != "--no-fp" ]; then
    cargo bench -j "$JOBS" -p lowprof-benches --features pprof-frame-pointer \
        --bench cpu_handler_pprof --bench cpu_overhead_pprof --bench cpu_capture
fi
out="${CARGO_TARGET_DIR:-target}/criterion/report.md"
python3 benches/report.py > "$out"
echo "benchmarks took $(( $(date +%s) - start )) s; report: $out"
cat "$out"
