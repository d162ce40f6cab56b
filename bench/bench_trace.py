"""Issue 12 benchmarks: what provenance tracing costs a call, and what a tuned choice buys.

    python bench/bench_trace.py [--baseline-rev REV] [--quick]

1. Dispatch overhead of a tiny op (core::add of two 1-element float32 cpu tensors):
   a. native: a C harness calling vtrt_call_tt in a loop, linked in turn against two copies of
      libvtrt compiled here with the same flags (g++ -O3, CPU only): one from the working tree,
      one from REV (the runtime before the trace hook; default: the parent of the commit that
      added runtime/src/trace.cpp). Tracing off vs before = the hook's cost when off; tracing on
      = the cost of a record.
   b. from Python (`a + b`, the installed build): tracing off vs on.
2. Tuned vs priority on attention::sdpa (cpu, float32): the flash provider (priority 10) and the
   composed one timed per shape (B=1, H=4, sequence length x head dim); the tuned choice is the
   faster, the speedup is priority time / tuned time.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vibetensor as vt
from vibetensor.registry import tune as _tune

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SOURCES = ["allocator", "autograd", "dispatcher", "error", "host", "pack_loader", "promote",
                   "rng", "schema", "tensor", "thread_pool", "cuda_stubs"]

HARNESS = r"""
// One tiny op in a loop through the C API: the dispatcher's own cost plus a 1-element kernel.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "vt/runtime.h"

typedef void (*set_fn)(int32_t, int64_t);
typedef int64_t (*take_fn)(void*, int64_t);
typedef vt_status (*tune_fn)(vt_op*, int32_t, const vt_dtype*, const int32_t*, const int64_t*,
                             int32_t, const vt_value*, int32_t, const char*);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  if (!vtrt_pack_load(argv[1], "core")) { fprintf(stderr, "%s\n", vtrt_last_error()); return 1; }
  int mode = atoi(argv[2]);  /* 0 off, 1 tracing on, 2 off with a tuned entry for this bucket */
  int trace = mode == 1;
  long n = atol(argv[3]);
  int reps = atoi(argv[4]);
  set_fn set = (set_fn)dlsym(RTLD_DEFAULT, "vtrt_trace_set_enabled");
  take_fn take = (take_fn)dlsym(RTLD_DEFAULT, "vtrt_trace_take");
  if (trace && !set) { printf("nan\n"); return 0; }  /* a runtime without tracing */
  static char recs[4096 * 2048];  /* vtrt_trace_record is about 1.1 KB */
  vt_op* add = vtrt_find_op("core::add");
  int64_t one = 1;
  vt_dtype f32 = {2, 32, 1};
  vt_device cpu = {1, 0};
  vt_tensor* a = vtrt_empty(&one, 1, f32, cpu);
  vt_tensor* b = vtrt_empty(&one, 1, f32, cpu);
  *(float*)a->data = 1.f;
  *(float*)b->data = 2.f;
  if (mode == 2) {
    tune_fn tune = (tune_fn)dlsym(RTLD_DEFAULT, "vtrt_op_tune_set");
    if (!tune) { printf("nan\n"); return 0; }
    vt_dtype dts[2] = {f32, f32};
    int32_t nd[2] = {1, 1};
    int64_t sz[2] = {1, 1};
    vt_value args[3];  /* core::add(self, other, alpha=1.0): the tensors, then alpha's value */
    args[0].tag = VT_TENSOR;
    args[1].tag = VT_TENSOR;
    args[2].tag = VT_FLOAT;
    args[2].v.f = 1.0;
    if (tune(add, 1, dts, nd, sz, 2, args, 3, "core") != 0) { fprintf(stderr, "%s\n", vtrt_last_error()); return 1; }
  }
  for (long i = 0; i < 1000; ++i) vtrt_release(vtrt_call_tt(add, a, b));
  for (int r = 0; r < reps; ++r) {
    if (set) set(trace, n + 16);
    double t0 = now();
    for (long i = 0; i < n; ++i) vtrt_release(vtrt_call_tt(add, a, b));
    double t1 = now();
    if (set) set(0, 0);
    if (take) while (take(recs, 4096) > 0) {}  /* drop the records between repeats */
    printf("%.2f\n", (t1 - t0) / n * 1e9);
  }
  return 0;
}
"""


def _sh(cmd, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}")
    return proc.stdout


def _default_baseline() -> str:
    rev = _sh(["git", "-C", str(ROOT), "log", "--format=%H", "--diff-filter=A", "--",
               "runtime/src/trace.cpp"]).split()
    return f"{rev[-1]}^" if rev else "HEAD"


def _runtime_tree(dest: Path, rev: str | None) -> Path:
    """runtime/ and opsdk/include of the working tree (rev None) or of a revision, at dest."""
    if rev is None:
        return ROOT
    for sub in ("runtime", "opsdk/include"):
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, sub],
                                 stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _build_lib(src_root: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    sources = [src_root / "runtime" / "src" / f"{n}.cpp" for n in RUNTIME_SOURCES]
    if (src_root / "runtime" / "src" / "trace.cpp").exists():
        sources.append(src_root / "runtime" / "src" / "trace.cpp")
    so = out / "libvtrt.so"
    _sh(["g++", "-O3", "-DNDEBUG", "-std=c++17", "-fPIC", "-shared", "-pthread",
         f"-I{src_root / 'runtime' / 'include'}", f"-I{src_root / 'opsdk' / 'include'}",
         *map(str, sources), "-o", str(so), "-ldl", "-Wl,-soname,libvtrt.so"])
    return so


def _harness(workdir: Path, lib_dir: Path) -> Path:
    src = workdir / "harness.c"
    src.write_text(HARNESS)
    exe = workdir / "harness"
    _sh(["gcc", "-O2", "-std=c11", "-D_GNU_SOURCE", f"-I{ROOT / 'runtime' / 'include'}",
         f"-I{ROOT / 'opsdk' / 'include'}", str(src), "-o", str(exe), f"-L{lib_dir}", "-lvtrt",
         "-ldl"])
    return exe


def _run_harness(exe: Path, lib_dir: Path, trace: int, n: int, reps: int) -> list[float]:
    core = Path(vt.ops.get("core").library)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir))
    out = _sh([str(exe), str(core), str(trace), str(n), str(reps)], env=env)
    return [float(x) for x in out.split()]


def _instructions(exe: Path, variants: dict) -> None:
    """Instructions per call from valgrind's instruction count (load-independent, unlike time):
    the difference of a 30k-call and a 10k-call run over 20k calls, one thread (no pool spinning)."""
    if not shutil.which("valgrind"):
        print("   (valgrind not installed: no instruction counts)")
        return
    core = Path(vt.ops.get("core").library)
    per = {}
    for name, (lib_dir, mode) in variants.items():
        counts = []
        for n in (10_000, 30_000):
            proc = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                                   "--cachegrind-out-file=/dev/null", str(exe), str(core),
                                   str(mode), str(n), "1"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, LD_LIBRARY_PATH=str(lib_dir),
                                           VT_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
            m = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
            if proc.returncode != 0 or not m:
                print(f"   (valgrind failed on {name}: {proc.stderr[-300:]})")
                return
            counts.append(int(m.group(1).replace(",", "")))
        per[name] = (counts[1] - counts[0]) / 20_000
    base = per["before (baseline)"]
    print("   instructions per call (valgrind):  " + ",  ".join(
        f"{k} {v:.1f} ({v - base:+.1f})" for k, v in per.items()))


def bench_native(baseline_rev: str, n: int, reps: int) -> None:
    print(f"== 1a. native dispatch, core::add on 1-element float32 cpu tensors ({n} calls x {reps}) ==")
    with tempfile.TemporaryDirectory(prefix="vt_bench_trace_") as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        new_dir = tmp / "new"
        _build_lib(ROOT, new_dir)
        base_src = tmp / "base_src"
        base_src.mkdir()
        base_dir = tmp / "base"
        _build_lib(_runtime_tree(base_src, baseline_rev), base_dir)
        print(f"   built both runtimes in {time.time() - t0:.0f} s (baseline: {baseline_rev})")
        exe = _harness(tmp, new_dir)
        # interleave the variants so drift of the shared VM hits them alike
        rows = {"before (baseline)": [], "tracing off": [], "tracing on": [],
                "off, tuned (hit)": []}
        for _ in range(3):
            rows["before (baseline)"] += _run_harness(exe, base_dir, 0, n, reps)
            rows["tracing off"] += _run_harness(exe, new_dir, 0, n, reps)
            rows["tracing on"] += _run_harness(exe, new_dir, 1, n, reps)
            rows["off, tuned (hit)"] += _run_harness(exe, new_dir, 2, n, reps)
        _instructions(exe, {"before (baseline)": (base_dir, 0), "tracing off": (new_dir, 0),
                            "tracing on": (new_dir, 1), "off, tuned (hit)": (new_dir, 2)})
        med = {k: statistics.median(v) for k, v in rows.items()}
        best = {k: min(v) for k, v in rows.items()}
        for k in rows:
            print(f"   {k:<18} median {med[k]:7.1f} ns/call   best {best[k]:7.1f}   "
                  f"(spread {min(rows[k]):.1f}-{max(rows[k]):.1f})")
        print(f"   off - before: median {med['tracing off'] - med['before (baseline)']:+.1f} ns, "
              f"best {best['tracing off'] - best['before (baseline)']:+.1f} ns")
        print(f"   on - off:     median {med['tracing on'] - med['tracing off']:+.1f} ns, "
              f"best {best['tracing on'] - best['tracing off']:+.1f} ns per call")
        print(f"   tuned - off:  median {med['off, tuned (hit)'] - med['tracing off']:+.1f} ns, "
              f"best {best['off, tuned (hit)'] - best['tracing off']:+.1f} ns per call (bucket key "
              f"+ table lookup)")


def _per_call(fn, number, repeat) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples) * 1e9


def bench_python(number: int, repeat: int) -> None:
    print(f"== 1b. from Python: `a + b`, 1-element float32 cpu (installed build), {number} calls "
          f"x {repeat} ==")
    a, b = vt.ones(1), vt.ones(1)

    def loop() -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            a + b
        return (time.perf_counter() - t0) / number * 1e9

    loop()
    off, on = [], []
    for _ in range(repeat):  # interleaved; one trace per batch (groups only, as VT_TRACE=1)
        off.append(loop())
        with vt.ops.trace(keep_records=False) as t:
            on.append(loop())
        assert t.calls == number
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"   tracing off {m_off:7.0f} ns/call   (best {min(off):.0f})")
    print(f"   tracing on  {m_on:7.0f} ns/call   (best {min(on):.0f}; +{m_on - m_off:.0f} ns median, "
          f"+{min(on) - min(off):.0f} best)")
    t = vt.ops.trace().__enter__()
    loop()
    t0 = time.perf_counter()
    t.close()  # drains: every record converted to Python here, not during the calls
    t.summary()
    print(f"   {len(t.records)} records drained, converted and summarised in "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms (off the hot path)")


def bench_tuned(quick: bool) -> None:
    print("== 2. attention::sdpa on cpu, float32, B=1 H=4: priority (flash) vs tuned ==")
    seqs = (16, 64, 256) if quick else (16, 32, 64, 128, 256, 512)
    dims = (16, 64) if quick else (8, 16, 32, 64, 128)
    cases = [[1, 4, s, d] for s in seqs for d in dims]
    res = _tune.tune("attention::sdpa", shapes=cases, dtypes="float32", save=False,
                     min_time=0.1 if quick else 0.3)
    print(f"   {'S':>5} {'D':>4}  {'flash us':>10} {'composed us':>12}  tuned      speedup")
    for r in res:
        _, _, s, d = r.shapes[0]
        t = r.times_us
        print(f"   {s:>5} {d:>4}  {t.get('flash', float('nan')):10.1f} "
              f"{t.get('composed', float('nan')):12.1f}  {r.winner:<9} {r.speedup():6.2f}x")
    wins = [r for r in res if r.winner != r.priority_choice]
    if wins:
        print(f"   tuned beats priority on {len(wins)}/{len(res)} shapes, "
              f"up to {max(r.speedup() for r in wins):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", help="revision whose runtime is 'before' (default: the "
                    "parent of the commit that added runtime/src/trace.cpp)")
    ap.add_argument("--quick", action="store_true", help="fewer calls and shapes")
    ap.add_argument("--skip-native", action="store_true", help="skip the two runtime builds")
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, {_tune.device_name('cpu')}, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if not args.skip_native:
        bench_native(args.baseline_rev or _default_baseline(), 200_000 if args.quick else 1_000_000,
                     3 if args.quick else 5)
    bench_python(20_000, 5 if args.quick else 15)
    bench_tuned(args.quick)


if __name__ == "__main__":
    sys.exit(main())
