#!/usr/bin/env bash
# Instruction counts per op for every variant of the heap benchmarks, under
# valgrind's callgrind (repeatable on a noisy VM; user-space instructions
# only: page faults and system calls inside the kernel are not counted).
#
#   bash benches/callgrind.sh [PAIRS] [MAPS] [DHAT_PAIRS]
#
# Prints a markdown table; callgrind output files go to $OUT (default
# target/callgrind/), for callgrind_annotate. Then the peers: the
# atomic-counting reference, dhat (DHAT_PAIRS pairs, default 20000: it is
# ~50x slower natively) and, from a second build of the example with
# --features jemalloc-prof, jemalloc's own profiler at lg_prof_sample:19 next
# to its inactive build and lowprof over that build (NO_JEPROF=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-1000000}
MAPS=${2:-2}
DHAT_PAIRS=${3:-20000}
OUT=${OUT:-target/callgrind}
mkdir -p "$OUT"
cargo build -j 2 --profile bench -p lowprof-benches --example pairs_callgrind >&2
BIN=target/release/examples/pairs_callgrind

ir() { # variant ops [tag] -> instructions per op
    local tag=${3:-}
    local file="$OUT/callgrind.$1$tag.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        --toggle-collect='pairs_callgrind::measured_*' \
        "$BIN" "$1" "$2" 2>"$OUT/$1$tag.log" >/dev/null
    local total
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    python3 -c "print(f'{$total / $2:.1f}')"
}

fmt() { # number -> 1 decimal, or thousands separators when large
    python3 -c "v=$1; print(f'{v:,.0f}' if abs(v) >= 1e5 else f'{v:.1f}')"
}

line() { # label value baseline -> a table row
    python3 -c "b=$3; v=$2; f=lambda x: f'{x:+,.0f}' if abs(x) >= 1e5 else f'{x:+.1f}'; g=lambda x: f'{x:,.0f}' if x >= 1e5 else f'{x:.1f}'; print(f'| $1 | {g(v)} | {f(v - b)} | {v / b:.3f}× |')"
}

row() { # label variant baseline_ir ops [tag]
    local v; v=$(ir "$2" "$4" "${5:-}")
    python3 -c "b=$3; v=$v; f=lambda x: f'{x:+,.0f}' if abs(x) >= 1e5 else f'{x:+.1f}'; g=lambda x: f'{x:,.0f}' if x >= 1e5 else f'{x:.1f}'; print(f'| $1 | {g(v)} | {f(v - b)} | {v / b:.3f}× |')"
}

echo "| variant | instructions/op | vs inner | ratio |"
echo "|---|---:|---:|---:|"
base=$(ir system "$PAIRS"); echo "| System (pairs) | $(fmt "$base") | | |"; sys_base=$base
row "CountdownOnly<System>" floor-system "$base" "$PAIRS"
row "CountdownFreeTest<System>" free-test-system "$base" "$PAIRS"
row "SampledAlloc<System>" sampled-system "$base" "$PAIRS"
STOP_SAMPLING=1 row "SampledAlloc<System>, sampling stopped" sampled-system "$base" "$PAIRS" .stopped
CONTEXT=1 row "SampledAlloc<System>, trace context set" sampled-system "$base" "$PAIRS" .ctx
base=$(ir jemalloc "$PAIRS"); echo "| Jemalloc (pairs) | $(fmt "$base") | | |"; je_base=$base
row "CountdownOnly<Jemalloc>" floor-jemalloc "$base" "$PAIRS"
row "CountdownFreeTest<Jemalloc>" free-test-jemalloc "$base" "$PAIRS"
row "SampledAlloc<Jemalloc>" sampled-jemalloc "$base" "$PAIRS"
STOP_SAMPLING=1 row "SampledAlloc<Jemalloc>, sampling stopped" sampled-jemalloc "$base" "$PAIRS" .stopped
CONTEXT=1 row "SampledAlloc<Jemalloc>, trace context set" sampled-jemalloc "$base" "$PAIRS" .ctx
base=$(ir realistic-system "$MAPS"); echo "| System (realistic, per map) | $(fmt "$base") | | |"
row "CountdownOnly<System> (realistic)" realistic-floor "$base" "$MAPS"
row "SampledAlloc<System> (realistic)" realistic-sampled "$base" "$MAPS"
STOP_SAMPLING=1 row "SampledAlloc<System> (realistic), sampling stopped" realistic-sampled "$base" "$MAPS" .stopped
CONTEXT=1 row "SampledAlloc<System> (realistic), trace context set" realistic-sampled "$base" "$MAPS" .ctx

echo
echo "Peers (pairs):"
echo
echo "| variant | instructions/op | vs inner | ratio |"
echo "|---|---:|---:|---:|"
echo "| System | $(fmt "$sys_base") | | |"
row "AtomicCounting<System>" atomic-system "$sys_base" "$PAIRS"
row "dhat, no profiler (dhat-idle)" dhat-idle "$sys_base" "$PAIRS"
row "dhat ($DHAT_PAIRS pairs)" dhat "$sys_base" "$DHAT_PAIRS"
echo "| Jemalloc | $(fmt "$je_base") | | |"
row "AtomicCounting<Jemalloc>" atomic-jemalloc "$je_base" "$PAIRS"
if [ "${NO_JEPROF:-}" != 1 ]; then
    cargo build -j 2 --profile bench -p lowprof-benches --features jemalloc-prof --example pairs_callgrind >&2
    jbase=$(ir jemalloc "$PAIRS" .jeprof)
    line "Jemalloc, --enable-prof build, prof.active false (vs plain Jemalloc)" "$jbase" "$je_base"
    row "SampledAlloc<Jemalloc> over that build" sampled-jemalloc "$jbase" "$PAIRS" .jeprof
    jp=$(ir jeprof "$PAIRS" .jeprof)
    line "jemalloc-prof (prof.active true)" "$jp" "$jbase"
    line "jemalloc-prof vs plain Jemalloc" "$jp" "$je_base"
    # Leave the plain build in place for ladder.py.
    cargo build -j 2 --profile bench -p lowprof-benches --example pairs_callgrind >&2
fi
