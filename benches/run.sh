#!/usr/bin/env bash
# Runs every lowprof benchmark once, as for the "Latest results" in
# benches/README.md, and writes the markdown report:
#
#   1. cargo bench -p lowprof-benches            (heap_* with dhat and the
#                                                 atomic-counting reference,
#                                                 cpu_* with pprof-rs's default
#                                                 unwinder, export,
#                                                 profiler_memory)
#   2. the pprof-rs targets again with --features pprof-frame-pointer
#      (cargo unifies features per build, so pprof-rs's frame-pointer
#      unwinder needs a build of its own; its results go to *_fp groups)
#   3. heap_jemalloc_prof with --features jemalloc-prof (jemalloc built with
#      its heap profiler; a build of its own for the same reason; *_jeprof
#      groups)
#   4. python3 benches/report.py > target/criterion/report.md
#
# Usage: bash benches/run.sh [--no-fp] [--no-jeprof]    (JOBS=2 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
fp=1
jeprof=1
for arg in "$@"; do
    case "$arg" in
        --no-fp) fp=0 ;;
        --no-jeprof) jeprof=0 ;;
        *) echo "usage: bash benches/run.sh [--no-fp] [--no-jeprof]" >&2; exit 2 ;;
    esac
done
start=$(date +%s)
cargo bench -j "$JOBS" -p lowprof-benches
if [ "$fp" = 1 ]; then
    cargo bench -j "$JOBS" -p lowprof-benches --features pprof-frame-pointer \
        --bench cpu_handler_pprof --bench cpu_overhead_pprof --bench cpu_capture
fi
if [ "$jeprof" = 1 ]; then
    cargo bench -j "$JOBS" -p lowprof-benches --features jemalloc-prof --bench heap_jemalloc_prof
fi
out="${CARGO_TARGET_DIR:-target}/criterion/report.md"
python3 benches/report.py > "$out"
echo "benchmarks took $(( $(date +%s) - start )) s; report: $out"
cat "$out"
