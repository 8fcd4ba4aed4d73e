#!/usr/bin/env python3
"""Summarise lowprof's benchmarks (heap and CPU) as markdown tables.

Heap: criterion's ``target/criterion/<group>/<bench>/new/{benchmark,estimates}.json``
for the groups ``heap_pairs_1t``, ``heap_pairs_2t`` and ``heap_realistic``
and their peer-profiler counterparts (suffix ``_jeprof``: jemalloc's own heap
profiler, ``heap_jemalloc_prof`` built with ``--features jemalloc-prof``;
suffix ``_dhat``: dhat-rs): per benchmark the median time per op (criterion's
``median.point_estimate``), the ratio to its inner allocator from the same
process (``SampledAlloc<System>`` / ``System``, ``jemalloc-prof`` /
``Jemalloc``, ``dhat`` / ``System`` …), a conservative range for that ratio
from the two medians' 95 % confidence intervals, and the budget verdict; then
the profilers side by side, one row per (workload, profiler).

Export: criterion group ``export`` (encode times) and ``export/sizes.json``
(bytes). Memory held by the profiler: ``profiler_memory/results.json``.

CPU:
- handler cost: criterion groups ``cpu_handler`` (lowprof) and
  ``cpu_handler_pprof`` / ``cpu_handler_pprof_fp`` (pprof-rs, default and
  frame-pointer unwinder): ns per signal, cost above the ``empty`` handler of
  the same group (the floor), as ns and as a multiple of the floor; plus the
  interleaved "same storm" medians from ``<group>/storm.json``;
- captured CPU: ``cpu_capture/results.json`` (and ``results_pprof_fp.json``);
- overhead: criterion groups ``cpu_overhead``, ``cpu_overhead_pprof``,
  ``cpu_overhead_pprof_fp``: median per workload call, ratio to ``none`` of
  the same group (same process) with its CI range, and the interleaved
  cross-check's wall / thread-CPU / process-CPU ratios from
  ``<group>/interleaved.json``; lowprof's idle cost from ``cpu_overhead/idle.json``.

Then the machine (date, ``uname -r``, CPU model, rustc) and a noise line.
Sections without results are left out.

Python 3.11, standard library only. Usage:

    python3 benches/report.py [--criterion-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BASE_GROUPS = ["heap_pairs_1t", "heap_pairs_2t", "heap_realistic"]
PEER_SUFFIXES = ["", "_jeprof", "_dhat"]
GROUPS = [g + suffix for suffix in PEER_SUFFIXES for g in BASE_GROUPS]
EXPORT_GROUP = "export"
HANDLER_GROUPS = ["cpu_handler", "cpu_handler_pprof", "cpu_handler_pprof_fp"]
OVERHEAD_GROUPS = ["cpu_overhead", "cpu_overhead_pprof", "cpu_overhead_pprof_fp"]
CPU_GROUPS = HANDLER_GROUPS + OVERHEAD_GROUPS

# Which profiler / unwinder a CPU group measures.
GROUP_LABEL = {
    "cpu_handler": "lowprof",
    "cpu_handler_pprof": "pprof-rs (default unwinder)",
    "cpu_handler_pprof_fp": "pprof-rs (frame-pointer)",
    "cpu_overhead": "lowprof",
    "cpu_overhead_pprof": "pprof-rs (default unwinder)",
    "cpu_overhead_pprof_fp": "pprof-rs (frame-pointer)",
}

# CPU budgets from the issue ("CPU profiling", Speed).
HANDLER_BUDGET_NS = 1000.0  # above the floor
HANDLER_BUDGET_RATIO = 0.3  # above the floor, as a multiple of it
CAPTURE_BUDGET = 0.98

# What one op is, per workload (group without its peer suffix).
OPS = {
    "heap_pairs_1t": "malloc/free pair, 1 thread",
    "heap_pairs_2t": "malloc/free pair per thread, 2 threads",
    "heap_realistic": "build + drop a 200 000-entry BTreeMap",
}

# Peer profilers' variants and the variant of the same group (process) they
# are compared with.
INNER = {
    "jemalloc-prof": "Jemalloc",
    "dhat": "System",
    "dhat-idle": "System",
}

# Where each group's variants come from.
GROUP_NOTE = {
    "": "",
    "_jeprof": "jemalloc built with `--enable-prof`, `opt.prof:true`; `Jemalloc` = `prof.active` false",
    "_dhat": "global allocator `dhat::Alloc` or `System`",
}


def workload_of(group: str) -> str:
    for suffix in PEER_SUFFIXES[1:]:
        if group.endswith(suffix):
            return group[: -len(suffix)]
    return group

# Suffix of the variants run with a trace context set on every benchmarking
# thread (issue 5's speed check): `SampledAlloc<System>+ctx`,
# `lowprof_sample+ctx`. They keep the budgets of the variant without it.
CTX = "+ctx"

# Budgets from the issue: (group, variant) -> max ratio to the inner allocator.
BUDGETS = {
    ("heap_pairs_1t", "SampledAlloc<System>"): 1.03,
    ("heap_pairs_2t", "SampledAlloc<System>"): 1.03,
    ("heap_pairs_1t", "SampledAlloc<Jemalloc>"): 1.20,
    ("heap_pairs_2t", "SampledAlloc<Jemalloc>"): 1.20,
    ("heap_realistic", "SampledAlloc<System>"): 1.01,
}
BUDGETS.update({(g, v + CTX): b for (g, v), b in list(BUDGETS.items())})

# Row order within a group.
ORDER = [
    "System",
    "CountdownOnly<System>",
    "CountdownFreeTest<System>",
    "AtomicCounting<System>",
    "SampledAlloc<System>",
    "SampledAlloc<System>+ctx",
    "dhat-idle",
    "dhat",
    "Jemalloc",
    "CountdownOnly<Jemalloc>",
    "CountdownFreeTest<Jemalloc>",
    "AtomicCounting<Jemalloc>",
    "SampledAlloc<Jemalloc>",
    "SampledAlloc<Jemalloc>+ctx",
    "jemalloc-prof",
]


@dataclass
class Result:
    group: str
    variant: str
    median: float  # ns
    lo: float  # 95 % CI of the median, ns
    hi: float
    mad: float  # median absolute deviation, ns
    mtime: float

    @property
    def inner(self) -> str:
        if self.variant in INNER:
            return INNER[self.variant]
        m = re.fullmatch(r"[A-Za-z]+<(.+)>", self.variant.removesuffix(CTX))
        return m.group(1) if m else self.variant


def default_criterion_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "criterion"
    # benches/report.py -> the workspace root is the parent of benches/.
    return Path(__file__).resolve().parent.parent / "target" / "criterion"


def load(root: Path, groups: list[str] = GROUPS) -> list[Result]:
    results = []
    for group in groups:
        gdir = root / group
        if not gdir.is_dir():
            continue
        for est_path in sorted(gdir.glob("*/new/estimates.json")):
            bench_path = est_path.with_name("benchmark.json")
            try:
                est = json.loads(est_path.read_text())
                meta = json.loads(bench_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                print(f"warning: skipping {est_path}: {e}", file=sys.stderr)
                continue
            median = est["median"]
            results.append(
                Result(
                    group=meta.get("group_id", group),
                    variant=meta.get("function_id") or meta.get("title", "?"),
                    median=median["point_estimate"],
                    lo=median["confidence_interval"]["lower_bound"],
                    hi=median["confidence_interval"]["upper_bound"],
                    mad=est["median_abs_dev"]["point_estimate"],
                    mtime=est_path.stat().st_mtime,
                )
            )
    return results


def fmt_ns(ns: float) -> str:
    if ns >= 1e5:
        return f"{ns:,.0f}"
    return f"{ns:.2f}"


def cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def verdict(lo: float, q: float, hi: float, budget: float) -> str:
    """Budget verdict for a value whose conservative range is lo..hi."""
    if hi <= budget:
        return "yes"
    if lo > budget:
        return "**no**"
    if q <= budget:
        return "yes (median; CI straddles)"
    return "**no** (median; CI straddles)"


def load_interleaved(root: Path) -> dict[str, dict]:
    """Each heap group's interleaved cross-check: variant -> its entry."""
    out = {}
    for group in GROUPS:
        data = read_json(root / group / "interleaved.json")
        if data:
            out[group] = data.get("variants", {})
    return out


def paired_col(entry: dict | None, key: str = "cpu_paired") -> str:
    q = (entry or {}).get(key)
    return f"{q[1]:.3f}× [{q[0]:.3f}–{q[2]:.3f}]" if q else "—"


def heap_table(results: list[Result], inter: dict[str, dict], verdicts: list[str]) -> None:
    by_key = {(r.group, r.variant): r for r in results}
    rank = {name: i for i, name in enumerate(ORDER)}
    results = sorted(results, key=lambda r: (GROUPS.index(r.group) if r.group in GROUPS else 99,
                                             rank.get(r.variant, 99), r.variant))
    print("| benchmark | variant | median ns/op | ratio vs inner | ratio range (95 % CIs) "
          "| interleaved: thread-CPU ratio [IQR] | wall ratio [IQR] | budget | met? |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        inner = by_key.get((r.group, r.inner))
        ratio = rng = "—"
        if inner is not None and inner is not r:
            ratio = f"{r.median / inner.median:.3f}×"
            rng = f"{r.lo / inner.hi:.3f}–{r.hi / inner.lo:.3f}"
        iv = inter.get(r.group, {}).get(r.variant) if r.variant != r.inner else None
        budget = BUDGETS.get((r.group, r.variant))
        bcol = met = ""
        if budget is not None:
            bcol = f"≤ {budget:.2f}×"
            q = (iv or {}).get("cpu_paired")
            if q:
                met = verdict(q[0], q[1], q[2], budget).replace("CI straddles", "IQR straddles")
                crit = f"; criterion {r.median / inner.median:.3f}×" if inner is not None else ""
                verdicts.append(f"{r.group} {r.variant}: interleaved thread CPU {q[1]:.3f}× "
                                f"(IQR {q[0]:.3f}–{q[2]:.3f}){crit} vs ≤ {budget:.2f}× → {met}")
            elif inner is None:
                met = "no baseline"
            else:
                q = r.median / inner.median
                met = verdict(r.lo / inner.hi, q, r.hi / inner.lo, budget)
                verdicts.append(f"{r.group} {r.variant}: criterion {q:.3f}× vs ≤ {budget:.2f}× → {met}")
        print(f"| {r.group} | {r.variant} | {fmt_ns(r.median)} | {ratio} | {rng} | {paired_col(iv)} "
              f"| {paired_col(iv, 'wall_paired')} | {bcol} | {met} |")
    print()
    print("Ops: " + "; ".join(f"`{g}*` = {OPS[g]}" for g in BASE_GROUPS
                              if any(workload_of(r.group) == g for r in results)) + ".")
    notes = [f"`*{sfx}`: {GROUP_NOTE[sfx]}" for sfx in PEER_SUFFIXES[1:]
             if any(r.group.endswith(sfx) for r in results)]
    if notes:
        print("Groups: " + "; ".join(notes) + ".")
    print("Each ratio is to the inner allocator measured in the same process. Criterion measures the variants one "
          "after the other; \"interleaved\" = the cross-check run after it (every variant one batch per round, in "
          "rotating order; 1-thread pairs and the BTreeMap only), per-round paired ratios of the thread's CPU time "
          "and of wall time, median [interquartile range]. Budget verdicts use the interleaved thread-CPU ratio "
          "where there is one.")


# The profilers side by side: (label, wrapper variant, group suffix, inner
# variant, inner's group suffix). Rows whose two groups differ compare two
# processes (two builds of jemalloc) and say so.
PEERS = [
    ("countdown only (the floor)", "CountdownOnly<System>", "", "System", ""),
    ("countdown + free test (the floor with a free test)", "CountdownFreeTest<System>", "", "System", ""),
    ("one shared atomic per op", "AtomicCounting<System>", "", "System", ""),
    ("**lowprof**", "SampledAlloc<System>", "", "System", ""),
    ("**lowprof**, trace context set", "SampledAlloc<System>+ctx", "", "System", ""),
    ("dhat, no profiler running", "dhat-idle", "_dhat", "System", "_dhat"),
    ("dhat", "dhat", "_dhat", "System", "_dhat"),
    ("countdown only (the floor)", "CountdownOnly<Jemalloc>", "", "Jemalloc", ""),
    ("countdown + free test (the floor with a free test)", "CountdownFreeTest<Jemalloc>", "", "Jemalloc", ""),
    ("one shared atomic per op", "AtomicCounting<Jemalloc>", "", "Jemalloc", ""),
    ("**lowprof**", "SampledAlloc<Jemalloc>", "", "Jemalloc", ""),
    ("**lowprof**, trace context set", "SampledAlloc<Jemalloc>+ctx", "", "Jemalloc", ""),
    ("**lowprof** (over the profiling jemalloc build)", "SampledAlloc<Jemalloc>", "_jeprof", "Jemalloc", "_jeprof"),
    ("jemalloc's profiler, `lg_prof_sample:19`", "jemalloc-prof", "_jeprof", "Jemalloc", "_jeprof"),
    ("jemalloc's profiler vs plain jemalloc (other process)", "jemalloc-prof", "_jeprof", "Jemalloc", ""),
    ("`opt.prof:true`, inactive, vs plain jemalloc (other process)", "Jemalloc", "_jeprof", "Jemalloc", ""),
]


def peers_table(results: list[Result], inter: dict[str, dict], verdicts: list[str]) -> None:
    """Each profiler's ratio to its inner allocator, per workload."""
    by_key = {(r.group, r.variant): r for r in results}
    print("| workload | profiler | variant | inner | median ns/op | inner ns/op | ratio | ratio range (95 % CIs) "
          "| interleaved thread-CPU ratio [IQR] |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    ratios: dict[tuple[str, str, str], float] = {}
    for base in BASE_GROUPS:
        for label, variant, sfx, inner, inner_sfx in PEERS:
            r, i = by_key.get((base + sfx, variant)), by_key.get((base + inner_sfx, inner))
            if r is None or i is None:
                continue
            q = r.median / i.median
            ratios[(base, variant, sfx + inner_sfx)] = q
            inner_label = inner + ("" if sfx == inner_sfx else " (`heap_pairs`/`heap_realistic` binary)")
            if inner_sfx == "_jeprof":
                inner_label += " (`opt.prof:true`, inactive)"
            iv = inter.get(base + sfx, {}).get(variant) if sfx == inner_sfx else None
            if iv:
                ratios[(base, variant, sfx + inner_sfx + "_inter")] = iv["cpu_paired"][1]
            print(f"| {base} | {label} | `{variant}` | {inner_label} | {fmt_ns(r.median)} | {fmt_ns(i.median)} "
                  f"| {q:.3f}× | {r.lo / i.hi:.3f}–{r.hi / i.lo:.3f} | {paired_col(iv)} |")
    print()
    print("Same-process ratios except where a row says \"other process\" (`heap_jemalloc_prof` links jemalloc built "
          "with `--enable-prof`, which no other bench binary can share).")
    for base in BASE_GROUPS:
        ours = ratios.get((base, "SampledAlloc<Jemalloc>", "_jeprof_jeprof"))
        ours_plain = ratios.get((base, "SampledAlloc<Jemalloc>", ""))
        theirs = ratios.get((base, "jemalloc-prof", "_jeprof_jeprof"))
        theirs_plain = ratios.get((base, "jemalloc-prof", "_jeprof"))
        if theirs is None:
            continue
        text = f"peers: {base}: jemalloc-prof {theirs:.3f}× its inactive build"
        if theirs_plain is not None:
            text += f" ({theirs_plain:.3f}× plain jemalloc, other process)"
        if ours is not None:
            text += f"; lowprof over the same jemalloc {ours:.3f}× (same process)"
        if ours_plain is not None:
            text += f", {ours_plain:.3f}× over plain jemalloc"
        if ours is not None:
            text += f" → lowprof {'below' if ours < theirs else '**not below**'} jemalloc-prof"
        ours_i = ratios.get((base, "SampledAlloc<Jemalloc>", "_jeprof_jeprof_inter"))
        theirs_i = ratios.get((base, "jemalloc-prof", "_jeprof_jeprof_inter"))
        if ours_i is not None and theirs_i is not None:
            text += (f"; interleaved thread CPU: jemalloc-prof {theirs_i:.3f}×, lowprof {ours_i:.3f}× → lowprof "
                     f"{'below' if ours_i < theirs_i else '**not below**'}")
        verdicts.append(text)
        dhat = ratios.get((base, "dhat", "_dhat_dhat"))
        if dhat is not None:
            verdicts.append(f"peers: {base}: dhat {dhat:.1f}× System")


def context_table(heap: list[Result], cpu: list[Result], root: Path, inter: dict[str, dict],
                  verdicts: list[str]) -> None:
    """Issue 5's speed check: each lowprof variant with a trace context set
    next to the same variant without one, from the same run and process."""
    by_key = {(r.group, r.variant): r for r in heap + cpu}
    print("| benchmark | variant | without context | with context | with / without | range (95 % CIs) "
          "| interleaved thread CPU vs inner: without → with | budget | met? (with context) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    any_row = False
    for group in BASE_GROUPS:
        for variant in ["SampledAlloc<System>", "SampledAlloc<Jemalloc>"]:
            a, b = by_key.get((group, variant)), by_key.get((group, variant + CTX))
            if a is None or b is None:
                continue
            any_row = True
            iv = inter.get(group, {})
            qa, qb = (iv.get(variant) or {}).get("cpu_paired"), (iv.get(variant + CTX) or {}).get("cpu_paired")
            icol = f"{qa[1]:.3f}× → {qb[1]:.3f}×" if qa and qb else "—"
            budget = BUDGETS.get((group, variant))
            inner = by_key.get((group, b.inner))
            met = ""
            if budget is not None:
                if qb:
                    met = verdict(qb[0], qb[1], qb[2], budget).replace("CI straddles", "IQR straddles")
                    met += f" ({qb[1]:.3f}×, interleaved)"
                elif inner is not None:
                    q = b.median / inner.median
                    met = verdict(b.lo / inner.hi, q, b.hi / inner.lo, budget) + f" ({q:.3f}×)"
            print(f"| {group} | {variant} | {fmt_ns(a.median)} ns | {fmt_ns(b.median)} ns | "
                  f"{b.median / a.median:.3f}× | {b.lo / a.hi:.3f}–{b.hi / a.lo:.3f} | {icol} | "
                  f"{f'≤ {budget:.2f}×' if budget else ''} | {met} |")
            verdicts.append(f"context: {group} {variant}: with / without a trace context "
                            f"{b.median / a.median:.3f}× (criterion medians {fmt_ns(b.median)} / "
                            f"{fmt_ns(a.median)} ns)" + (f"; interleaved thread CPU vs inner {qa[1]:.3f}× → "
                                                         f"{qb[1]:.3f}×" if qa and qb else ""))
    floor = by_key.get(("cpu_handler", "empty"))
    a, b = by_key.get(("cpu_handler", "lowprof_sample")), by_key.get(("cpu_handler", "lowprof_sample" + CTX))
    if floor is not None and a is not None and b is not None:
        any_row = True
        storm = (read_json(root / "cpu_handler" / "storm.json") or {}).get("variants", {})
        sf = storm.get("empty", {}).get("median_ns")
        sa = storm.get("lowprof_sample", {}).get("median_ns")
        sb = storm.get("lowprof_sample" + CTX, {}).get("median_ns")
        scol = f"{sa - sf:+.0f} → {sb - sf:+.0f} ns above floor (same storm)" if None not in (sf, sa, sb) else "—"
        above = b.median - floor.median
        met = "yes" if above <= HANDLER_BUDGET_NS and above / floor.median <= HANDLER_BUDGET_RATIO else "**no**"
        print(f"| cpu_handler | lowprof_sample (ns/signal, above the {floor.median:.0f} ns floor) "
              f"| {a.median - floor.median:+.0f} ns | {above:+.0f} ns | {b.median / a.median:.3f}× (whole signal) "
              f"| {b.lo / a.hi:.3f}–{b.hi / a.lo:.3f} | {scol} | ≤ {HANDLER_BUDGET_NS:.0f} ns above floor | {met} |")
        verdicts.append(f"context: cpu_handler: lowprof_sample {a.median - floor.median:+.0f} ns above the floor "
                        f"without a context, {above:+.0f} ns with one (criterion medians {a.median:.0f} / "
                        f"{b.median:.0f} ns per signal, floor {floor.median:.0f} ns)")
    if any_row:
        print()
        print("`+ctx` = the same variant with `lowprof::trace::set_context(trace, span)` active on every "
              "benchmarking thread (both workers in `heap_pairs_2t`; the signalled thread in `cpu_handler`) for "
              "the whole batch; it runs right after the variant without a context, in the same process and group. "
              "The context reader is registered before any variant runs, so the two differ only in whether the "
              "thread has a context. The allocation fast path never reads the context; samples (one per ~450 "
              "pairs; every signal in `cpu_handler`) read and record it.")


def export_table(results: list[Result], root: Path) -> float | None:
    """Encode times and bytes; returns the sizes file's timestamp."""
    rows = {r.variant: r for r in results if r.group == EXPORT_GROUP}
    sizes = read_json(root / EXPORT_GROUP / "sizes.json") or {}
    if not rows and not sizes:
        return None
    nbytes = sizes.get("bytes", {})
    if sizes:
        print(f"One profile of {sizes['stacks']:,} distinct stacks (mean depth {sizes['mean_depth']:.1f}) and "
              f"{sizes['samples']:,} samples, aggregated into {sizes['pprof_samples']:,} samples by (stack, thread); "
              f"{sizes['locations']:,} locations, {sizes['functions']:,} functions, {sizes['mappings']} mappings.")
        print()
    print("| output | call | median ms | 95 % CI ms | bytes | bytes per stack |")
    print("|---|---|---:|---:|---:|---:|")
    what = {
        "pprof_encode": ("pprof, uncompressed", "`pprof::encode`"),
        "pprof_gzip": ("**pprof, gzip** (`.pb.gz`)", "`pprof::encode_gzip`"),
        "otlp_encode": ("**OTLP request**, uncompressed", "`otlp::encode_request`"),
        "otlp_gzip": ("OTLP request, gzip (flate2 default level)", "`encode_request` + `GzEncoder`"),
    }
    for key, (label, call) in what.items():
        r = rows.get(key)
        b = nbytes.get(key)
        t = f"{r.median / 1e6:.1f}" if r else "—"
        ci = f"{r.lo / 1e6:.1f}–{r.hi / 1e6:.1f}" if r else "—"
        bcol = f"{b:,}" if b is not None else "—"
        per = f"{b / sizes['stacks']:.1f}" if b is not None and sizes.get("stacks") else "—"
        print(f"| {label} | {call} | {t} | {ci} | {bcol} | {per} |")
    stamp = sizes.get("unix_time")
    return float(stamp) if stamp else None


def memory_table(root: Path) -> float | None:
    """RSS held by lowprof with 10 000 stacks; returns the file's timestamp."""
    m = read_json(root / "profiler_memory" / "results.json")
    if not m:
        return None
    mb = lambda b: f"{b / 1048576:.2f}"  # noqa: E731
    print(f"`lowprof::Profiler` (heap at a {m['heap_interval']} B mean interval so every leaf is sampled, CPU at "
          f"{m['cpu_hz']} Hz) after {m['call_paths']:,} distinct call paths allocated and freed (live bytes 0): "
          f"{m['heap_stacks']:,} heap stacks, {m['heap_samples']:,} heap samples ({m['dropped_samples']} dropped). "
          f"RSS before the profiler started: {mb(m['rss_before'])} MiB.")
    print()
    print("| stage | heap_profile() ms | VmRSS Δ MiB | RssAnon Δ MiB | RssFile Δ MiB |")
    print("|---|---:|---:|---:|---:|")
    print(f"| profiler started, idle | | {mb(m['rss_idle_delta'])} | | |")
    print(f"| stacks recorded and drained | | {mb(m['rss_held_delta'])} | {mb(m['rss_held_anon_delta'])} "
          f"| {mb(m['rss_held_file_delta'])} |")
    for i, ns in enumerate(m.get("heap_profile_ns", [])):
        print(f"| after `heap_profile()` #{i + 1} | {ns / 1e6:.1f} | {mb(m['rss_after_profile_delta'][i])} "
              f"| {mb(m['rss_after_profile_anon_delta'][i])} | {mb(m['rss_after_profile_file_delta'][i])} |")
    print(f"| then `malloc_trim(0)` | | {mb(m['rss_after_trim_delta'])} | {mb(m['rss_after_trim_anon_delta'])} "
          f"| {mb(m['rss_after_trim_file_delta'])} |")
    print()
    print(f"Per stack once drained: {m['rss_held_delta'] / max(m['heap_stacks'], 1):,.0f} B of RSS "
          f"({m['rss_held_anon_delta'] / max(m['heap_stacks'], 1):,.0f} B anonymous). The profile: "
          f"{m['profile_samples']:,} samples, {m['profile_locations']} locations, {m['profile_functions']} functions, "
          f"{m['pprof_gzip_bytes']:,} B as `.pb.gz`. Δ = minus VmRSS before the profiler started; RssFile is "
          "mapped files (the symbolizer maps the binary's debug info).")
    return float(m.get("unix_time", 0)) or None


def handler_table(results: list[Result], root: Path, verdicts: list[str]) -> None:
    """ns per signal, cost above the group's `empty` floor."""
    print("| group | profiler | variant | median ns/signal | above floor | × floor | range of × floor (95 % CIs) "
          "| same storm: median ns (above floor) | budget | met? |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for group in HANDLER_GROUPS:
        rows = [r for r in results if r.group == group]
        if not rows:
            continue
        floor = next((r for r in rows if r.variant == "empty"), None)
        storm = (read_json(root / group / "storm.json") or {}).get("variants", {})
        s_floor = storm.get("empty", {}).get("median_ns")
        order = ["empty", "empty_rtsig", "lowprof_foreign", "lowprof_sample", "lowprof_sample" + CTX, "pprof-rs"]
        rows.sort(key=lambda r: order.index(r.variant) if r.variant in order else 99)
        for r in rows:
            above = times = rng = "—"
            bcol = met = ""
            if floor is not None and r is not floor:
                a = r.median - floor.median
                above = f"{a:+.0f} ns"
                times = f"{a / floor.median:.3f}×"
                # Conservative range of (r - floor) / floor from the CIs.
                lo = (r.lo - floor.hi) / floor.hi
                hi = (r.hi - floor.lo) / floor.lo
                rng = f"{lo:.3f}–{hi:.3f}"
                if group == "cpu_handler" and r.variant in ("lowprof_sample", "lowprof_sample" + CTX):
                    bcol = f"≤ {HANDLER_BUDGET_NS:.0f} ns and ≤ {HANDLER_BUDGET_RATIO}× floor"
                    a_lo, a_hi = r.lo - floor.hi, r.hi - floor.lo
                    m_ns = verdict(a_lo, a, a_hi, HANDLER_BUDGET_NS)
                    m_ratio = verdict(lo, a / floor.median, hi, HANDLER_BUDGET_RATIO)
                    met = m_ns if m_ns == m_ratio else f"{m_ns} / {m_ratio}"
                    verdicts.append(
                        f"handler: {r.variant} {a:+.0f} ns above a {floor.median:.0f} ns floor "
                        f"({a / floor.median:.3f}×) vs ≤ {HANDLER_BUDGET_NS:.0f} ns and "
                        f"≤ {HANDLER_BUDGET_RATIO}× → {met}")
            st = storm.get(r.variant, {}).get("median_ns")
            scol = "—"
            if st is not None:
                scol = f"{st:.0f}"
                if s_floor is not None and r.variant != "empty":
                    scol += f" ({st - s_floor:+.0f})"
            print(f"| {group} | {GROUP_LABEL[group]} | {r.variant} | {r.median:.0f} | {above} | {times} | {rng} "
                  f"| {scol} | {bcol} | {met} |")
    print()
    print("One op = one signal sent by the thread to itself, 64+ frames deep: system call + delivery + "
          "handler + `sigreturn`. Floor = `empty` of the same group (same signal, sender and handler flags).")


def capture_table(root: Path, verdicts: list[str]) -> list[float]:
    """Prints the captured-CPU table; returns the files' timestamps."""
    rows, stamps = [], []
    for name in ["results.json", "results_pprof_fp.json"]:
        data = read_json(root / "cpu_capture" / name)
        if data:
            rows += data.get("rows", [])
            stamps.append(float(data.get("unix_time", 0)))
            seconds = data.get("cpu_seconds")
    if not rows:
        return stamps
    print(f"Captured CPU, ~{seconds} CPU-s per run: sampled CPU / process CPU (`getrusage`) over the same window.")
    print()
    print("| profiler | Hz | busy threads | wall s | process CPU s | sampled CPU s | signals | periods | share | "
          "busy-thread share | dropped | budget | met? |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        bcol = met = ""
        share = r["share"]
        if r["profiler"] == "lowprof":
            bcol = f"≥ {CAPTURE_BUDGET * 100:.0f} %"
            met = "yes" if share >= CAPTURE_BUDGET else "**no**"
            verdicts.append(f"capture: lowprof {r['hz']} Hz, {r['threads']} thread(s): "
                            f"{100 * share:.1f} % vs ≥ {CAPTURE_BUDGET * 100:.0f} % → {met}")
        signals = r.get("signals", r.get("samples", 0))
        periods = r.get("periods", signals)
        print(f"| {r['profiler']} | {r['hz']} | {r['threads']} | {r['wall_ns'] / 1e9:.2f} | "
              f"{r['process_cpu_ns'] / 1e9:.3f} | "
              f"{r['sampled_cpu_ns'] / 1e9:.3f} | {signals} | {periods} | {100 * share:.1f} % | "
              f"{100 * r['busy_share']:.1f} % | {r['dropped']} | {bcol} | {met} |")
    return stamps


def overhead_table(results: list[Result], root: Path, verdicts: list[str]) -> None:
    print("| group | profiler | variant | criterion median ms/call | criterion ratio vs none | ratio range (95 % CIs) "
          "| interleaved wall ratio [IQR] | thread CPU ratio [IQR] | process CPU ratio [IQR] | budget | met? |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")

    def paired(iv: dict, key: str) -> str:
        q = iv.get(f"{key}_paired")
        if not q:
            return f"{iv[f'{key}_ratio']:.4f}×" if f"{key}_ratio" in iv else "—"
        return f"{q[1]:.4f}× [{q[0]:.3f}–{q[2]:.3f}]"

    for group in OVERHEAD_GROUPS:
        rows = [r for r in results if r.group == group]
        if not rows:
            continue
        base = next((r for r in rows if r.variant == "none"), None)
        inter = (read_json(root / group / "interleaved.json") or {}).get("variants", {})
        order = ["none", "timer_floor_999hz", "lowprof_99hz", "lowprof_999hz", "pprof-rs_99hz", "pprof-rs_999hz"]
        rows.sort(key=lambda r: (order.index(r.variant) if r.variant in order else 99, r.variant))
        for r in rows:
            ratio = rng = "—"
            bcol = met = ""
            iv = inter.get(r.variant, {})
            if base is not None and r is not base:
                q = r.median / base.median
                lo, hi = r.lo / base.hi, r.hi / base.lo
                ratio, rng = f"{q:.3f}×", f"{lo:.3f}–{hi:.3f}"
                if group == "cpu_overhead" and r.variant.startswith("lowprof"):
                    bcol = "within noise"
                    pw = iv.get("wall_paired")
                    floor = inter.get("timer_floor_999hz", {}).get("wall_paired")
                    if pw:
                        # Within noise: at least a quarter of the rounds ran
                        # as fast with lowprof as without (IQR reaches 1.0).
                        met = "yes" if pw[0] <= 1.0 else f"**no** ({100 * (pw[1] - 1):+.1f} %"
                        if pw[0] > 1.0:
                            met += f"; bare-timer floor {100 * (floor[1] - 1):+.1f} %)" if floor else ")"
                        basis = (f"interleaved paired wall ratio {pw[1]:.4f}× (IQR {pw[0]:.4f}–{pw[2]:.4f}), "
                                 f"thread CPU {paired(iv, 'thread_cpu')}, process CPU {paired(iv, 'process_cpu')}")
                    else:
                        met = "yes" if lo <= 1.0 else f"**no** ({100 * (q - 1):+.1f} %)"
                        basis = f"criterion {q:.3f}× (CI range {lo:.3f}–{hi:.3f})"
                    verdicts.append(f"overhead: {r.variant}: {basis}; criterion {q:.3f}× → within noise: {met}")
            cols = " | ".join(paired(iv, k) if iv else "—" for k in ["wall", "thread_cpu", "process_cpu"])
            print(f"| {group} | {GROUP_LABEL[group]} | {r.variant} | {r.median / 1e6:.3f} | {ratio} | {rng} "
                  f"| {cols} | {bcol} | {met} |")
    print()
    print("One op = one call of the workload (fill 2^20 u64s, sort, hash; 16 frames deep). Ratios are to "
          "`none` of the same group, measured in the same process. Criterion measures the variants one "
          "after the other, so load that changes during the run shows up in its ratios; \"interleaved\" = "
          "16 rounds in which the variants take turns (8 calls each), per-round paired ratios, median "
          "[interquartile range]. Thread CPU includes the signal handlers run on the workload's thread; "
          "process CPU adds the profiler's own threads. `timer_floor_999hz` = a bare per-thread CPU timer "
          "at 999 Hz signalling an empty handler: the floor of any signal-based sampler. Verdict: within "
          "noise when the paired wall ratio's IQR reaches 1.0.")
    idle = read_json(root / "cpu_overhead" / "idle.json")
    if idle:
        per = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in idle.get("threads_cpu_ns_per_s", {}).items())
        print()
        print(f"Idle program with lowprof at 99 Hz: {idle['process_cpu_ns_per_s'] / 1e6:.2f} ms of CPU per second "
              f"({idle['process_cpu_ns_per_s'] / 1e7:.2f} % of a core); per thread, ms/s: {per}.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion-dir", type=Path, default=default_criterion_dir())
    args = ap.parse_args()
    root = args.criterion_dir

    heap = load(root, GROUPS)
    cpu = load(root, CPU_GROUPS)
    export = load(root, [EXPORT_GROUP])
    verdicts: list[str] = []
    stamps: list[float] = []
    if heap:
        print("### Heap")
        print()
        inter = load_interleaved(root)
        heap_table(heap, inter, verdicts)
        print()
        print("### Heap: profilers side by side")
        print()
        peers_table(heap, inter, verdicts)
        print()
    if any(r.variant.endswith(CTX) for r in heap + cpu):
        print("### Trace context set vs not (issue 5)")
        print()
        context_table(heap, cpu, root, load_interleaved(root), verdicts)
        print()
    if any(r.group in HANDLER_GROUPS for r in cpu):
        print("### CPU: handler cost")
        print()
        handler_table(cpu, root, verdicts)
        print()
    if (root / "cpu_capture").is_dir():
        print("### CPU: captured CPU")
        print()
        stamps = capture_table(root, verdicts)
        print()
    if any(r.group in OVERHEAD_GROUPS for r in cpu):
        print("### CPU: overhead on a CPU-bound workload")
        print()
        overhead_table(cpu, root, verdicts)
        print()
    if export or (root / EXPORT_GROUP / "sizes.json").is_file():
        print("### Export: encoding 10 000 stacks")
        print()
        stamp = export_table(export, root)
        stamps += [stamp] if stamp else []
        print()
    if (root / "profiler_memory" / "results.json").is_file():
        print("### Memory held by the profiler")
        print()
        stamp = memory_table(root)
        stamps += [stamp] if stamp else []
        print()
    results = heap + cpu + export
    if not results and not stamps:
        print(f"no results for {', '.join(GROUPS + CPU_GROUPS)} or cpu_capture under {root}", file=sys.stderr)
        print("run: cargo bench -p lowprof-benches", file=sys.stderr)
        return 1

    times = [r.mtime for r in results] + stamps
    newest, oldest = max(times), min(times)
    when = dt.datetime.fromtimestamp(newest).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"- Date of results: {when}" + (
        f" (WARNING: results span {(newest - oldest) / 60:.0f} min: some may be from an older run)"
        if newest - oldest > 45 * 60 else ""))
    print(f"- Kernel (`uname -r`): {platform.release()}")
    print(f"- CPU: {cpu_model()} × {os.cpu_count()} logical")
    print(f"- rustc: {cmd(['rustc', '-V'])}")
    repo = Path(__file__).resolve().parent.parent
    head = cmd(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    watched = ["alloc-tracker/src", "core/src", "sampler/src", "exporter-std/src"]
    try:
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", *watched],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        status = []
    dirty = sorted(line[3:] for line in status if len(line) > 3)
    print(f"- Code under test: git {head}" + (
        f" plus uncommitted changes in {', '.join(dirty)}" if dirty
        else f" ({', '.join(watched)} unmodified)"))
    try:
        load_avg = Path("/proc/loadavg").read_text().split()[:3]
        print(f"- Load average now (1/5/15 min): {' '.join(load_avg)}")
    except OSError:
        pass
    if results:
        mads = [100 * r.mad / r.median for r in results]
        cis = [100 * (r.hi - r.lo) / r.median for r in results]
        worst = max(results, key=lambda r: (r.hi - r.lo) / r.median)
        print(
            f"- Noise (criterion benches): median absolute deviation / median = {statistics.median(mads):.1f} % "
            f"(median over benches; max {max(mads):.1f} %); 95 % CI width of the median / median = "
            f"{statistics.median(cis):.1f} % (max {max(cis):.1f} %, {worst.group}/{worst.variant})."
        )
    if verdicts:
        print()
        print("Budgets:")
        for v in verdicts:
            print(f"- {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
