"""`vt-ops bench OP`: every provider of an op, timed side by side in this process, and each
one's result compared with the reference provider's.

    vt-ops bench attention::sdpa --shapes 1x8x256x64,1x8x256x64,1x8x256x64 --dtypes float32,bfloat16
    vt-ops bench core::matmul --shapes 256x256,256x256 --shapes 512x64,64x512
    vt-ops bench core::add --shapes 1024x1024,1024x1024 --load mypack/build/packs/mypack
    vt-ops bench attention::sdpa --shapes 1x4x128x64,1x4x128x64,1x4x128x64 --arg causal=True

`--shapes` lists the shapes of the op's tensor arguments in schema order (an optional tensor
argument left out stays None), one shape set per option; `--arg NAME=VALUE` sets another argument
(a Python literal). Without `--shapes` the op's sample calls (registry/samples*.py) are used.
`--load PACK` loads a pack first (a folder or a name on the search path), so its providers
join the comparison.
Inputs are uniform in [-1, 1). Timing: `--warmup` untimed calls, then the median of `--repeat`
timed calls (perf_counter around each call on cpu; CUDA events around it on cuda). The reference
is the provider named "reference" or "composed", else the highest-priority one; errors are
max |a - b| and max |a - b| / |b| over all floating outputs (registry/compare.py).

`bench(...)` returns the rows; the command prints them as a table or `--json`.
"""
from __future__ import annotations

import ast
import json
import statistics
import time

import click

from . import main


def parse_shapes(text: str) -> list:
    """'2x3,4' -> [(2, 3), (4,)]; '()' or 'scalar' is a 0-d tensor."""
    shapes = []
    for part in text.split(","):
        part = part.strip()
        if part in ("()", "scalar"):
            shapes.append(())
            continue
        try:
            dims = tuple(int(d) for d in part.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"shape {part!r}: expected sizes joined by 'x', e.g. 2x128x64") from None
        if any(d < 0 for d in dims):
            raise click.BadParameter(f"shape {part!r}: sizes must be >= 0")
        shapes.append(dims)
    return shapes


def parse_args(items) -> dict:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise click.BadParameter(f"--arg {item!r}: expected NAME=VALUE")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value  # a bare word is a string ('tanh', 'mean')
    return out


def make_call(op, shapes, dtype, device, extra: dict, rng):
    """A call of `op` with random tensors of `shapes` (in schema order) and `extra` arguments."""
    import vibetensor as vt
    from vibetensor.registry.samples import Call
    from vibetensor.runtime import TENSOR

    shapes = list(shapes)
    args = {}
    for a in op.args:
        if a.name in extra:
            args[a.name] = extra[a.name]
        elif a.type == TENSOR and shapes:
            shape = shapes.pop(0)
            x = vt.tensor(rng.uniform(-1.0, 1.0, shape).astype("float32"))
            args[a.name] = x.to(dtype).to(device)
        elif a.has_default or a.optional:
            args[a.name] = a.default
        else:
            raise click.UsageError(f"{op.name}: argument '{a.name}' needs a value: --shapes covers "
                                   f"the tensor arguments in order, --arg {a.name}=VALUE the others "
                                   f"({op.schema})")
    if shapes:
        raise click.UsageError(f"{op.name}: {len(shapes)} more shapes than tensor arguments ({op.schema})")
    unknown = set(extra) - {a.name for a in op.args}
    if unknown:
        raise click.UsageError(f"{op.name} has no argument {', '.join(sorted(unknown))} ({op.schema})")
    return Call(*[args[a.name] for a in op.args])


def _dtype(name: str):
    import vibetensor as vt

    d = getattr(vt, "bool_" if name == "bool" else name, None)
    if not isinstance(d, type(vt.float32)):
        raise click.BadParameter(f"unknown dtype {name!r} (float32, float64, bfloat16, float16, ...)")
    return d


def _timer(device):
    """A function timing fn() once, in seconds (CUDA events on cuda)."""
    import vibetensor as vt

    if device.startswith("cuda"):
        start, end = vt.cuda.Event(enable_timing=True), vt.cuda.Event(enable_timing=True)

        def cuda_time(fn):
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time

    def cpu_time(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return cpu_time


def _reference(provs) -> str:
    for p in provs:
        if p.name in ("reference", "composed"):
            return p.name
    return provs[0].name


def bench(op_name: str, shape_sets=None, dtypes=None, device: str = "cpu", warmup: int = 3,
          repeat: int = 20, extra: dict | None = None, seed: int = 0) -> list:
    """One row per (call, provider): provider, priority, reference, median/min seconds, ratio to the
    fastest provider of that call, max abs/rel error against the reference, ok."""
    import numpy as np
    import vibetensor as vt
    from vibetensor.registry import compare, ops as _ops, samples

    op = _ops.Op(op_name)
    provs = _ops.providers(op, device)
    if not provs:
        raise click.UsageError(f"{op_name} has no kernel provider on {device} (its meta step serves "
                               f"it alone, as views do): nothing to compare")
    ref = _reference(provs)
    rng = np.random.default_rng(seed)
    calls = []  # (label, Call)
    if shape_sets:
        for shapes in shape_sets:
            for dt in dtypes or ["float32"]:
                label = ", ".join("x".join(map(str, s)) or "()" for s in shapes)
                calls.append((f"{label} {dt}", make_call(op, shapes, _dtype(dt), device, extra or {}, rng)))
    else:
        maker = samples.Maker(seed)
        made = samples.source("", None, maker).calls(op_name, maker)
        if not made:
            raise click.UsageError(f"{op_name} has no sample calls: give --shapes")
        for c in made:
            if dtypes:
                for dt in dtypes:
                    to = _dtype(dt)
                    cc = c.map(lambda v: v.to(to) if compare.is_tensor(v) and v.dtype.is_floating_point else v)
                    calls.append((f"sample {samples.show(cc.args)} {dt}", cc.on(device)))
            else:
                calls.append((f"sample {c}", c.on(device)))
    timer = _timer(device)
    rows = []
    for label, call in calls:
        results, times = {}, {}
        for p in provs:
            with _ops.use(op_name, p.name, device):
                vt.manual_seed(seed)
                try:
                    results[p.name] = op(*call.args, **call.kwargs)
                except Exception as e:  # a provider that declines these inputs: say so, go on
                    results[p.name] = e
                    continue
                fn = lambda: op(*call.args, **call.kwargs)  # noqa: E731
                for _ in range(warmup):
                    fn()
                times[p.name] = [timer(fn) for _ in range(repeat)]
        fastest = min((statistics.median(t) for t in times.values()), default=None)
        for p in provs:
            r = results[p.name]
            row = {"call": label, "provider": p.name, "priority": p.priority, "reference": p.name == ref,
                   "device": device}
            if isinstance(r, Exception):
                row.update(error=f"{type(r).__name__}: {r}")
                rows.append(row)
                continue
            med = statistics.median(times[p.name])
            row.update(median_s=med, min_s=min(times[p.name]), ratio=med / fastest if fastest else None)
            want = results.get(ref)
            if want is not None and not isinstance(want, Exception):
                d = compare.diff(r, want)
                row.update(max_abs=d.max_abs, max_rel=d.max_rel, ok=d.ok, why=d.why)
            rows.append(row)
    return rows


def _fmt_time(s) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


def format_rows(op_name, rows) -> str:
    lines = []
    by_call: dict = {}
    for r in rows:
        by_call.setdefault(r["call"], []).append(r)
    for call, rs in by_call.items():
        lines.append(f"{op_name} on {rs[0]['device']}: {call}")
        w = max(len(r["provider"]) + (6 if r["reference"] else 0) for r in rs) + 2
        lines.append(f"  {'provider'.ljust(w)}{'median':>12}{'vs fastest':>12}{'max abs err':>13}"
                     f"{'max rel err':>13}  agrees")
        for r in rs:
            name = r["provider"] + (" (ref)" if r["reference"] else "")
            if "error" in r:
                lines.append(f"  {name.ljust(w)}  declined: {r['error']}")
                continue
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
            agrees = "-" if "ok" not in r else ("yes" if r["ok"] else f"NO ({r['why']})")
            abs_e = f"{r['max_abs']:.3g}" if "max_abs" in r else "-"
            rel_e = f"{r['max_rel']:.3g}" if "max_rel" in r else "-"
            lines.append(f"  {name.ljust(w)}{_fmt_time(r['median_s']):>12}{ratio:>12}{abs_e:>13}"
                         f"{rel_e:>13}  {agrees}")
    return "\n".join(lines)


@main.command("bench")
@click.argument("op")
@click.option("--shapes", "shapes", multiple=True,
              help="Shapes of the tensor arguments, in order: 2x128x64,2x128x64 (repeatable).")
@click.option("--dtypes", default=None, help="Comma-separated dtypes (default float32, or the samples').")
@click.option("--device", default="cpu", show_default=True)
@click.option("--arg", "args", multiple=True, help="Another argument: NAME=VALUE (repeatable).")
@click.option("--warmup", default=3, show_default=True)
@click.option("--repeat", default=20, show_default=True)
@click.option("--load", "load", multiple=True,
              help="Load this pack first (a folder or a pack name; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The rows as JSON.")
def bench_cmd(op, shapes, dtypes, device, args, warmup, repeat, load, as_json):
    """Time every provider of OP on the same inputs and compare each result with the reference
    provider's (A/B in one process)."""
    try:
        import vibetensor as vt
    except Exception as e:
        raise click.ClickException(f"cannot import vibetensor: {e}")
    for spec in load:
        try:
            vt.ops.load(spec)
        except (ImportError, ValueError, OSError) as e:  # PackError is an ImportError
            raise click.ClickException(f"--load {spec}: {e}") from None
    shape_sets = [parse_shapes(s) for s in shapes]
    dts = [d.strip() for d in dtypes.split(",")] if dtypes else None
    try:
        rows = bench(op, shape_sets, dts, device, warmup, repeat, parse_args(args))
    except (AttributeError, ValueError, TypeError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        click.echo(format_rows(op, rows))
    if any(r.get("ok") is False for r in rows):
        raise SystemExit(1)
