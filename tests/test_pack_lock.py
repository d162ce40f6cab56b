"""Locked packs: `vt-ops lock` writes what the packs are (version, library sha256, kernels with
their priorities); `vt.ops.load(..., lock=)` admits only a pack the lock names exactly."""
import json

import pytest
from click.testing import CliRunner

import vibetensor as vt
from vibetensor.cli import main
from vibetensor.registry import lock as L
from vibetensor.registry import manifest as M


def _folder(name):
    return vt.ops.get(name).path


@pytest.fixture
def lockfile(tmp_path):
    out = tmp_path / "vt-ops.lock"
    r = CliRunner().invoke(main, ["lock", str(_folder("core")), "attention", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "core" in r.output and "attention" in r.output
    return out


def test_lockfile_records_each_pack(lockfile):
    data = json.loads(lockfile.read_text())
    assert data["vt_ops_lock"] == L.LOCK_VERSION and sorted(data["packs"]) == ["attention", "core"]
    core = M.read(_folder("core"))
    assert data["packs"]["core"]["sha256"] == core.sha256
    assert ["core::add", "cpu", "core", 0] in data["packs"]["core"]["kernels"]


def test_the_lock_admits_the_locked_pack(lockfile):
    L.check(L.read(lockfile), M.read(_folder("core")))
    # load goes past the lock to the next check (core is loaded already)
    with pytest.raises(M.PackError, match="already loaded"):
        vt.ops.load(_folder("core"), lock=lockfile)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["packs"].pop("core"), "not in the lock"),
    (lambda d: d["packs"]["core"].update(sha256="0" * 64), "sha256 is"),
    (lambda d: d["packs"]["core"].update(version="9.9"), "version is"),
    (lambda d: d["packs"]["core"]["kernels"][0].__setitem__(3, 99), "kernels .* differ"),
])
def test_the_lock_refuses_anything_else(lockfile, edit, message):
    data = json.loads(lockfile.read_text())
    edit(data)
    with pytest.raises(M.PackError, match=message):
        vt.ops.load(_folder("core"), lock=data)


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ('{"packs": {}}', "not a vt-ops lockfile"),
    ('{"vt_ops_lock": 1, "packs": {"core": {"version": "1"}}}', "must map pack names"),
])
def test_bad_lockfiles_are_refused(tmp_path, text, message):
    p = tmp_path / "bad.lock"
    p.write_text(text)
    with pytest.raises(M.PackError, match=message):
        vt.ops.load(_folder("core"), lock=p)
    with pytest.raises(M.PackError, match="cannot read"):
        vt.ops.load(_folder("core"), lock=tmp_path / "missing.lock")


def test_cli_errors_are_clean(tmp_path):
    r = CliRunner().invoke(main, ["lock", str(tmp_path), "-o", str(tmp_path / "x.lock")])
    assert r.exit_code != 0 and "Error" in r.output and "Traceback" not in r.output
