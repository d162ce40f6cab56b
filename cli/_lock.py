"""`vt-ops lock PACK... -o FILE`: the lockfile that `vt.ops.load(..., lock=FILE)` enforces."""
from __future__ import annotations

from pathlib import Path

import click

from . import main


@main.command("lock")
@click.argument("packs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("vt-ops.lock"), show_default=True, help="Where to write the lockfile.")
def lock(packs, output):
    """Write a lockfile naming PACKS (folders or pack names): version, library sha256 and the
    kernels each registers; vt.ops.load(..., lock=FILE) then loads nothing else."""
    from vibetensor.registry import lock as _lock
    from vibetensor.registry import loader
    from vibetensor.registry.manifest import PackError

    try:
        data = _lock.write([loader._resolve(p) for p in packs], output)
    except PackError as e:
        raise click.ClickException(str(e)) from None
    for name, e in data["packs"].items():
        click.echo(f"{name} {e['version']}  sha256 {e['sha256'][:16]}…  {len(e['kernels'])} kernels")
    click.echo(f"wrote {output}")
