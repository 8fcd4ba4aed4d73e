#!/usr/bin/env python3
"""Where the wall-clock overhead of SampledAlloc comes from: CPU time
(`perf stat` task-clock, immune to time spent descheduled on a shared VM) of
the `pairs_callgrind` example for each rung of a ladder, interleaved over
ROUNDS rounds, medians reported:

  inner     the allocator alone
  floor     CountdownOnly<inner>: the countdown only
  stopped   SampledAlloc<inner> with sampling stopped: its fast paths only
  sampled   SampledAlloc<inner> sampling at 512 KiB

each with the normal size mix and with sizes capped at 32000 bytes (no
sampled block then lands in a 64 KiB region slot, which lowprof releases
with madvise on free).

  python3 benches/ladder.py [ROUNDS] [notrim]

`notrim` runs with GLIBC_TUNABLES=glibc.malloc.trim_threshold=256 MiB, so
glibc never shrinks its heap. Build the example first:
  cargo build -j 2 --profile bench -p lowprof-benches --example pairs_callgrind
Python 3.11, standard library only; needs `perf` (software events only).
"""
import subprocess, statistics, os, collections, sys
B=str(__import__('pathlib').Path(__file__).resolve().parent.parent / 'target/release/examples/pairs_callgrind')
N=20000000
base_env={"GLIBC_TUNABLES":"glibc.malloc.trim_threshold=268435456"} if "notrim" in sys.argv else {}
cases=[]
for inner in ["system","jemalloc"]:
    for mx in [None,"32000"]:
        e={"MAX_SIZE":mx} if mx else {}
        tag=f"{inner}{' max32000' if mx else ''}"
        cases += [(f"{tag}: inner",e,inner),(f"{tag}: floor",e,f"floor-{inner}"),
                  (f"{tag}: stopped",{**e,"STOP_SAMPLING":"1"},f"sampled-{inner}"),(f"{tag}: sampled",e,f"sampled-{inner}")]
res=collections.defaultdict(list)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
for r in range(rounds):
    for name,env,v in cases:
        e=dict(os.environ); e.update(base_env); e.update(env)
        out=subprocess.run(["perf","stat","-x,","-e","task-clock,page-faults",B,v,str(N)],env=e,capture_output=True,text=True).stderr
        vals={}
        for l in out.splitlines():
            p=l.split(",")
            if len(p)>2: vals[p[2].split(":")[0]]=float(p[0])
        res[name].append((vals.get("task-clock"),vals.get("page-faults")))
print("| variant | CPU time per pair | vs inner | page faults |")
print("|---|---:|---:|---:|")
base=None
for name,_,_ in cases:
    v=res[name]; tc=statistics.median(x[0] for x in v)
    if name.endswith("inner"): base=tc
    print(f"| {name} | {tc / (N / 1e6):.2f} ns | {tc / base:.3f}× | {statistics.median(x[1] for x in v):.0f} |")
