"""Issue 8, pack loading: the file that was hashed is the file that is loaded; packs another local
user could have changed are refused (group/world-writable files and folders up to a trusted root,
symlinked folders); manifests of the wrong shape are PackErrors; the manifest's op list must match
what init defines; a graph keeps an unloaded pack's backward usable (the `vt-ops new` template,
whose backward calls its own op by name). Loads run in child interpreters (packtools)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


@pytest.fixture(scope="session")
def tpl(tmp_path_factory) -> Path:
    """`vt-ops new tpl` + `vt-ops build`, unchanged: the template users start from."""
    def make():
        work = tmp_path_factory.mktemp("tpl")
        pt.vt_ops("new", "tpl", cwd=work)
        return pt.build(work / "tpl", work / "build", "tpl")
    return pt.once("template_pack", make)


def fresh(tpl: Path, dest: Path) -> Path:
    return pt.copy_pack(tpl, dest)


def load_error(folder, env=None):
    """[exception class, message] of vt.ops.load(folder) in a child, or None when it loads."""
    return pt.result(f"""
        try:
            vt.ops.load({str(folder)!r})
            print(json.dumps(None))
        except Exception as e:
            print(json.dumps([type(e).__name__, str(e)]))
    """, env=env)


# ---- 3. a graph keeps its pack usable after unload --------------------------------------------

def test_template_backward_after_unload(tpl):
    r = pt.result(f"""
        from vibetensor.runtime import ffi, lib
        p = vt.ops.load({str(tpl)!r})
        x = vt.tensor([1.0, 2.0, 3.0]).requires_grad_()
        z = vt.ops.tpl.scale(vt.ops.tpl.scale(x, 2.5), 2.0)
        vt.ops.unload(p)
        z.sum().backward()  # the template's backward finds tpl::scale by name
        # outside a backward of the pack, the unloaded op stays unknown
        unknown = lib.vtrt_find_op(b'tpl::scale') == ffi.NULL
        lib.vtrt_clear_error()
        kept = mapped({str(tpl / 'libvt_tpl.so')!r})
        del z
        import gc; gc.collect()
        print(json.dumps([x.grad.tolist(), unknown, kept, mapped({str(tpl / 'libvt_tpl.so')!r})]))
    """)
    assert r == [[5.0, 5.0, 5.0], True, True, False]


# ---- 2. the file that was hashed is the file that is loaded -------------------------------------

def test_library_swapped_after_the_hash_is_not_loaded(tpl, tmp_path):
    folder = fresh(tpl, tmp_path / "p")
    # between verify (hash of the opened file) and dlopen, the path is replaced by garbage: the
    # load still maps the file that was hashed
    r = pt.result(f"""
        from vibetensor.registry import manifest as M
        real = M.verify
        def racing(m, fd):
            real(m, fd)
            tmp = m.library.with_suffix('.evil')
            tmp.write_bytes(b'not an ELF file at all')
            os.replace(tmp, m.library)
        M.verify = racing
        p = vt.ops.load({str(folder)!r})
        x = vt.ops.tpl.scale(vt.tensor([1.0, 2.0]), 3.0)
        print(json.dumps(x.tolist()))
    """)
    assert r == [3.0, 6.0]


@pytest.mark.parametrize("what,mode,why", [
    ("folder", 0o775, "group-writable"),
    ("folder", 0o757, "world-writable"),
    ("library", 0o664, "group-writable"),
    ("manifest.json", 0o646, "world-writable"),
    ("parent", 0o777, "world-writable"),
    ("parent", 0o770, "group-writable"),
])
def test_writable_by_others_refused(tpl, tmp_path, what, mode, why):
    parent = tmp_path / "above"
    parent.mkdir(mode=0o755)
    folder = fresh(tpl, parent / "p")
    target = {"folder": folder, "library": folder / "libvt_tpl.so",
              "manifest.json": folder / "manifest.json", "parent": parent}[what]
    os.chmod(target, mode)
    err = load_error(folder)
    assert err and err[0] == "PackError", err
    assert why in err[1] and str(target) in err[1] and "swap the code" in err[1]
    # a folder the user vouches for ends the walk (a shared group folder, say)
    if what == "parent":
        assert load_error(folder, env=pt.clean_env(VT_OPS_TRUSTED_ROOTS=str(parent))) is None


def test_sticky_world_writable_parent_is_fine(tpl, tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o1777)  # like /tmp: others cannot rename what they do not own
    assert load_error(fresh(tpl, parent / "p")) is None


def test_symlinked_pack_folder_refused(tpl, tmp_path):
    real = fresh(tpl, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    err = load_error(link)
    assert err and err[0] == "PackError" and "symbolic link" in err[1]


def test_symlinked_library_refused(tpl, tmp_path):
    folder = fresh(tpl, tmp_path / "p")
    lib = folder / "libvt_tpl.so"
    shutil.move(lib, tmp_path / "elsewhere.so")
    lib.symlink_to(tmp_path / "elsewhere.so")
    err = load_error(folder)
    assert err and err[0] == "PackError" and "symbolic link" in err[1]


# ---- manifests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,says", [
    ("ops", 5, "'ops' must be a list"),
    ("ops", [1, 2], "'ops' must be a list"),
    ("kernels", "x", "'kernels' must be a list"),
    ("devices", {"cpu": 1}, "'devices' must be a list"),
    ("abi", ["1", 1], "'abi' must be [major, minor]"),
    ("abi", [1.0, 1], "'abi' must be [major, minor]"),
    ("abi", [True, 1], "'abi' must be [major, minor]"),
    ("version", [1], "'version' must be a string"),
    ("schemas", [], "'schemas' must be an object"),
])
def test_manifest_of_the_wrong_shape_is_a_pack_error(tpl, tmp_path, key, value, says):
    folder = fresh(tpl, tmp_path / "p")
    man = json.loads((folder / "manifest.json").read_text())
    man[key] = value
    (folder / "manifest.json").write_text(json.dumps(man))
    err = load_error(folder)
    assert err and err[0] == "PackError" and says in err[1], err


def test_manifest_op_list_must_match_init(tpl, tmp_path):
    folder = fresh(tpl, tmp_path / "p")
    man = json.loads((folder / "manifest.json").read_text())
    man["ops"] = ["tpl::scale", "tpl::ghost"]
    (folder / "manifest.json").write_text(json.dumps(man))
    r = pt.result(f"""
        err = raises(vt.ops.load, {str(folder)!r})
        print(json.dumps([err, hasattr(vt.ops, 'tpl'), [p.name for p in vt.ops.packs()]]))
    """)
    (cls, msg), has_ns, packs = r
    assert cls == "PackError" and "tpl::ghost" in msg and "listed but not defined" in msg
    assert not has_ns and "tpl" not in packs


def test_cli_new_with_a_long_name_is_a_clean_error(tmp_path):
    proc = pt.vt_ops("new", "a" * 300, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + (proc.stderr or "")
    assert "at most 64" in proc.stdout + (proc.stderr or "")


def test_unload_reload_under_load_keeps_graphs_working(tpl):
    """Threads run forward + backward through the template's op while the main thread unloads and
    reloads the pack: a forward may be refused (the op is gone for a moment), but every graph that
    was built finishes its backward with the exact gradient."""
    r = pt.result(f"""
        import threading
        stop, bad, refused, done, errs = [False], [0], [0], [0], []
        def worker():
            x = vt.tensor([1.0, 2.0, 3.0]).requires_grad_()
            while not stop[0]:
                try:
                    y = vt.ops.tpl.scale(x, 3.0)
                except Exception:
                    refused[0] += 1  # unloaded at this moment
                    continue
                try:
                    x.grad = None
                    (y * 1.0).sum().backward()
                    bad[0] += x.grad.tolist() != [3.0, 3.0, 3.0]
                    done[0] += 1
                except Exception as e:
                    errs.append(repr(e))
        p = vt.ops.load({str(tpl)!r})
        ts = [threading.Thread(target=worker) for _ in range(3)]
        for t in ts: t.start()
        for i in range(40):
            vt.ops.unload(p)
            p = vt.ops.load({str(tpl)!r})
        stop[0] = True
        for t in ts: t.join()
        print(json.dumps([done[0], bad[0], errs[:3]]))
    """)
    done, bad, errs = r
    assert done > 0 and bad == 0 and errs == [], r
