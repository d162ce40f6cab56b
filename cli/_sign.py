"""`vt-ops keygen` and `vt-ops sign PACK --key KEY`: Ed25519-signed pack manifests, which
`vt.ops.load(..., trusted_keys=[...])` (or VT_TRUSTED_KEYS) requires (registry/sign.py)."""
from __future__ import annotations

from pathlib import Path

import click

from . import main


@main.command("keygen")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the private key (its public key goes to OUTPUT.pub).")
@click.option("-C", "--comment", default="", help="A comment on the public key line (who it is).")
def keygen(output, comment):
    """Make an Ed25519 key pair for signing packs (the private key is readable by you only)."""
    from vibetensor.registry import sign as _sign
    from vibetensor.registry.manifest import PackError

    try:
        key, pub = _sign.keygen(output, comment)
    except PackError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {key} (private: keep it secret) and {pub} (public: give it to those who "
               f"load your packs)")


@main.command("sign")
@click.argument("pack")
@click.option("--key", "key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The private key (from `vt-ops keygen`).")
def sign(pack, key):
    """Sign PACK's manifest (a pack folder or name) with KEY; writes manifest.sig beside it."""
    from vibetensor.registry import loader
    from vibetensor.registry import sign as _sign
    from vibetensor.registry.manifest import PackError

    try:
        out = _sign.sign(loader._resolve(pack), key)
    except PackError as e:
        raise click.ClickException(str(e)) from None
    import json

    click.echo(f"signed with key {json.loads(out.read_text())['key_id']}: wrote {out}")
