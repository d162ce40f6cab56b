"""`vt-ops tune OP`: time every provider of an op per shape and keep the winners (docs/TRACE.md).

    vt-ops tune attention::sdpa --shapes 1x8x256x64 --dtype float32
    vt-ops tune attention::sdpa --shapes 1x8x256x64 --arg causal=True   # its own entry
    vt-ops tune core::matmul --shapes 64x64,64x64 --shapes 512x512,512x512
    vt-ops tune attention::sdpa --from-trace calls.json     # a vt.ops.trace's to_json file
    vt-ops tune --list                                     # the cache's entries
    vt-ops tune --clear [OP]
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


def _parse_case(text: str) -> list:
    """'2x3,3x4' -> [(2, 3), (3, 4)]; '2x3' -> (2, 3) (one shape for every tensor argument)."""
    shapes = []
    for part in text.split(","):
        part = part.strip()
        try:
            shapes.append(tuple(int(s) for s in part.lower().split("x")) if part else ())
        except ValueError:
            raise click.BadParameter(f"{text!r}: a shape is sizes joined by 'x' (e.g. 4x128x64), "
                                     f"shapes of one case are joined by ','") from None
    return shapes[0] if len(shapes) == 1 else shapes


@main.command("tune")
@click.argument("op", required=False)
@click.option("--shapes", "cases", multiple=True, metavar="AxB[,CxD...]",
              help="One case: a shape per tensor argument joined by ',' (or one shape for all). "
                   "Repeat for more cases.")
@click.option("--dtype", "dtypes", multiple=True, default=("float32",), show_default=True,
              help="dtype of the case's tensors; repeat to tune each.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--from-trace", "trace_file", type=click.Path(exists=True, dir_okay=False,
                                                             path_type=Path),
              help="Take the cases from a trace's JSON (vt.ops.trace().to_json).")
@click.option("--arg", "args", multiple=True, metavar="NAME=VALUE",
              help="A non-tensor argument of the op (Python literal), e.g. --arg causal=True.")
@click.option("--min-time", default=0.2, show_default=True, help="Seconds of timing per provider.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Cache file (default: VT_TUNE_CACHE, else the XDG cache dir).")
@click.option("--dry-run", is_flag=True, help="Measure and print, do not store.")
@click.option("--list", "list_", is_flag=True, help="List the cache's entries and exit.")
@click.option("--clear", is_flag=True, help="Remove the cache's entries (of OP, or all) and exit.")
def tune(op, cases, dtypes, device, trace_file, args, min_time, cache, dry_run, list_, clear):
    """Time every provider of OP on the given shapes and store the fastest per shape bucket
    (sizes rounded up to powers of two) and options (the other arguments: --arg, or each traced
    call's own); dispatch then uses it unless a provider is pinned."""
    import ast

    try:
        import vibetensor as vt  # noqa: F401  (loads the built-in packs)
        from vibetensor.registry import tune as _tune
    except Exception as e:  # a missing or broken runtime build: say so plainly
        raise click.ClickException(f"cannot import vibetensor: {e}")
    path = cache or _tune.cache_path()
    if list_:
        reason = _tune.ignored_reason(path)
        if reason:
            click.echo(f"note: {reason}")
        import warnings
        with warnings.catch_warnings():  # the note above says it once
            warnings.simplefilter("ignore", RuntimeWarning)
            listed = _tune.entries(path)
        for e in listed:
            if op and e["op"] != op:
                continue
            shapes = " ".join(f"{d}{s}" for d, s in e["bucket"])
            if e["options"]:
                shapes += f"  {_tune.describe_options(e['options'])}"
            times = ", ".join(f"{p} {t:.1f}us" for p, t in sorted(e.get("times_us", {}).items(),
                                                                 key=lambda kv: kv[1]))
            click.echo(f"{e['op']}  {e['device']} ({e['device_name']})  {shapes}  -> "
                       f"{e['provider']}  [{times}]")
        click.echo(f"cache: {path}")
        return
    if clear:
        n = _tune.clear(path, op)
        click.echo(f"removed {n} entries from {path}")
        return
    if not op:
        raise click.UsageError("give an OP to tune (or --list / --clear)")
    kwargs = {}
    for a in args:
        name, sep, value = a.partition("=")
        if not sep:
            raise click.BadParameter(f"{a!r}: expected NAME=VALUE", param_hint="--arg")
        try:
            kwargs[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise click.BadParameter(f"{a!r}: VALUE must be a Python literal",
                                     param_hint="--arg") from None
    trace = None
    if trace_file:
        try:
            trace = json.loads(trace_file.read_text())["records"]
        except (ValueError, KeyError, TypeError) as e:
            raise click.ClickException(f"{trace_file}: not a trace's JSON ({e})") from None
    if not cases and trace is None:
        raise click.UsageError("give --shapes (one or more cases) or --from-trace")
    try:
        results = _tune.tune(op, shapes=[_parse_case(c) for c in cases] or None,
                             dtypes=list(dtypes), device=device, trace=trace, kwargs=kwargs,
                             min_time=min_time, save=not dry_run, cache=cache)
    except (ValueError, TypeError, NotImplementedError, AttributeError) as e:
        raise click.ClickException(str(e)) from None
    for r in results:
        shapes = " ".join(f"{d}{list(s)}" for d, s in zip(r.dtypes, r.shapes))
        opts = f" {_tune.describe_options(r.options)}" if r.options else ""
        click.echo(f"{r.op} {shapes}{opts} on {r.device}")
        for p, t in sorted(r.times_us.items(), key=lambda kv: kv[1]):
            mark = "  <- tuned" if p == r.winner else ""
            prio = "  (priority choice)" if p == r.priority_choice else ""
            click.echo(f"  {p:<16} {t:10.1f} us{prio}{mark}")
        for p, why in r.declined.items():
            click.echo(f"  {p:<16} declined: {why}")
    click.echo("not stored (--dry-run)" if dry_run else f"stored in {path}")
