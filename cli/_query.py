"""`vt-ops list` and `vt-ops info PACK`: thin views over the registry's Python API.

Uses vibetensor.ops.packs() (loaded packs: .name .version .path .manifest),
vibetensor.ops.available() (pack folders on the search path), vibetensor.ops.providers(op, device)
(.name .priority .pack .active) and vibetensor.ops.load(path). Imported lazily: `new` and `build`
must work where the runtime is not built.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


def _ops_api():
    try:
        import vibetensor as vt
    except Exception as e:  # a missing or broken runtime build: say so plainly
        raise click.ClickException(f"cannot import vibetensor: {e}")
    return vt.ops


def _read_manifest(folder) -> dict:
    try:
        man = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        return {"name": Path(folder).name, "error": str(e)}
    # someone else's pack on the search path must not break `list`: check the parts we read
    problem = None
    if not isinstance(man, dict):
        problem = "not a JSON object"
    elif not (isinstance(man.get("ops", []), list) and all(isinstance(o, str) for o in man.get("ops", []))):
        problem = "'ops' is not a list of op names"
    elif not (isinstance(man.get("kernels", []), list) and all(
            isinstance(k, dict) and {"op", "device", "provider", "priority"} <= k.keys()
            for k in man.get("kernels", []))):
        problem = "'kernels' entries need op, device, provider and priority"
    if problem:
        return {"name": man.get("name") if isinstance(man, dict) else Path(folder).name,
                "error": f"malformed manifest: {problem}"}
    return man


def _manifest_ops(man: dict) -> list[str]:
    """Ops a pack defines, then ops it only provides kernels for."""
    ops = list(man.get("ops", []))
    for k in man.get("kernels", []):
        if k.get("op") not in ops:
            ops.append(k["op"])
    return ops


def _op_devices(man: dict, op: str) -> list[str]:
    """Devices this pack has kernels for `op` on (cpu first)."""
    devs = {k["device"] for k in man.get("kernels", []) if k.get("op") == op}
    return sorted(devs, key=lambda d: (d != "cpu", d)) or list(man.get("devices") or ["cpu"])


def _provider_rows(api, op: str, devices) -> list[dict]:
    rows = []
    for dev in devices:
        try:
            provs = api.providers(op, device=dev)
        except Exception as e:  # op unknown on this device, or the registry refused
            rows.append({"device": dev, "error": str(e)})
            continue
        for p in provs:
            pk = getattr(p, "pack", None)  # a name or a pack object
            pk = pk if pk is None or isinstance(pk, str) else getattr(pk, "name", str(pk))
            rows.append({"device": dev, "provider": p.name, "priority": p.priority, "pack": pk,
                         "active": bool(p.active)})
    return rows


def _format_providers(rows) -> str:
    by_dev: dict[str, list[str]] = {}
    for r in rows:
        if "error" in r:
            by_dev.setdefault(r["device"], []).append(f"({r['error']})")
        else:
            mark = "*" if r["active"] else ""
            by_dev.setdefault(r["device"], []).append(f"{mark}{r['provider']}[{r['priority']}]")
    return "  ".join(f"{d}: {' '.join(v)}" for d, v in by_dev.items())


def _pack_record(api, pack=None, folder=None) -> dict:
    if pack is not None:
        man = dict(pack.manifest)
        rec = {"name": pack.name, "version": pack.version, "path": str(pack.path), "loaded": True,
               "manifest": man, "skipped": [list(x) for x in getattr(pack, "skipped", [])]}
        rec["ops"] = {op: _provider_rows(api, op, _op_devices(man, op)) for op in _manifest_ops(man)}
    else:
        man = _read_manifest(folder)
        rec = {"name": man.get("name"), "version": man.get("version"), "path": str(folder),
               "loaded": False, "manifest": man}
        rec["ops"] = {op: [{"device": k["device"], "provider": k["provider"], "priority": k["priority"],
                            "pack": man.get("name"), "active": False}
                           for k in man.get("kernels", []) if k.get("op") == op]
                      for op in _manifest_ops(man)}
    return rec


def _signer(folder) -> str | None:
    """Who signed the pack's manifest, as its manifest.sig says (checked only by a load that asks
    for trusted keys: docs/PACKS_SECURITY.md)."""
    try:
        sig = json.loads((Path(folder) / "manifest.sig").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(sig, dict):
        return "manifest.sig is unreadable"
    return f"manifest.sig by key {sig.get('key_id', '?')} (not checked here)"


def _capability_lines(caps, skipped) -> list[str]:
    """The declared capabilities (registry/capabilities.py), one provider per line."""
    if not isinstance(caps, dict):
        return []
    lines = []
    if "abi_minor" in caps:
        lines.append(f"  needs ABI minor: {caps['abi_minor']}")
    if caps.get("requires"):
        lines.append("  needs packs: " + ", ".join(f"{n} {v}" for n, v in caps["requires"].items()))
    for e in caps.get("providers", []):
        if not isinstance(e, dict):
            continue
        parts = []
        cc = e.get("compute_capability") or {}
        if cc:
            parts.append("compute capability " + (f"{cc.get('min', '')}..{cc.get('max', '')}"
                                                  if "max" in cc else f"{cc['min']}+"))
        if e.get("dtypes"):
            parts.append("/".join(e["dtypes"]))
        for key, yes, no in (("cuda_graphs", "CUDA graphs", "no CUDA graphs"),
                             ("deterministic", "deterministic", "not deterministic")):
            if key in e:
                parts.append(yes if e[key] else no)
        if e.get("abi_minor") is not None:
            parts.append(f"ABI minor {e['abi_minor']}")
        for r in e.get("limits", []):
            rule = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("arg", "dim"))
            parts.append(f"{r.get('arg')}.shape[{r.get('dim')}] {rule}")
        ops = f" [{', '.join(e['ops'])}]" if e.get("ops") else ""
        lines.append(f"  {e.get('provider')} on {e.get('device')}{ops}: {'; '.join(parts) or '-'}")
        if e.get("shapes"):
            lines.append(f"      shapes: {e['shapes']}")
    for dev, prov, why in skipped:
        lines.append(f"  not registered here: {prov} on {dev} ({why})")
    return lines


def _records(api) -> list[dict]:
    loaded = list(api.packs())
    recs = [_pack_record(api, pack=p) for p in loaded]
    seen = {str(Path(p.path).resolve()) for p in loaded}
    for folder in api.available():
        if str(Path(folder).resolve()) not in seen:
            recs.append(_pack_record(api, folder=Path(folder)))
    return recs


def _echo_record(rec: dict, full: bool) -> None:
    state = "loaded" if rec["loaded"] else "available"
    click.echo(f"{rec['name']} {rec['version']}  [{state}]  {rec['path']}")
    man = rec["manifest"]
    if "error" in man:
        click.echo(f"  manifest unreadable: {man['error']}")
        return
    if full:
        for key in ("library", "sha256", "abi", "devices", "cuda_architectures", "requires"):
            if man.get(key):
                val = man[key]
                val = ".".join(map(str, val)) if key == "abi" else (", ".join(val) if isinstance(val, list) else val)
                click.echo(f"  {key}: {val}")
    if full:
        signer = _signer(rec["path"])
        if signer:
            click.echo(f"  signature: {signer}")
        for line in _capability_lines(man.get("capabilities"), rec.get("skipped", [])):
            click.echo(line)
    width = max((len(op) for op in rec["ops"]), default=0)
    for op, rows in rec["ops"].items():
        mine = "" if op in man.get("ops", []) else " (provides)"
        click.echo(f"  {op.ljust(width)}  {_format_providers(rows)}{mine}")
        if full and op in man.get("schemas", {}):
            click.echo(f"  {''.ljust(width)}  {man['schemas'][op]}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(as_json):
    """Packs loaded and available, their ops and providers (* = active, [priority])."""
    api = _ops_api()
    recs = _records(api)
    if as_json:
        click.echo(json.dumps(recs, indent=1))
        return
    if not recs:
        click.echo("no packs loaded or found (VT_OPS_PATH, the user pack folder, entry points)")
    for rec in recs:
        _echo_record(rec, full=False)


@main.command("info")
@click.argument("pack")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(pack, as_json):
    """Manifest, ops and providers of PACK (a pack name or a pack folder)."""
    path = Path(pack)
    api = _ops_api()
    rec = None
    if (path / "manifest.json").is_file():
        for p in api.packs():
            if Path(p.path).resolve() == path.resolve():
                rec = _pack_record(api, pack=p)
        rec = rec or _pack_record(api, folder=path)
    else:
        for p in api.packs():
            if p.name == pack:
                rec = _pack_record(api, pack=p)
        if rec is None:
            for folder in api.available():
                if _read_manifest(folder).get("name") == pack:
                    rec = _pack_record(api, folder=Path(folder))
                    break
    if rec is None:
        raise click.ClickException(f"no pack named {pack!r} is loaded or on the search path")
    if as_json:
        click.echo(json.dumps(rec, indent=1))
    else:
        _echo_record(rec, full=True)
