"""`vt-ops test PACK`: the op checker (registry/opcheck.py) from the command line.

Prints a table (op x provider@device x check), the failures with what went wrong, the skips with
why, the ops without a sample, and a summary line; `--json` prints the whole report as JSON.
Exit status 1 when a check failed, crashed or timed out, or an op has no sample and no
justification; 0 otherwise.
"""
from __future__ import annotations

import json

import click

from . import main


@main.command("test")
@click.argument("pack")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--samples", type=click.Path(exists=True, dir_okay=False),
              help="A samples file (samples(s) -> {op: calls}) used before the pack's own.")
@click.option("--device", "devices", multiple=True,
              help="Check only these devices (repeatable; default: cpu, and cuda when present).")
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds a single check may run before it is reported as hung.")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped provider, not three per reason.")
@click.option("--progress", is_flag=True, help="Print each check to stderr as it finishes.")
def test(pack, as_json, samples, devices, timeout, verbose, progress):
    """Check every op and provider of PACK (a pack name or a built pack folder): schema, meta step
    vs compute, gradcheck, providers and devices agree, CUDA-graph capture, autocast policy, bad
    inputs. Runs in a child process, so a crashing kernel is reported, not fatal."""
    from vibetensor.registry import opcheck

    try:
        rep = opcheck.run(pack, samples_file=samples, devices=list(devices) or None,
                          unit_timeout=timeout, progress=_show if progress else None)
    except opcheck.CheckerError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=1))
    else:
        click.echo(rep.text(verbose=verbose))
    raise SystemExit(1 if rep.failed else 0)


def _show(r, done, total):
    where = f" {r.provider or '(composite)'}@{r.device}" if r.device else ""
    click.echo(f"[{done}/{total or '?'}] {r.op}{where} {r.check}: {r.status} ({r.seconds:.2f} s)",
               err=True)
