"""Capability manifests: what a pack's providers need and promise, checked when the pack loads.

A pack declares them next to its registrations (VT_OPPACK_CAPABILITIES, vt/capabilities.h);
vt_describe copies the declaration into manifest.json ("capabilities", format in docs/LAYOUT.md):

    {"abi_minor": 1,                                  # the host ABI minor the pack needs
     "requires": {"core": ">=0.1,<1"},                # other packs, by name and version range
     "providers": [{"provider": "flash", "device": "cuda",
                    "ops": ["attention::sdpa"],       # optional: default every op it serves there
                    "compute_capability": {"min": "8.0", "max": "9.0"},
                    "dtypes": ["bfloat16", "float16"], "cuda_graphs": true, "deterministic": true,
                    "shapes": "free text", "abi_minor": 1,
                    "limits": [{"arg": "query", "dim": -1, "one_of": [64, 128]}]}]}

At load (registry/loader.py): a pack whose ABI minor or required packs are not met is refused
(PackError naming the pack and the requirement); a provider whose compute capability range (or
ABI minor) no visible GPU meets is dropped on that device (its kernels are not registered) while
the rest of the pack loads. The CUDA architectures the library was built for (manifest key
"cuda_architectures", written by vt_add_oppack) narrow the range further: sm_90a code runs on
compute capability 9.0 only, whatever the declaration says. The GPUs are asked of NVML, so a load
never initialises CUDA.
"""
from __future__ import annotations

import ctypes
import os
import re

from .manifest import Manifest, PackError

_DEVICE_TYPES = {"cpu": 1, "cuda": 2}  # DLPack codes, as the runtime's dispatcher keys them
_BOOL_KEYS = ("cuda_graphs", "deterministic")
_ENTRY_KEYS = {"provider", "device", "ops", "compute_capability", "dtypes", "shapes", "limits",
               "abi_minor", *_BOOL_KEYS}
_DTYPES = {"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
           "float64"}
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+)*)\s*$")
_CC = re.compile(r"^(\d+)\.(\d+)$")


# ---- reading and validating --------------------------------------------------------------------

def parse(m: Manifest) -> dict:
    """The pack's capabilities, validated (an empty dict when it declares none). Raises PackError
    naming the pack and the malformed part."""
    raw = m.raw.get("capabilities")
    if raw is None:
        return {}
    where = f"pack '{m.name}': capabilities"
    if not isinstance(raw, dict):
        raise PackError(f"{where} must be a JSON object, got {raw!r:.80}")
    unknown = sorted(set(raw) - {"abi_minor", "requires", "providers"})
    if unknown:
        raise PackError(f"{where}: unknown keys {unknown} (known: abi_minor, requires, providers)")
    if "abi_minor" in raw:
        _check_abi_minor(raw["abi_minor"], m, where)
    requires = raw.get("requires", {})
    if not isinstance(requires, dict):
        raise PackError(f"{where}: 'requires' must map pack names to version ranges, got {requires!r:.80}")
    for name, spec in requires.items():
        if not isinstance(spec, str):
            raise PackError(f"{where}: requires['{name}'] must be a version range string, got {spec!r}")
        parse_range(spec, f"{where}: requires['{name}']")
    providers = raw.get("providers", [])
    if not isinstance(providers, list):
        raise PackError(f"{where}: 'providers' must be a list, got {providers!r:.80}")
    kernels = {(k.get("provider"), k.get("device")): set() for k in m.kernels}
    for k in m.kernels:
        kernels[(k.get("provider"), k.get("device"))].add(k.get("op"))
    for i, e in enumerate(providers):
        _check_entry(e, f"{where}: providers[{i}]", kernels, m)
    return raw


def _check_abi_minor(v, m: Manifest, where: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise PackError(f"{where}: 'abi_minor' must be a non-negative integer, got {v!r}")
    if v > m.abi[1]:
        raise PackError(f"{where}: declares it needs ABI minor {v} but was built against "
                        f"{m.abi[0]}.{m.abi[1]} (rebuild it, or fix the declaration)")


def _check_entry(e, where: str, kernels: dict, m: Manifest) -> None:
    if not isinstance(e, dict):
        raise PackError(f"{where} must be an object, got {e!r:.80}")
    unknown = sorted(set(e) - _ENTRY_KEYS)
    if unknown:
        raise PackError(f"{where}: unknown keys {unknown} (known: {', '.join(sorted(_ENTRY_KEYS))})")
    prov, dev = e.get("provider"), e.get("device")
    if dev not in _DEVICE_TYPES:
        raise PackError(f"{where}: 'device' must be one of {sorted(_DEVICE_TYPES)}, got {dev!r}")
    if prov not in {p for p, _ in kernels}:
        have = sorted({p for p, _ in kernels})
        raise PackError(f"{where}: the pack registers no provider '{prov}' (it has: {have})")
    # a provider declared for a device it has no kernels on is inert: a build without CUDA
    ops = e.get("ops")
    if ops is not None:
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise PackError(f"{where}: 'ops' must be a list of op names")
        stray = sorted(set(ops) - kernels.get((prov, dev), set(ops)))
        if stray:
            raise PackError(f"{where}: provider '{prov}' has no kernel on {dev} for {stray}")
    for key in _BOOL_KEYS:
        if key in e and not isinstance(e[key], bool):
            raise PackError(f"{where}: '{key}' must be true or false, got {e[key]!r}")
    dtypes = e.get("dtypes")
    if dtypes is not None and (not isinstance(dtypes, list) or not set(dtypes) <= _DTYPES):
        raise PackError(f"{where}: 'dtypes' must list dtype names from {sorted(_DTYPES)}, got {dtypes!r}")
    if "shapes" in e and not isinstance(e["shapes"], str):
        raise PackError(f"{where}: 'shapes' is free text (a string), got {e['shapes']!r:.80}")
    if "abi_minor" in e:
        _check_abi_minor(e["abi_minor"], m, where)
    cc = e.get("compute_capability")
    if cc is not None:
        if dev != "cuda":
            raise PackError(f"{where}: 'compute_capability' applies to cuda providers only")
        if not isinstance(cc, dict) or not cc or not set(cc) <= {"min", "max"} or not all(
                isinstance(v, str) and _CC.match(v) for v in cc.values()):
            raise PackError(f"{where}: 'compute_capability' must be {{\"min\": \"8.0\", \"max\": \"9.0\"}} "
                            f"(either or both, as major.minor strings), got {cc!r}")
    for j, rule in enumerate(e.get("limits", [])):
        ok = (isinstance(rule, dict) and isinstance(rule.get("arg"), str)
              and isinstance(rule.get("dim"), int) and not isinstance(rule.get("dim"), bool)
              and len(set(rule) & {"one_of", "max", "multiple_of"}) == 1
              and set(rule) <= {"arg", "dim", "one_of", "max", "multiple_of"})
        if ok and "one_of" in rule:
            ok = isinstance(rule["one_of"], list) and all(isinstance(x, int) for x in rule["one_of"])
        elif ok:
            v = rule.get("max", rule.get("multiple_of"))
            ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
        if not ok:
            raise PackError(f"{where}: limits[{j}] must be {{\"arg\": NAME, \"dim\": INT, and one of "
                            f"\"one_of\": [INT...], \"max\": INT, \"multiple_of\": INT}}, got {rule!r:.120}")


# ---- version ranges -------------------------------------------------------------------------------

def _vtuple(v: str) -> tuple:
    return tuple(int(x) for x in v.split("."))


def _cmp(a: tuple, b: tuple) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def parse_range(spec: str, where: str = "version range") -> list:
    """'>=0.1,<1' -> [('>=', (0, 1)), ('<', (1,))]. Numeric dotted versions only: a pack version
    is what vt_add_oppack(VERSION ...) says, and ranges over pre-release tags are not needed."""
    clauses = []
    for part in spec.split(","):
        mt = _CLAUSE.match(part)
        if not mt:
            raise PackError(f"{where}: {spec!r} is not a version range (clauses like '>=0.1', '<1', "
                            f"'==0.2.0', separated by commas)")
        clauses.append((mt.group(1) or "==", _vtuple(mt.group(2))))
    return clauses


def version_in(version: str, spec: str) -> bool:
    """Whether a pack version satisfies a range; a version that is not numeric satisfies none."""
    if not _VERSION.match(str(version)):
        return False
    v = _vtuple(str(version))
    tests = {">=": lambda c: c >= 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0,
             "<": lambda c: c < 0, "==": lambda c: c == 0, "!=": lambda c: c != 0}
    return all(tests[op](_cmp(v, want)) for op, want in parse_range(spec))


# ---- compute capabilities -------------------------------------------------------------------------

def cuda_devices() -> list:
    """(major, minor) of every visible GPU; [] without one, or where that cannot be told without
    initialising CUDA. Asked of NVML (the driver's management library), never of the CUDA
    runtime: a pack load, `import vibetensor` included, must not initialise CUDA (no context, no
    allocator, and fork() stays usable, as in PyTorch). (Tests replace this function.)"""
    if not _nvml_cache:
        _nvml_cache.append(_nvml_devices())
    return visible(_nvml_cache[0], os.environ.get("CUDA_VISIBLE_DEVICES"))


_nvml_cache: list = []  # the GPUs do not change while the process runs: ask NVML once


def _nvml_devices() -> list:
    """[(uuid, (major, minor)), ...] of every GPU NVML sees, in its order; [] without NVML."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return []
    out = []
    try:
        if nvml.nvmlInit_v2() != 0:
            return []
        count = ctypes.c_uint(0)
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return []
        for i in range(count.value):
            h = ctypes.c_void_p()
            major, minor = ctypes.c_int(), ctypes.c_int()
            uuid = ctypes.create_string_buffer(96)
            if (nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) != 0 or
                    nvml.nvmlDeviceGetCudaComputeCapability(h, ctypes.byref(major), ctypes.byref(minor)) != 0):
                continue
            nvml.nvmlDeviceGetUUID(h, uuid, 96)
            out.append((uuid.value.decode(errors="replace"), (major.value, minor.value)))
        return out
    except AttributeError:  # an NVML too old to have these entry points
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except AttributeError:
            pass


def visible(devices: list, env: str | None) -> list:
    """The compute capabilities of the GPUs that CUDA_VISIBLE_DEVICES (`env`) leaves visible, from
    NVML's [(uuid, cc), ...]. Indices there count in CUDA's order, which need not be NVML's, so an
    index counts every GPU: a provider is only dropped when no GPU it could run on is visible."""
    ccs = [cc for _, cc in devices]
    if env is None:
        return ccs
    picked, by_index = [], False
    for item in (x.strip() for x in env.split(",")):
        if item.startswith(("GPU-", "MIG-")):
            picked += [cc for uuid, cc in devices if uuid.startswith(item)]
        elif item.isdigit() and int(item) < len(devices):
            by_index = True
        else:
            break  # CUDA stops at the first entry it cannot use
    return sorted(set(picked + (ccs if by_index else [])))


def _cc(text: str) -> tuple:
    mt = _CC.match(text)
    return int(mt.group(1)), int(mt.group(2))


def built_admits(archs, cc: tuple) -> bool:
    """Whether code built for CMake CUDA_ARCHITECTURES `archs` runs on compute capability `cc`:
    'NN-real' is machine code for NN's major with a minor <= cc's; 'NN-virtual' (and plain 'NN',
    which holds both) is PTX that the driver compiles for any newer GPU; an arch-specific 'NNa'
    runs on exactly that capability. Unknown values (native, all) admit everything."""
    if not archs:
        return True
    for a in archs:
        mt = re.match(r"^(\d+)(\d)([af]?)(?:-(real|virtual))?$", str(a))
        if not mt:
            return True
        want = (int(mt.group(1)), int(mt.group(2)))
        if mt.group(3) == "a":
            if cc == want:
                return True
        elif mt.group(3) == "f":  # family-specific: the same major, a minor at least this one
            if cc[0] == want[0] and cc[1] >= want[1]:
                return True
        elif mt.group(4) == "real":
            if cc[0] == want[0] and cc[1] >= want[1]:
                return True
        elif cc >= want:
            return True
    return False


def unfit_reason(entry: dict, m: Manifest, cc: tuple, host_minor: int) -> str | None:
    """Why this provider entry cannot run on a GPU of capability cc (None: it can)."""
    need = entry.get("abi_minor")
    if need is not None and need > host_minor:
        return f"needs op-pack ABI minor {need}, this runtime speaks minor {host_minor}"
    rng = entry.get("compute_capability") or {}
    shown = f"{cc[0]}.{cc[1]}"
    if "min" in rng and cc < _cc(rng["min"]):
        return f"needs compute capability >= {rng['min']}, the GPU has {shown}"
    if "max" in rng and cc > _cc(rng["max"]):
        return f"needs compute capability <= {rng['max']}, the GPU has {shown}"
    archs = m.raw.get("cuda_architectures")
    if archs and not built_admits(archs, cc):
        return f"the library holds GPU code for {', '.join(map(str, archs))} only, the GPU has {shown}"
    return None


def plan(m: Manifest, loaded: dict, host_minor: int) -> list:
    """The load-time check. Raises PackError when the whole pack cannot load (ABI minor, a
    required pack missing or of the wrong version). Returns the providers to drop, as
    (device, provider, reason) for every (device, provider) that no visible device can run."""
    caps = parse(m)
    if not caps:
        return []
    need = caps.get("abi_minor")
    if need is not None and need > host_minor:
        raise PackError(f"pack '{m.name}' needs op-pack ABI minor {need}; this runtime speaks "
                        f"minor {host_minor} (upgrade vibetensor, or use an older build of the pack)")
    for name, spec in caps.get("requires", {}).items():
        other = loaded.get(name)
        if other is None:
            raise PackError(f"pack '{m.name}' requires pack '{name}' ({spec}), which is not loaded: "
                            f"load it first (vt.ops.load('{name}'))")
        if not version_in(other.version, spec):
            raise PackError(f"pack '{m.name}' requires pack '{name}' {spec}, but version "
                            f"{other.version} is loaded (from {other.path})")
    drops = []
    for e in caps.get("providers", []):
        if e.get("ops") is not None:
            continue  # per-op details describe calls; only whole-provider entries gate loading
        if e["device"] == "cpu":
            need = e.get("abi_minor")
            if need is not None and need > host_minor:
                drops.append(("cpu", e["provider"], f"needs op-pack ABI minor {need}, this "
                                                     f"runtime speaks minor {host_minor}"))
            continue
        devices = cuda_devices()
        if not devices:
            continue  # no GPU: nothing can run cuda kernels, nothing to choose between
        reasons = [unfit_reason(e, m, cc, host_minor) for cc in devices]
        if all(reasons):
            drops.append(("cuda", e["provider"], reasons[0]))
    return drops


def for_kernel(caps: dict, op: str, provider: str, device: str) -> dict:
    """What the pack declares for one op of one provider on one device: the provider's general
    entry, overridden by any entry naming the op."""
    out: dict = {}
    for specific in (False, True):
        for e in caps.get("providers", []):
            if e["provider"] != provider or e["device"] != device:
                continue
            if (e.get("ops") is not None) == specific and (not specific or op in e["ops"]):
                out.update({k: v for k, v in e.items() if k not in ("provider", "device", "ops")})
    return out


def unmet(entry: dict, dtype: str | None = None, shapes: dict | None = None) -> list:
    """The declared limits a call would break, as readable reasons ([] when none): `dtype` a
    dtype name, `shapes` maps argument names to their sizes."""
    reasons = []
    if dtype is not None and entry.get("dtypes") is not None and dtype not in entry["dtypes"]:
        reasons.append(f"dtype {dtype} is not one of {entry['dtypes']}")
    for rule in entry.get("limits", []):
        sizes = (shapes or {}).get(rule["arg"])
        if sizes is None:
            continue
        try:
            n = sizes[rule["dim"]]
        except IndexError:
            reasons.append(f"{rule['arg']} has {len(sizes)} dims, the limit reads dim {rule['dim']}")
            continue
        what = f"{rule['arg']}.shape[{rule['dim']}] = {n}"
        if "one_of" in rule and n not in rule["one_of"]:
            reasons.append(f"{what} is not one of {rule['one_of']}")
        if "max" in rule and n > rule["max"]:
            reasons.append(f"{what} is over {rule['max']}")
        if "multiple_of" in rule and n % rule["multiple_of"]:
            reasons.append(f"{what} is not a multiple of {rule['multiple_of']}")
    return reasons


def device_code(device: str) -> int:
    return _DEVICE_TYPES[device]
