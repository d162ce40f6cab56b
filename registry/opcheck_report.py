"""What `vt-ops test` reports: one Result per check, and the Report that gathers them.

`Report.text()` is the readable form (a table op x provider@device x check, the failures, the skips
grouped by why, the ops without a sample, a summary line), `Report.to_json()` the machine form;
`Report.failed` decides the exit status. Written by registry/opcheck.py from what the child
(registry/opcheck_checks.py) sends.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

CHECKS = ("schema", "meta", "gradcheck", "providers", "devices", "graph", "autocast", "bad_input")


@dataclass
class Result:
    op: str
    provider: str | None
    device: str | None
    check: str
    status: str  # pass | fail | skip | crash | timeout
    detail: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "crash", "timeout")


@dataclass
class Report:
    pack: str
    results: list = field(default_factory=list)
    not_covered: dict = field(default_factory=dict)   # op -> why (justified by the samples file)
    uncovered: list = field(default_factory=list)     # ops with no sample and no justification
    samples_from: list = field(default_factory=list)
    restarts: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.uncovered) or any(r.failed for r in self.results)

    def counts(self) -> dict:
        c = {"pass": 0, "fail": 0, "skip": 0, "crash": 0, "timeout": 0}
        for r in self.results:
            c[r.status] += 1
        return c

    def summary(self) -> str:
        c = self.counts()
        ops = len({r.op for r in self.results})
        provs = len({(r.op, r.provider, r.device) for r in self.results if r.check != "schema"})
        bad = c["fail"] + c["crash"] + c["timeout"]
        state = "FAILED" if self.failed else "OK"
        return (f"vt-ops test {self.pack}: {state}: {ops} ops, {provs} op x provider x device, "
                f"{len(self.results)} checks: {c['pass']} passed, {bad} failed "
                f"({c['crash']} crashed, {c['timeout']} timed out), {c['skip']} skipped; "
                f"not covered: {len(self.uncovered)} without a sample, {len(self.not_covered)} "
                f"justified; {self.seconds:.1f} s")

    def to_json(self) -> dict:
        return {"pack": self.pack, "ok": not self.failed, "counts": self.counts(),
                "summary": self.summary(), "samples_from": self.samples_from,
                "not_covered": self.not_covered, "uncovered": self.uncovered,
                "restarts": self.restarts, "seconds": round(self.seconds, 3),
                "results": [asdict(r) for r in self.results]}

    def text(self, verbose: bool = False) -> str:
        short = {"pass": "ok", "fail": "FAIL", "skip": "skip", "crash": "CRASH", "timeout": "TIME"}
        rows: dict = {}
        schema = {}
        for r in self.results:
            if r.check == "schema":
                schema[r.op] = short[r.status]
            else:
                prov = r.provider if r.provider is not None else "(composite)"
                rows.setdefault((r.op, f"{prov}@{r.device}"), {})[r.check] = short[r.status]
        names = [c for c in CHECKS]
        wop = max([len(k[0]) for k in rows] + [len(op) for op in schema] + [2])
        wpr = max([len(k[1]) for k in rows] + [8])
        lines = [f"{'op'.ljust(wop)}  {'provider'.ljust(wpr)}  " + " ".join(n.ljust(9) for n in names)]
        for (op, prov), cells in rows.items():
            cells = dict(cells, schema=schema.get(op, "-"))
            lines.append(f"{op.ljust(wop)}  {prov.ljust(wpr)}  " +
                         " ".join(cells.get(n, "-").ljust(9) for n in names))
        for op in schema:
            if not any(k[0] == op for k in rows):
                lines.append(f"{op.ljust(wop)}  {'(none)'.ljust(wpr)}  {schema[op]}")
        bad = [r for r in self.results if r.failed]
        if bad:
            lines.append("")
            lines.append("failures:")
            for r in bad:
                lines.append(f"  {r.op} {r.provider}@{r.device} {r.check}: {r.status}: {r.detail}")
        skips: dict = {}
        for r in self.results:
            if r.status == "skip":
                skips.setdefault((r.check, r.detail), []).append(f"{r.op} {r.provider}@{r.device}")
        if skips:
            lines.append("")
            lines.append("skipped (why):")
            for (check, why), where in sorted(skips.items()):
                more = "" if verbose or len(where) <= 3 else f" and {len(where) - 3} more"
                shown = where if verbose else where[:3]
                lines.append(f"  {check}: {why}: {', '.join(shown)}{more}")
        if self.uncovered or self.not_covered:
            lines.append("")
            lines.append("not covered:")
            for op in self.uncovered:
                lines.append(f"  {op}: no sample (add one to the pack's samples.py: docs/OPCHECK.md)")
            for op, why in self.not_covered.items():
                lines.append(f"  {op}: justified: {why}")
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines)


__all__ = ["CHECKS", "Result", "Report"]
