"""Hot reload: vt.ops.reload(pack) rebuilds a pack whose source folder is known, swaps its library
under the same name, keeps what the old code made (and the old code itself) alive, refuses to
swap in a library that does not load (the old one keeps serving), and survives calls from other
threads during the swap. On cpu, with tests/packs/reload (rl::scale(x) = SCALE * x) built twice."""
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

import vibetensor as vt
from vibetensor.registry import reload as R

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

SOURCE = pt.HERE / "reload" / "rl.c"


def variant(dest: Path, scale: str = "2.0f", init_fails: int = 0, schema: str = "") -> Path:
    """rl.c with another SCALE / INIT_FAILS / schema of rl::scale, written to dest."""
    text = SOURCE.read_text().replace("#define SCALE 2.0f", f"#define SCALE {scale}")
    text = text.replace("#define INIT_FAILS 0", f"#define INIT_FAILS {init_fails}")
    if schema:
        text = text.replace("rl::scale(Tensor x) -> Tensor", schema)
    dest.write_text(text)
    return dest


def compiled(work: Path, **kw) -> Path:
    """(Re)compile a variant into work/rl with its manifest, as a build would."""
    return pt.compile_raw(variant(work / "rl.c", **kw), work / "rl", "rl", abi=(1, 1),
                          kernels=[{"op": "rl::scale", "device": "cpu", "provider": "rl", "priority": 0}],
                          ops=["rl::scale"])


def mapped_inodes():
    with open("/proc/self/maps") as f:
        return {int(line.split()[4]) for line in f if len(line.split()) > 5}


def scale(x):
    return vt.ops.rl.scale(x).numpy().tolist()


@pytest.fixture
def work(tmp_path):
    yield tmp_path
    if vt.ops.get("rl") is not None:
        vt.ops.unload("rl")


def test_reload_swaps_the_code_and_keeps_the_old_alive(work):
    pack = vt.ops.load(compiled(work))
    x = vt.tensor([1.0, 2.0])
    before = vt.ops.rl.scale(x)
    assert scale(x) == [2.0, 4.0]
    old_inode = pack.library_id[1]
    compiled(work, scale="3.0f")  # the compiler writes a new file, as linkers do
    new = vt.ops.reload("rl", rebuild=False)
    assert new is not pack and not pack.loaded and vt.ops.get("rl") is new
    assert scale(x) == [3.0, 6.0]
    assert before.numpy().tolist() == [2.0, 4.0]        # what the old code made stays valid
    assert old_inode in mapped_inodes()                   # and the old code stays mapped
    assert new.library_id != pack.library_id
    assert vt.ops.reload(new, rebuild=False) is new       # the same library again: no swap
    with pytest.raises(ValueError, match="stale"):
        vt.ops.reload(pack)


def test_a_library_that_fails_to_initialise_leaves_the_old_code_serving(work):
    vt.ops.load(compiled(work))
    compiled(work, init_fails=1)
    with pytest.raises(vt.ops.PackError, match="rl: this build refuses to initialise"):
        vt.ops.reload("rl", rebuild=False)
    assert vt.ops.get("rl").loaded and scale(vt.tensor([1.5])) == [3.0]


def test_a_tampered_library_is_refused_before_the_swap(work):
    pack = vt.ops.load(compiled(work))
    lib = work / "rl" / "libvt_rl.so"
    compiled(work, scale="5.0f")
    data = lib.read_bytes()
    lib.unlink()
    lib.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # not what the manifest hashes
    with pytest.raises(vt.ops.PackError, match="the library changed after it was built"):
        vt.ops.reload("rl", rebuild=False)
    assert vt.ops.get("rl") is pack and scale(vt.tensor([1.0])) == [2.0]


def test_a_library_rewritten_in_place_is_refused(work):
    """The file the process runs, changed without being replaced (same inode): swapping would map
    the changed file's pages under the old code; the reload says to restart instead."""
    pack = vt.ops.load(compiled(work))
    lib = work / "rl" / "libvt_rl.so"
    with open(lib, "ab") as f:  # past the end: the mapped pages stay as they were
        f.write(b"\0" * 64)
    pt.write_manifest(work / "rl", "rl", lib, abi=(1, 1), ops=["rl::scale"],
                      kernels=[{"op": "rl::scale", "device": "cpu", "provider": "rl", "priority": 0}])
    with pytest.raises(vt.ops.PackError, match="was rewritten in place.*restart the process"):
        vt.ops.reload("rl", rebuild=False)
    assert vt.ops.get("rl") is pack and scale(vt.tensor([1.0])) == [2.0]


def test_a_version_that_a_dependent_pack_refuses_is_not_swapped_in(work):
    pack = vt.ops.load(compiled(work))
    dependent = pt.compile_raw(pt.HERE / "caps" / "caps_pack.c", work / "caps", "caps", abi=(1, 1),
                               kernels=[{"op": "caps::twice", "device": "cpu", "provider": "plain",
                                         "priority": 0}],
                               capabilities={"requires": {"rl": ">=0.1,<1"}})
    caps = vt.ops.load(dependent)
    try:
        compiled(work, scale="3.0f")
        m = work / "rl" / "manifest.json"
        m.write_text(m.read_text().replace('"version": "0.1.0"', '"version": "1.0.0"'))
        with pytest.raises(vt.ops.PackError, match=r"pack 'caps' requires pack 'rl' >=0.1,<1; the new "
                                                   r"build is version 1.0.0, so the loaded one stays"):
            vt.ops.reload("rl", rebuild=False)
        assert vt.ops.get("rl") is pack and scale(vt.tensor([1.0])) == [2.0]
    finally:
        vt.ops.unload(caps)


def test_calls_on_other_threads_during_the_swap_never_fail(work):
    """The swap is atomic for callers: while one thread reloads the pack RELOADS times (cycling
    through BUILDS builds, each a different SCALE), two threads calling rl::scale in a loop never
    see an error, and each result is what the build loaded before the call, or one loaded while
    it ran, computes. (The unload-then-load swap this replaced failed this test in 5 runs of 6.)"""
    reloads, nbuilds = 40, 4
    builds = []  # (pack folder, SCALE): compiled up front, so the reload loop is all swaps
    for k in range(nbuilds):
        (work / f"b{k}").mkdir()
        builds.append((compiled(work / f"b{k}", scale=f"{k + 2}.0f"), float(k + 2)))
    rl = work / "rl"

    def install(k):  # new files (new inodes), as a build writes them
        shutil.rmtree(rl, ignore_errors=True)
        shutil.copytree(builds[k % nbuilds][0], rl)

    install(0)
    vt.ops.load(rl)
    x = vt.tensor([1.0])
    loaded = [0]  # index of the build loaded now: moved on only once a reload returned
    stop = threading.Event()
    results, errors, calls = [], [], [0, 0]

    def caller(i):
        op = vt.ops.rl.scale
        while not stop.is_set():
            before = loaded[0]
            try:
                got = scale(x)[0] if i == 0 else op(x).numpy().tolist()[0]
            except Exception as e:  # noqa: BLE001 - any failure is the bug this test looks for
                errors.append(repr(e))
                continue
            results.append((before, loaded[0], got))
            calls[i] += 1

    def some_calls():  # so every build serves calls
        target = calls[0] + calls[1] + 20
        while calls[0] + calls[1] < target and not errors:
            time.sleep(0.001)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for k in range(1, reloads + 1):
            install(k)
            some_calls()
            vt.ops.reload("rl", rebuild=False)
            loaded[0] = k
        some_calls()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [], errors[:3]
    assert min(calls) > reloads  # both threads kept calling through the swaps
    # a call that started with build `a` loaded and ended with build `b` loaded ran a or the next
    # one up to b (a reload may have begun before `loaded` moved): never anything else
    wrong = [(a, b, got) for a, b, got in results
             if got not in {builds[j % nbuilds][1] for j in range(a, min(b + 1, reloads) + 1)}]
    assert wrong == [], wrong[:5]
    assert {got for _, _, got in results} == {v for _, v in builds}
    assert scale(x) == [builds[reloads % nbuilds][1]]


def test_an_op_defined_again_keeps_its_handle_and_pin_and_a_new_schema_is_a_new_op(work):
    from vibetensor.runtime import lib

    vt.ops.load(compiled(work))
    h = lib.vtrt_find_op(b"rl::scale")
    vt.ops.use("rl::scale", "rl")
    compiled(work, scale="3.0f")
    vt.ops.reload("rl", rebuild=False)
    assert lib.vtrt_find_op(b"rl::scale") == h and lib.vtrt_op_defined(h) == 1
    assert vt.ops.pinned("rl::scale") == "rl" and scale(vt.tensor([1.0])) == [3.0]
    compiled(work, scale="4.0f", schema="rl::scale(Tensor x, float unused=0.0) -> Tensor")
    vt.ops.reload("rl", rebuild=False)
    new = lib.vtrt_find_op(b"rl::scale")
    assert new != h and lib.vtrt_op_defined(h) == 0  # the old handle reports its op unloaded
    assert vt.ops.rl.scale.schema == "rl::scale(Tensor x, float unused=0.0) -> Tensor"
    assert scale(vt.tensor([1.0])) == [4.0] and vt.ops.pinned("rl::scale") is None


def test_a_build_whose_ops_differ_from_its_manifest_is_refused_before_the_swap(work):
    pack = vt.ops.load(compiled(work))
    compiled(work, scale="3.0f")
    lib = work / "rl" / "libvt_rl.so"
    pt.write_manifest(work / "rl", "rl", lib, abi=(1, 1), ops=["rl::scale", "rl::gone"],
                      kernels=[{"op": "rl::scale", "device": "cpu", "provider": "rl", "priority": 0}])
    with pytest.raises(vt.ops.PackError, match=r"listed but not defined: \['rl::gone'\].*the loaded "
                                               r"pack is unchanged"):
        vt.ops.reload("rl", rebuild=False)
    assert vt.ops.get("rl") is pack and pack.loaded and scale(vt.tensor([1.0])) == [2.0]


def test_reload_rebuilds_from_the_source_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(pt.HERE / "reload" / "CMakeLists.txt", src / "CMakeLists.txt")
    variant(src / "rl.c")
    folder = pt.build(src, tmp_path / "build", "rl")
    pack = vt.ops.load(folder)
    try:
        assert R.source_of(pack) == src.resolve() and scale(vt.tensor([1.0])) == [2.0]
        variant(src / "rl.c", scale="7.0f")
        pack = vt.ops.reload("rl")
        assert scale(vt.tensor([1.0])) == [7.0]
        (src / "rl.c").write_text((src / "rl.c").read_text().replace("SCALE *", "SCALE * undefined_name *"))
        with pytest.raises(vt.ops.PackError, match="failed; the loaded pack is unchanged"):
            vt.ops.reload("rl")
        assert vt.ops.get("rl") is pack and scale(vt.tensor([1.0])) == [7.0]
    finally:
        vt.ops.unload("rl")


def test_a_library_mapped_twice_keeps_its_name_while_mapped(tmp_path):
    """Core unloaded while an autograd graph still uses it, loaded again (the same file: one
    mapping, two descriptors naming it), then the graph freed: the first descriptor must stay open
    while the library is mapped, or the next pack opened as that number would be handed core's
    library by dlopen's by-name lookup. In a child process: it unloads core."""
    folder = compiled(tmp_path)
    out = pt.result(f"""
        import os
        from vibetensor.runtime import ffi, lib
        core_path = vt.ops.get('core').path
        def fds():
            return set(int(n) for n in os.listdir('/proc/self/fd'))
        x = vt.ones(3)
        x.requires_grad_(True)
        y = x * 2.0                        # the graph holds core's backward rule, so core stays mapped
        vt.ops.unload('core')
        vt.ops.load(core_path)             # the same file again: a second descriptor names it
        libfd = os.open({str(folder / 'libvt_rl.so')!r}, os.O_RDONLY)  # before: not the freed number
        pre = fds()
        del y                              # the first load's last reference goes
        freed = sorted(pre - fds())        # a descriptor closed while its name still maps core
        fillers = []
        while freed:                       # take every lower number, so the next one is the freed one
            d = os.open('/dev/null', os.O_RDONLY)
            if d >= freed[0]:
                os.close(d)
                break
            fillers.append(d)
        # whatever descriptor the runtime takes next is the lowest free one
        h = lib.vtrt_pack_load_fd(libfd, {str(folder / 'libvt_rl.so')!r}.encode(), b'rl')
        ok = h != ffi.NULL
        err = '' if ok else ffi.string(lib.vtrt_last_error()).decode()
        res = vt.ops.rl.scale(vt.tensor([1.0])).numpy().tolist() if ok else None
        print(json.dumps({{'ok': ok, 'err': err, 'res': res, 'freed': freed}}))
    """)
    assert out == {"ok": True, "err": "", "res": [2.0], "freed": []}, out


def test_build_watch_rebuilds_on_an_edit_and_reload_picks_it_up(tmp_path):
    import queue
    import signal
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(pt.HERE / "reload" / "CMakeLists.txt", src / "CMakeLists.txt")
    variant(src / "rl.c")
    # SIGINT stands for Ctrl-C below. A job started with & by a shell without job control (a CI
    # script run in the background) inherits SIGINT ignored, and so would the watcher: Python then
    # installs no KeyboardInterrupt handler and the watcher never stops. Its default is restored.
    proc = subprocess.Popen([sys.executable, "-m", "vibetensor.cli", "build", str(src), "-o",
                             str(tmp_path / "build"), "--watch"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=pt.clean_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()

    def until(text):
        got = []
        while True:
            line = lines.get(timeout=120)
            got.append(line)
            if text in line:
                return "".join(got)

    try:
        until("watching")
        vt.ops.load(tmp_path / "build" / "packs" / "rl")
        assert scale(vt.tensor([1.0])) == [2.0]
        variant(src / "rl.c", scale="9.0f")
        out = until("watching")
        assert "changed: rl.c" in out and "built in" in out
        vt.ops.reload("rl", rebuild=False)
        assert scale(vt.tensor([1.0])) == [9.0]
        (src / "rl.c").write_text("this is not C\n")  # a broken edit: reported, and it keeps watching
        out = until("watching")
        assert "error: build failed" in out and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        finally:  # never leave "rl" loaded for the next test, whatever failed above
            if vt.ops.get("rl") is not None:
                vt.ops.unload("rl")
