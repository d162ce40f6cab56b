"""vt-ops: the command line for op packs.

    vt-ops new NAME          scaffold a pack (one op, CMake file, test); --cuda adds a CUDA kernel
    vt-ops build PATH        configure + compile a pack with the installed SDK (incremental)
    vt-ops list              packs loaded and available, their ops and providers
    vt-ops info PACK         a pack's manifest, ops and providers
    vt-ops lock PACK...      a lockfile of packs (hashes, kernels) for vt.ops.load(..., lock=)
    vt-ops keygen, sign PACK an Ed25519 key; a signed manifest for vt.ops.load(..., trusted_keys=)
    vt-ops test PACK         check every op and provider of a pack (docs/OPCHECK.md)
    vt-ops bench OP          time every provider of an op, compare results with the reference
    vt-ops tune OP           time an op's providers per shape, keep the winners (docs/TRACE.md)

`new` and `build` need only CMake and a compiler, never the runtime; `list` and `info` import
vibetensor lazily. The console script `vt-ops` points at `main`.
"""
from __future__ import annotations

import click

from ._sdk import sdk_dir

__all__ = ["main", "sdk_dir"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Build, inspect and manage vibetensor op packs."""


from . import _bench, _build, _lock, _new, _opcheck, _query, _sign, _tune  # noqa: E402,F401  (registers the commands on `main`)
