"""The user story of issue 2, end to end: `vt-ops new mypack` + `vt-ops build` a pack that provides
core::add on the cpu under another provider name ("mine", priority 10) and counts its calls; load
it into a fresh process, see it serve `a + b`, swap back to core, unload, keep computing — plus the
registry's refusals (second load, world-writable folders, changed libraries, symlinks) and the
ways of finding a pack (path, VT_OPS_PATH, the user folder, by name).

Every load happens in a child interpreter (packtools.run_py), so this process never sees the pack.
The pack's source: tests/packs/useradd/mypack.cpp.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


@pytest.fixture(scope="session")
def mypack(tmp_path_factory) -> Path:
    return pt.user_pack(tmp_path_factory)


def test_built_manifest_describes_the_pack(mypack):
    man = json.loads((mypack / "manifest.json").read_text())
    assert man["name"] == "mypack"
    assert man["ops"] == ["mypack::calls"]
    assert man["schemas"]["mypack::calls"] == "mypack::calls() -> int"
    assert {"op": "core::add", "device": "cpu", "provider": "mine", "priority": 10} in man["kernels"]
    assert "core::add" in man["requires"]
    assert man["sha256"] == pt.sha256(mypack / man["library"])
    assert (mypack / man["library"]).is_file()


def test_load_select_swap_unload_reload(mypack):
    r = pt.result(f"""
        P = {str(mypack)!r}
        out = {{}}
        prov = lambda: [(p.name, p.pack, p.priority, p.active) for p in vt.ops.providers('core::add')]
        a, b = vt.tensor([1.0, 2.0, 3.0]), vt.tensor([10.0, 20.0, 30.0])
        out['before'] = prov()
        p = vt.ops.load(P)
        lib = p.library
        out['loaded'] = [p.name, p.loaded, vt.ops.is_mapped(p), mapped(lib), [q.name for q in vt.ops.packs()]]
        out['pack'] = [p.version, str(p.path), p.ops, [k['op'] for k in p.kernels], vt.ops.get('mypack') is p,
                       p.manifest['sha256'] == __import__('hashlib').sha256(open(lib, 'rb').read()).hexdigest()]
        out['after_load'] = prov()
        out['calls0'] = vt.ops.mypack.calls()
        out['sum1'] = (a + b).numpy().tolist()
        out['calls1'] = vt.ops.mypack.calls()
        out['alpha'] = vt.ops.core.add(a, b, alpha=2.0).numpy().tolist()
        out['calls2'] = vt.ops.mypack.calls()
        with vt.ops.use('core::add', provider='core'):
            out['pinned_in'] = vt.ops.pinned('core::add')
            out['active_in'] = [q.name for q in vt.ops.providers('core::add') if q.active]
            out['sum_in'] = (a + b).numpy().tolist()
            out['calls_in'] = vt.ops.mypack.calls()
        out['pinned_out'] = vt.ops.pinned('core::add')
        out['sum_out'] = (a + b).numpy().tolist()
        out['calls_out'] = vt.ops.mypack.calls()
        calls_op = vt.ops.mypack.calls          # an op handle that outlives the pack
        vt.ops.unload(p)
        out['unloaded'] = [p.loaded, vt.ops.is_mapped(p), mapped(lib), [q.name for q in vt.ops.packs()]]
        out['after_unload'] = prov()
        out['sum_unloaded'] = (a + b).numpy().tolist()
        out['ns_gone'] = raises(getattr, vt.ops, 'mypack')
        out['handle_gone'] = raises(calls_op)
        out['unload_again'] = raises(vt.ops.unload, 'mypack')
        p2 = vt.ops.load(P)
        out['reloaded'] = [p2.loaded, mapped(lib), prov()]
        out['calls_reloaded'] = vt.ops.mypack.calls()   # a fresh mapping: static data starts over
        out['sum_reloaded'] = (a + b).numpy().tolist()
        out['calls_reloaded2'] = calls_op()              # the old handle re-resolves
        vt.ops.unload(p2)
        out['ok'] = still_computes()
        print(json.dumps(out))
    """)
    assert r["before"] == [["core", "core", 0, True]]
    assert r["loaded"] == ["mypack", True, True, True, ["core", "mypack"]]
    assert r["pack"] == ["0.1.0", str(mypack), ["mypack::calls"], ["mypack::calls", "core::add"], True, True]
    assert r["after_load"] == [["mine", "mypack", 10, True], ["core", "core", 0, False]]
    # the side effect shows which provider served each add
    assert r["calls0"] == 0
    assert r["sum1"] == [11.0, 22.0, 33.0] and r["calls1"] == 1
    assert r["alpha"] == [21.0, 42.0, 63.0] and r["calls2"] == 2
    # pinned to core inside the block: core serves, the counter stands still
    assert r["pinned_in"] == "core" and r["active_in"] == ["core"]
    assert r["sum_in"] == [11.0, 22.0, 33.0] and r["calls_in"] == 2
    # the block restores the previous (absent) pin: mine serves again
    assert r["pinned_out"] is None
    assert r["sum_out"] == [11.0, 22.0, 33.0] and r["calls_out"] == 3
    # unloaded: core takes over at once, the library is closed, the namespace and op are gone
    assert r["unloaded"] == [False, False, False, ["core"]]
    assert r["after_unload"] == [["core", "core", 0, True]]
    assert r["sum_unloaded"] == [11.0, 22.0, 33.0]
    assert r["ns_gone"][0] == "AttributeError" and "mypack" in r["ns_gone"][1]
    assert r["handle_gone"][0] == "AttributeError" and "mypack::calls" in r["handle_gone"][1]
    assert r["unload_again"][0] == "ValueError" and "not loaded" in r["unload_again"][1]
    # loading again after unload works
    assert r["reloaded"] == [True, True, [["mine", "mypack", 10, True], ["core", "core", 0, False]]]
    assert r["calls_reloaded"] == 0
    assert r["sum_reloaded"] == [11.0, 22.0, 33.0]
    assert r["calls_reloaded2"] == 1
    assert r["ok"]


def test_pinned_provider_unloaded_falls_back(mypack):
    r = pt.result(f"""
        p = vt.ops.load({str(mypack)!r})
        vt.ops.use('core::add', 'mine')                 # a pin without `with` stays
        a = vt.ones(4)
        before = vt.ops.mypack.calls()
        s1 = (a + a).numpy().tolist()
        after = vt.ops.mypack.calls()
        vt.ops.unload(p)
        s2 = (a + a).numpy().tolist()                    # the pinned provider left: next best serves
        active = [q.name for q in vt.ops.providers('core::add') if q.active]
        bad = raises(vt.ops.use, 'core::add', 'nope')
        print(json.dumps([before, s1, after, s2, active, bad]))
    """)
    before, s1, after, s2, active, bad = r
    assert s1 == [2.0] * 4 and after == before + 1
    assert s2 == [2.0] * 4
    assert active == ["core"]
    assert bad[0] == "ValueError" and "nope" in bad[1] and "core" in bad[1]


def test_own_op_namespace(mypack):
    r = pt.result(f"""
        out = [raises(getattr, vt.ops, 'mypack')]
        p = vt.ops.load({str(mypack)!r})
        out.append('calls' in dir(vt.ops.mypack))
        out.append(repr(vt.ops.mypack.calls))
        out.append(vt.ops.mypack.calls())
        out.append(raises(vt.ops.mypack.calls, 1))        # takes no arguments
        out.append(raises(getattr, vt.ops.mypack, 'nosuch'))
        vt.ops.unload(p)
        out.append(raises(getattr, vt.ops, 'mypack'))
        print(json.dumps(out))
    """)
    before, listed, rep, calls, extra, nosuch, after = r
    assert before[0] == "AttributeError"
    assert listed is True
    assert "mypack::calls() -> int" in rep
    assert calls == 0
    assert extra[0] == "TypeError" and "mypack::calls" in extra[1]
    assert nosuch[0] == "AttributeError" and "mypack::nosuch" in nosuch[1]
    assert after[0] == "AttributeError" and "mypack" in after[1]


def test_second_load_refused(mypack, tmp_path):
    copy = pt.copy_pack(mypack, tmp_path / "copy")
    r = pt.result(f"""
        p = vt.ops.load({str(mypack)!r})
        again = raises(vt.ops.load, {str(mypack)!r})
        other = raises(vt.ops.load, {str(copy)!r})           # same pack name, other folder
        names = [q.name for q in vt.ops.packs()]
        provs = [q.name for q in vt.ops.providers('core::add')]
        print(json.dumps([again, other, names, provs, still_computes()]))
    """)
    again, other, names, provs, ok = r
    assert again[0] == "PackError" and "already loaded" in again[1] and "mypack" in again[1]
    assert other[0] == "PackError" and "already loaded" in other[1]
    assert names == ["core", "mypack"]
    assert provs == ["mine", "core"]            # registered once, not twice
    assert ok


def test_load_by_path_forms(mypack):
    r = pt.result(f"""
        out = []
        for spec in [{str(mypack / "manifest.json")!r}, {str(mypack / "libvt_mypack.so")!r}]:
            p = vt.ops.load(spec)
            out.append([p.name, str(p.path), vt.ops.mypack.calls()])
            vt.ops.unload(p)
        out.append(raises(vt.ops.load, {str(mypack.parent / "nowhere")!r}))
        print(json.dumps(out))
    """)
    assert r[0] == ["mypack", str(mypack), 0]
    assert r[1] == ["mypack", str(mypack), 0]
    assert r[2][0] == "PackError" and "nowhere" in r[2][1]


def test_load_by_name_via_vt_ops_path(mypack, tmp_path):
    env = pt.clean_env(VT_OPS_PATH=os.pathsep.join([str(tmp_path / "empty"), str(mypack.parent)]),
                       XDG_DATA_HOME=tmp_path / "xdg")
    r = pt.result("""
        avail = [str(f) for f in vt.ops.available()]
        p = vt.ops.load('mypack')
        print(json.dumps([avail, str(p.path), [q.name for q in vt.ops.providers('core::add') if q.active]]))
    """, env=env)
    avail, path, active = r
    assert str(mypack) in avail
    assert path == str(mypack)
    assert active == ["mine"]
    # VT_OPS_PATH may also name the pack folder itself
    r = pt.result("print(json.dumps(str(vt.ops.load('mypack').path)))",
                  env=pt.clean_env(VT_OPS_PATH=mypack, XDG_DATA_HOME=tmp_path / "xdg"))
    assert r == str(mypack)


def test_load_by_name_from_user_folder(mypack, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "vibetensor" / "packs").mkdir(parents=True)
    dest = pt.copy_pack(mypack, xdg / "vibetensor" / "packs" / "mypack")
    # a folder called mypack in the working directory (the source folder `vt-ops new` makes) does
    # not hide the pack of that name
    (tmp_path / "cwd" / "mypack").mkdir(parents=True)
    r = pt.result("""
        p = vt.ops.load('mypack')
        print(json.dumps([str(vt.ops.user_dir()), str(p.path), vt.ops.mypack.calls()]))
    """, env=pt.clean_env(XDG_DATA_HOME=xdg), cwd=tmp_path / "cwd")
    assert r == [str(xdg / "vibetensor" / "packs"), str(dest), 0]


def test_unknown_name_refused(tmp_path):
    r = pt.result("print(json.dumps(raises(vt.ops.load, 'mypack')))",
                  env=pt.clean_env(XDG_DATA_HOME=tmp_path))
    assert r[0] == "PackError"
    assert "no op pack named" in r[1] and "mypack" in r[1] and "VT_OPS_PATH" in r[1]


# ---- refusals: nothing of a refused pack may be opened -------------------------------------------

def _refused(folder: Path, env=None):
    """Loads folder in a child; returns (exception, library mapped?, providers of core::add)."""
    return pt.result(f"""
        lib = os.path.join({str(folder)!r}, 'libvt_mypack.so')
        err = raises(vt.ops.load, {str(folder)!r})
        provs = [q.name for q in vt.ops.providers('core::add')]
        print(json.dumps([err, mapped(lib), provs, [q.name for q in vt.ops.packs()], still_computes()]))
    """, env=env)


def _assert_refused(r, *needles):
    err, is_mapped, provs, packs, ok = r
    assert err[0] == "PackError", err
    for n in needles:
        assert n in err[1], (n, err[1])
    assert not is_mapped
    assert provs == ["core"] and packs == ["core"]
    assert ok


def test_world_writable_directory_refused(mypack, tmp_path):
    folder = pt.copy_pack(mypack, tmp_path / "ww")
    os.chmod(folder, 0o777)
    _assert_refused(_refused(folder), "world-writable", "directory", str(folder))


def test_world_writable_library_refused(mypack, tmp_path):
    folder = pt.copy_pack(mypack, tmp_path / "wwlib")
    os.chmod(folder / "libvt_mypack.so", 0o666)
    _assert_refused(_refused(folder), "world-writable", "libvt_mypack.so")


def test_changed_library_refused(mypack, tmp_path):
    folder = pt.copy_pack(mypack, tmp_path / "changed")
    with open(folder / "libvt_mypack.so", "ab") as f:
        f.write(b"\0tampered")
    _assert_refused(_refused(folder), "sha256", pt.sha256(folder / "libvt_mypack.so"))


def test_manifest_hash_mismatch_refused(mypack, tmp_path):
    folder = pt.copy_pack(mypack, tmp_path / "badhash")
    man = json.loads((folder / "manifest.json").read_text())
    man["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(man))
    _assert_refused(_refused(folder), "sha256", "0" * 64)


def test_symlinked_library_refused(mypack, tmp_path):
    real = pt.copy_pack(mypack, tmp_path / "real")
    folder = tmp_path / "linked"
    folder.mkdir()
    shutil.copy(real / "manifest.json", folder / "manifest.json")
    os.symlink(real / "libvt_mypack.so", folder / "libvt_mypack.so")
    err, is_mapped, provs, packs, ok = _refused(folder)
    assert err[0] == "PackError" and "symbolic link" in err[1]
    assert not is_mapped and provs == ["core"] and ok


@pytest.mark.parametrize("library", ["../real/libvt_mypack.so", "/etc/passwd"])
def test_library_outside_pack_folder_refused(mypack, tmp_path, library):
    pt.copy_pack(mypack, tmp_path / "real")
    folder = pt.copy_pack(mypack, tmp_path / "escape")
    man = json.loads((folder / "manifest.json").read_text())
    man["library"] = library
    (folder / "manifest.json").write_text(json.dumps(man))
    _assert_refused(_refused(folder), "'library' must be a file name")


def test_missing_library_and_bad_manifest_refused(mypack, tmp_path):
    nolib = pt.copy_pack(mypack, tmp_path / "nolib")
    (nolib / "libvt_mypack.so").unlink()
    _assert_refused(_refused(nolib), "does not exist")
    broken = pt.copy_pack(mypack, tmp_path / "broken")
    (broken / "manifest.json").write_text("{not json")
    _assert_refused(_refused(broken), "unreadable manifest")
    lacking = pt.copy_pack(mypack, tmp_path / "lacking")
    man = json.loads((lacking / "manifest.json").read_text())
    del man["sha256"]
    (lacking / "manifest.json").write_text(json.dumps(man))
    _assert_refused(_refused(lacking), "lacks sha256")
    for i, text in enumerate(["42", '["name", "version", "abi", "library", "sha256"]']):
        odd = pt.copy_pack(mypack, tmp_path / f"odd{i}")
        (odd / "manifest.json").write_text(text)
        _assert_refused(_refused(odd), "must be a JSON object")
    badname = pt.copy_pack(mypack, tmp_path / "badname")
    man = json.loads((badname / "manifest.json").read_text())
    man["name"] = 5
    (badname / "manifest.json").write_text(json.dumps(man))
    _assert_refused(_refused(badname), "name must be")


def test_malformed_pack_on_search_path_does_not_hide_others(mypack, tmp_path):
    """A broken manifest on VT_OPS_PATH is skipped when looking a pack up by name."""
    root = tmp_path / "path"
    (root / "aaa_broken").mkdir(parents=True)
    (root / "aaa_broken" / "manifest.json").write_text("42")
    pt.copy_pack(mypack, root / "mypack")
    r = pt.result("print(json.dumps(str(vt.ops.load('mypack').path)))",
                  env=pt.clean_env(VT_OPS_PATH=root, XDG_DATA_HOME=tmp_path / "xdg"))
    assert r == str(root / "mypack")


def test_provider_pack_needs_the_defining_pack(mypack):
    """mypack provides core::add: without core loaded it is refused (and rolled back), with core
    loaded again it loads."""
    r = pt.result(f"""
        vt.ops.unload('core')
        err = raises(vt.ops.load, {str(mypack)!r})
        left = [vt.ops.op_names(), [q.name for q in vt.ops.packs()]]
        vt.ops.load('core')
        p = vt.ops.load({str(mypack)!r})
        active = [q.name for q in vt.ops.providers('core::add') if q.active]
        print(json.dumps([err, left, active, (vt.ones(2) + vt.ones(2)).numpy().tolist(),
                          vt.ops.mypack.calls()]))
    """)
    err, left, active, s, calls = r
    assert err[0] == "PackError" and "core::add" in err[1] and "rolled back" in err[1]
    assert left == [[], []]
    assert active == ["mine"] and s == [2.0, 2.0] and calls == 1


# ---- unload while the pack is in use ------------------------------------------------------------

def test_load_unload_while_other_threads_compute(mypack):
    """Two threads keep adding while the main thread loads and unloads the pack 100 times: every
    result is right whichever provider served it, nothing raises, and at the end the library is
    closed. Tensors a pack's kernel made outlive the pack."""
    r = pt.result(f"""
        import threading
        stop, bad, errs, n = [False], [], [], [0]
        def worker():
            a, b = vt.ones(1000), vt.full([1000], 2.0)
            while not stop[0]:
                try:
                    if not ((a + b).numpy() == 3.0).all():
                        bad.append(1)
                except Exception as e:
                    errs.append(repr(e))
                n[0] += 1
        ts = [threading.Thread(target=worker) for _ in range(2)]
        for t in ts:
            t.start()
        made, served = [], []
        for i in range(100):
            p = vt.ops.load({str(mypack)!r})
            c0 = vt.ops.mypack.calls()
            made.append(vt.ones(3) + vt.ones(3))        # served by the pack's kernel ...
            served.append(vt.ops.mypack.calls() > c0)   # ... as its call counter shows
            vt.ops.unload(p)
        stop[0] = True
        for t in ts:
            t.join()
        print(json.dumps([n[0], len(bad), errs[:3], vt.ops.is_mapped(p), mapped(p.library),
                          [m.numpy().tolist() for m in made[::33]], all(served)]))
    """)
    n, nbad, errs, is_mapped, in_maps, made, served = r
    assert n > 0 and nbad == 0 and errs == []
    assert served, "the pack's provider did not serve the adds made while it was loaded"
    assert not is_mapped and not in_maps
    assert made == [[2.0, 2.0, 2.0]] * 4


def test_unload_during_a_running_kernel_keeps_the_library_mapped(mypack):
    """A long add runs on the pack's kernel in a thread while the main thread unloads the pack: the
    library stays mapped until the kernel returns (then it is closed), and the result is right.
    The unload must land while the kernel runs; three tries make a slow scheduler harmless."""
    r = pt.result(f"""
        import threading, time
        a = vt.ones(25_000_000)
        tries = []
        for attempt in range(3):
            p = vt.ops.load({str(mypack)!r})
            res = {{}}
            th = threading.Thread(target=lambda: res.setdefault('r', a + a))
            th.start()
            time.sleep(0.02)
            vt.ops.unload(p)
            during = vt.ops.is_mapped(p)
            th.join()
            r = res['r'].numpy()
            tries.append([during, vt.ops.is_mapped(p), float(r.min()), float(r.max())])
            if during:
                break
        print(json.dumps(tries))
    """)
    assert any(t[0] for t in r), f"never caught the kernel in flight: {r}"
    for during, after, lo, hi in r:
        assert after is False and lo == hi == 2.0
