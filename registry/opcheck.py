"""`vt-ops test PACK`: every op and provider of a pack, check by check, in a child process.

What it is:
- `run(pack)` -> Report (registry/opcheck_report.py: `.text()`, `.to_json()`, `.failed`). It starts
  `python -m vibetensor.registry.opcheck_checks PACK` (the checks: registry/opcheck_checks.py) and
  reads one line per check started and finished. A child that dies (a crashing kernel: SIGSEGV,
  abort) or makes no progress for `unit_timeout` seconds is reported as a crash or timeout of the
  check it was in, and a fresh child carries on with the next check.
- Checks (docs/OPCHECK.md): schema, meta step vs compute, float64 gradcheck, providers agree,
  devices agree, CUDA-graph capture where claimed, autocast policy, bad inputs named by the op.
- Ops with no sample are listed ("not covered") and fail the run unless a samples file says why;
  they are never passed silently.

What it is not: a benchmark (cli/_bench.py), nor a value test against numpy (the family tests).
This process never imports the frontend: only the child does.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

from .opcheck_checks import PREFIX as _PREFIX
from .opcheck_checks import CheckerError, Unit, parse_schema, plan
from .opcheck_report import CHECKS, Report, Result


# -- the parent ----------------------------------------------------------------------------------

def _signal_name(rc: int) -> str:
    try:
        return f"killed by {signal.Signals(-rc).name}"
    except (ValueError, TypeError):
        return f"exited with status {rc}"


def run(pack, samples_file=None, devices=None, unit_timeout: float = 120.0, progress=None) -> Report:
    """Check a pack (a loaded pack's name, a pack name on the search path, or a pack folder) in
    child processes; a unit that crashes or hangs its child is reported and skipped over."""
    t0 = time.perf_counter()
    report = Report(str(pack))
    start, total = 0, None
    while True:
        cmd = [sys.executable, "-m", "vibetensor.registry.opcheck_checks", str(pack),
               "--start", str(start)]
        if samples_file:
            cmd += ["--samples", str(samples_file)]
        if devices:
            cmd += ["--devices", ",".join(devices)]
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        current, done, err_tail = None, False, []
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        bufs = {"out": b"", "err": b""}
        last = time.monotonic()
        timed_out = False
        open_streams = 2
        while open_streams:
            events = sel.select(timeout=1.0)
            if not events and time.monotonic() - last > unit_timeout:
                timed_out = True
                proc.kill()
                break
            for key, _ in events:
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                bufs[key.data] += chunk
                *lines, bufs[key.data] = bufs[key.data].split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    if key.data == "err":
                        err_tail = (err_tail + [line])[-20:]
                        continue
                    if not line.startswith(_PREFIX):
                        continue
                    msg = json.loads(line[len(_PREFIX):])
                    last = time.monotonic()
                    kind = msg.pop("kind")
                    if kind == "plan":
                        report.pack, total = msg["pack"], msg["units"]
                        report.uncovered, report.not_covered = msg["uncovered"], msg["justified"]
                        report.samples_from = msg["samples_from"]
                    elif kind == "begin":
                        current = msg
                    elif kind == "result":
                        msg.pop("index")
                        r = Result(**msg)
                        report.results.append(r)
                        current = None
                        if progress:
                            progress(r, len(report.results), total)
                    elif kind == "done":
                        done = True
                    elif kind == "error":
                        proc.wait()
                        raise CheckerError(f"vt-ops test {pack}: {msg['message']}")
        sel.close()
        rc = proc.wait()
        if done:
            break
        tail = " | ".join(l for l in err_tail if l.strip())[-600:]
        if current is None:  # died outside any unit: loading the pack or planning
            report.results.append(Result(str(pack), None, None, "schema", "crash",
                                         f"the checker's child {_signal_name(rc)} before a check "
                                         f"ran: {tail}"))
            break
        why = (f"no progress for {unit_timeout:.0f} s (killed)" if timed_out
               else f"the child process {_signal_name(rc)}")
        report.results.append(Result(current["op"], current["provider"], current["device"],
                                     current["check"], "timeout" if timed_out else "crash",
                                     f"{why}; stderr: {tail}"))
        report.restarts += 1
        start = current["index"] + 1
        if total is not None and start >= total:
            break
    report.seconds = time.perf_counter() - t0
    return report


def _main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m vibetensor.registry.opcheck")
    ap.add_argument("pack")
    ap.add_argument("--samples", default=None)
    ap.add_argument("--devices", default=None)
    a = ap.parse_args(argv)
    rep = run(a.pack, a.samples, a.devices.split(",") if a.devices else None)
    print(rep.text())
    return 1 if rep.failed else 0


__all__ = ["run", "Report", "Result", "CHECKS", "CheckerError", "Unit", "plan", "parse_schema"]

if __name__ == "__main__":
    sys.exit(_main())
