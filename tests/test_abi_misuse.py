"""Op packs that break the ABI's rules, built in the tests (sources: tests/packs/misuse/ and
tests/packs/misbehave/). Each must give a Python exception with a clear message, leave nothing of
itself registered, and leave the process computing.

Packs whose init is meant to fail (or that lack the init symbol, or claim another ABI) cannot go
through `vt-ops build`: its describe step runs init and stops the build — which is tested too
(test_build_reports_...). They are compiled with the system compiler instead and get a hand-written
manifest with the library's true sha256, so the *runtime's* refusal is what is tested.

Every load happens in a child interpreter (packtools.run_py).
"""
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

MISUSE = pt.HERE / "misuse"

# pack name -> source in tests/packs/misuse
RAW = {
    "abimajor": "abi_major.c",
    "abiminor": "abi_minor.c",
    "noinit": "no_init.c",
    "failinit": "fail_init.c",
    "throwinit": "throw_init.cpp",
    "dupdef": "dup_def.c",
    "dupself": "dup_self.c",
    "dupignored": "dup_ignored.c",
    "schemaprobe": "schema_probe.c",
}


@pytest.fixture(scope="session")
def raw(tmp_path_factory):
    """name -> folder of the hand-compiled pack (manifest says ABI 1.0, true sha256)."""
    def make():
        root = tmp_path_factory.mktemp("misuse")
        # schemaprobe's schema comes from the environment: the tests define schemaprobe::op
        extra = {"schemaprobe": {"ops": ["schemaprobe::op"]}}
        return {name: pt.compile_raw(MISUSE / src, root / name, name, **extra.get(name, {}))
                for name, src in RAW.items()}
    return pt.once("misuse_raw", make)


@pytest.fixture(scope="session")
def misbehave(tmp_path_factory):
    return pt.once("misbehave", lambda: pt.build(pt.HERE / "misbehave",
                                                 tmp_path_factory.mktemp("misbehave_build"), "misbehave"))


def load_in_child(folder: Path, times: int = 1, env=None):
    """Loads folder (times times) in a child; reports each outcome and the state afterwards."""
    r = pt.result(f"""
        folder = {str(folder)!r}
        man = json.load(open(os.path.join(folder, 'manifest.json')))
        lib = os.path.join(folder, man['library'])
        before = [(q.name, q.priority) for q in vt.ops.providers('core::add')]
        schema = repr(vt.ops.core.add)
        errs = [raises(vt.ops.load, folder) for _ in range({times})]
        out = {{
            'errors': errs,
            'mapped': mapped(lib),
            'ops': sorted(o for o in vt.ops.op_names() if not o.startswith('core::')),
            'packs': [q.name for q in vt.ops.packs()],
            'providers_same': [(q.name, q.priority) for q in vt.ops.providers('core::add')] == before,
            'schema_same': repr(vt.ops.core.add) == schema,
            'alpha': vt.ops.core.add(vt.ones(2), vt.ones(2), alpha=3.0).numpy().tolist(),
            'ok': still_computes(),
        }}
        print(json.dumps(out))
    """, env=env)
    return r


def assert_clean_refusal(r, *needles):
    """Refused with a PackError (an ImportError) naming the problem; nothing of it is left."""
    for err in r["errors"]:
        assert err[0] == "PackError", err
        for n in needles:
            assert n in err[1], (n, err[1])
    assert not r["mapped"], "a refused pack's library is still mapped"
    assert r["ops"] == [], f"ops of a refused pack are visible: {r['ops']}"
    assert r["packs"] == ["core"]
    assert r["providers_same"] and r["schema_same"]
    assert r["alpha"] == [4.0, 4.0]
    assert r["ok"]


def test_packerror_is_an_importerror():
    from vibetensor.ops import PackError
    assert issubclass(PackError, ImportError)


# ---- ABI versions -------------------------------------------------------------------------------

def test_wrong_abi_major_refused_by_runtime(raw):
    """The manifest claims 1.0 but the library says 2.0: the runtime reads the library's
    vt_oppack_abi_version and refuses before calling init."""
    from vibetensor.runtime import lib
    r = load_in_child(raw["abimajor"])
    assert_clean_refusal(r, "abimajor", "ABI 2.0", f"{lib.VT_ABI_MAJOR}.{lib.VT_ABI_MINOR}")
    assert "rebuild" in r["errors"][0][1]


def test_wrong_abi_major_in_manifest_refused_before_dlopen(raw, tmp_path):
    folder = pt.copy_pack(raw["abimajor"], tmp_path / "abimajor")
    pt.write_manifest(folder, "abimajor", folder / "libvt_abimajor.so", abi=(2, 0))
    proc = pt.run_py(f"""
        err = raises(vt.ops.load, {str(folder)!r})
        print(json.dumps([err, still_computes()]))
    """)
    err, ok = json.loads(proc.stdout.splitlines()[-1])
    assert err[0] == "PackError" and "ABI 2.0" in err[1] and "vt-ops build" in err[1]
    assert ok
    # the library's constructor announces every dlopen: refused from the manifest, it never ran
    assert "constructor ran" not in proc.stderr


def test_runtime_refusal_did_dlopen(raw):
    """Counterpart of the test above: the constructor marker does show when the library is opened."""
    proc = pt.run_py(f"raises(vt.ops.load, {str(raw['abimajor'])!r})")
    assert "abimajor: library constructor ran" in proc.stderr


def test_newer_abi_minor_refused(raw):
    from vibetensor.runtime import lib
    r = load_in_child(raw["abiminor"])
    assert_clean_refusal(r, "abiminor", f"ABI {lib.VT_ABI_MAJOR}.{lib.VT_ABI_MINOR + 1}")


# ---- init -----------------------------------------------------------------------------------------

def test_missing_init_symbol_refused(raw):
    r = load_in_child(raw["noinit"])
    assert_clean_refusal(r, "noinit", "vt_oppack_init", "not a vibetensor op pack")


def test_not_a_shared_library_refused(tmp_path):
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "libvt_garbage.so").write_bytes(b"this is not an ELF file\n" * 10)
    pt.write_manifest(folder, "garbage", folder / "libvt_garbage.so")
    r = load_in_child(folder)
    assert_clean_refusal(r, "garbage", "cannot load")


def test_failing_init_rolls_back(raw):
    """init defines failinit::ghost (with kernel and backward rule) and a priority-100 provider of
    core::add, then fails: all of it is rolled back; a second try fails the same way (nothing
    half-registered makes it 'already loaded' or 'already defined')."""
    r = load_in_child(raw["failinit"], times=2)
    assert_clean_refusal(r, "failinit", "failed to initialise",
                         "failinit: deliberately failing after 4 registrations", "rolled back")
    assert r["errors"][0] == r["errors"][1]


def test_failing_init_namespace_invisible(raw):
    r = pt.result(f"""
        err = raises(vt.ops.load, {str(raw['failinit'])!r})
        print(json.dumps([err[0], raises(getattr, vt.ops, 'failinit'),
                          raises(vt.ops.providers, 'failinit::ghost'),
                          [q.name for q in vt.ops.providers('core::add')]]))
    """)
    err, ns, prov, add = r
    assert err == "PackError"
    assert ns[0] == "AttributeError" and "failinit" in ns[1]
    assert prov[0] == "AttributeError" and "failinit::ghost" in prov[1]
    assert add == ["core"]


def test_exception_escaping_init_rolls_back(raw):
    r = load_in_child(raw["throwinit"])
    assert_clean_refusal(r, "throwinit", "exception escaped vt_oppack_init", "rolled back")


# ---- duplicate definitions ------------------------------------------------------------------------

def test_duplicate_definition_of_core_add_refused(raw):
    r = load_in_child(raw["dupdef"])
    assert_clean_refusal(r, "dupdef", "core::add", "already defined", "rolled back")


def test_duplicate_definition_within_one_pack_refused(raw):
    r = load_in_child(raw["dupself"])
    assert_clean_refusal(r, "dupself", "dupself::op", "already defined")


def test_ignored_duplicate_definition_leaves_core_add_alone(raw):
    """The pack ignores define_op's refusal and returns OK. Whether the host then loads it or not,
    core::add must keep core's schema and only core's kernel."""
    r = load_in_child(raw["dupignored"])
    assert r["providers_same"] and r["schema_same"]
    assert r["alpha"] == [4.0, 4.0] and r["ok"]
    if r["errors"][0][0]:
        assert r["errors"][0][0] == "PackError" and r["ops"] == []
    else:
        assert r["ops"] == ["dupignored::ok"] and "dupignored" in r["packs"]


# ---- kernels that fail ------------------------------------------------------------------------------

# op -> (exception class, substrings of the message)
KERNEL_FAILURES = {
    "status_nomsg": ("RuntimeError", ["[misbehave::status_nomsg]", "without a message"]),
    "status_msg": ("ValueError", ["[misbehave::status_msg] deliberate failure, code 42"]),
    "status_unprefixed": ("TypeError", ["[misbehave::status_unprefixed]", "message without the op prefix"]),
    "throws": ("RuntimeError", ["[misbehave::throws] kaboom from C++, value 7"]),
    "throws_vt": ("IndexError", ["[misbehave::throws_vt] index 99 is out of range"]),
    "throws_after_out": ("RuntimeError", ["[misbehave::throws_after_out] thrown after the output was stored"]),
    "throws_guarded": ("RuntimeError", ["[misbehave::throws_guarded] guarded throw"]),
    "throws_bad_alloc": ("MemoryError", ["[misbehave::throws_bad_alloc]", "bad_alloc"]),
    "no_output": ("RuntimeError", ["[misbehave::no_output]", "output 0"]),
}


@pytest.fixture(scope="session")
def kernel_outcomes(misbehave):
    """Calls every failing kernel once in one child (status_nomsg first, while no earlier error is
    set); records the exception and whether the process still computes after each."""
    def make():
        return pt.result(f"""
            vt.ops.load({str(misbehave)!r})
            x = vt.tensor([1.0, 2.0, 3.0])
            out = {{}}
            for name in {list(KERNEL_FAILURES)!r}:
                op = getattr(vt.ops.misbehave, name)
                out[name] = [raises(op, x), still_computes(), vt.ops.misbehave.ok(x).numpy().tolist()]
            print(json.dumps(out))
        """)
    return pt.once("kernel_outcomes", make)


@pytest.mark.parametrize("name", list(KERNEL_FAILURES))
def test_failing_kernel_raises_and_process_survives(kernel_outcomes, name):
    (cls, msg), ok, copied = kernel_outcomes[name]
    want_cls, needles = KERNEL_FAILURES[name]
    assert cls == want_cls, (cls, msg)
    for n in needles:
        assert n in msg, (n, msg)
    assert ok
    assert copied == [1.0, 2.0, 3.0]


def test_failing_kernels_release_their_outputs(misbehave):
    """throws_after_out stores an output and then throws: the boundary must release it. Allocator
    stats return to where they were after many failing calls."""
    r = pt.result(f"""
        vt.ops.load({str(misbehave)!r})
        x = vt.ones(1024)
        op = vt.ops.misbehave.throws_after_out
        raises(op, x)
        before = vt.memory_stats()['allocated']
        for _ in range(200):
            raises(op, x)
        after = vt.memory_stats()['allocated']
        print(json.dumps([before, after]))
    """)
    assert r[0] == r[1]


def test_kernel_error_without_message_not_blamed_on_earlier_error(misbehave):
    """A kernel that fails without a message after an earlier, unrelated failure on the same thread
    is reported under its own name and status, not with the stale message (the runtime clears the
    thread's error before each kernel)."""
    r = pt.result(f"""
        vt.ops.load({str(misbehave)!r})
        earlier = raises(lambda: vt.ones(3) + vt.ones(4))
        now = raises(vt.ops.misbehave.status_nomsg, vt.ones(3))
        print(json.dumps([earlier, now]))
    """)
    earlier, now = r
    assert earlier[0] == "ValueError" and "[core::add]" in earlier[1]
    assert now[0] == "RuntimeError"
    assert "[misbehave::status_nomsg]" in now[1] and "core::add" not in now[1]


def test_pack_still_unloads_after_failures(misbehave):
    r = pt.result(f"""
        p = vt.ops.load({str(misbehave)!r})
        lib = p.library
        for name in ['throws', 'status_msg', 'no_output']:
            raises(getattr(vt.ops.misbehave, name), vt.ones(2))
        vt.ops.unload(p)
        print(json.dumps([mapped(lib), [q.name for q in vt.ops.packs()], still_computes()]))
    """)
    assert r == [False, ["core"], True]


# ---- the build step reports a broken pack ---------------------------------------------------------

BUILD_FAILURES = {
    "failinit": ("fail_init.c", ["vt_oppack_init", "failed", "failinit: deliberately failing after 4 registrations"]),
    "noinit": ("no_init.c", ["does not export 'vt_oppack_init'", "VT_OPPACK_DEFINE"]),
    "abimajor": ("abi_major.c", ["ABI 2.0", "majors must match"]),
}


@pytest.mark.parametrize("name", list(BUILD_FAILURES))
def test_build_reports_broken_pack(tmp_path, name):
    src, needles = BUILD_FAILURES[name]
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(MISUSE / src, source / src)
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\n"
        f"project({name} LANGUAGES C CXX)\n"
        "find_package(VibeTensor REQUIRED)\n"
        f"vt_add_oppack(NAME {name} VERSION 0.1.0 SOURCES {src})\n")
    proc = pt.vt_ops("build", source, "-o", tmp_path / "build", check=False)
    out = proc.stdout
    assert proc.returncode != 0, out
    for n in needles:
        assert n in out, (n, out)
    assert "build failed" in out and "manifest.json" in out
    assert "Traceback" not in out
    assert not (tmp_path / "build" / "packs" / name / "manifest.json").exists()


# ---- schemas a pack defines ---------------------------------------------------------------------

# schema -> a fragment of the runtime's refusal
BAD_SCHEMAS = {
    "": "op name must be 'namespace::name'",
    "noname(Tensor x) -> Tensor": "op name must be 'namespace::name'",
    "a::b::c(Tensor x) -> Tensor": "op name must be 'namespace::name'",
    "schemaprobe::(Tensor x) -> Tensor": "op name must be 'namespace::name'",
    "schemaprobe::op": "expected '('",
    "schemaprobe::op(Tensor x": "expected ',' or ')'",
    "schemaprobe::op(Tensor x) Tensor": "expected '->'",
    "schemaprobe::op(Tensor x) ->": "unknown type",
    "schemaprobe::op(Blob x) -> Tensor": "unknown type 'Blob'",
    "schemaprobe::op(Tensor x) -> Blob": "unknown type 'Blob'",
    "schemaprobe::op(Tensor) -> Tensor": "expected an argument name",
    "schemaprobe::op(Tensor x, Tensor x) -> Tensor": "duplicate argument 'x'",
    "schemaprobe::op(float alpha=abc) -> Tensor": "bad number default for 'alpha'",
    "schemaprobe::op(bool b=maybe) -> Tensor": "bool default must be True or False",
    "schemaprobe::op(Tensor x=None) -> Tensor": "default None for non-optional argument 'x'",
    "schemaprobe::op(int a=1, int b) -> Tensor": "argument 'b' without default follows",
    "schemaprobe::op(Tensor x) -> (Tensor, Tensor) junk": "trailing text",
    # an int default must be an int64 (the C default and Python's default must agree)
    "schemaprobe::op(Tensor x, int a=1.5) -> Tensor": "bad int default for 'a'",
    "schemaprobe::op(Tensor x, int a=99999999999999999999) -> Tensor": "bad int default for 'a'",
    "schemaprobe::op(int[] a=[1, 2.5]) -> Tensor": "bad int in int[] default",
    "schemaprobe::op(*, *, Tensor x) -> Tensor": "a second '*'",
    "schemaprobe::op(" + ", ".join(f"Tensor a{i}" for i in range(70)) + ") -> Tensor": "too many arguments",
}
GOOD_SCHEMAS = [
    "schemaprobe::op(Tensor self, Tensor? other, int i, int? j, float f, float? g, bool b, int[] d, "
    "int[]? e, str s, str? t, ScalarType? dtype, Device? device, *, float alpha=1.0) -> Tensor",
    "schemaprobe::op(Tensor x, int[] dims=[0, 1], bool keepdim=False, str mode='sum') -> (Tensor, Tensor)",
    "schemaprobe::op() -> int",
    "schemaprobe::op(Tensor x) -> Tensor out",      # a named output
    "schemaprobe::op(int a=-3, float b=-2.5e3, int[] c=[-1, 2]) -> Tensor",
]


def _try_schemas(folder, schemas):
    return pt.result(f"""
        out = []
        for s in {schemas!r}:
            os.environ['VT_TEST_SCHEMA'] = s            # the pack's init reads it with getenv
            err = raises(vt.ops.load, {str(folder)!r})
            ops = [o for o in vt.ops.op_names() if not o.startswith('core::')]
            schema = repr(vt.ops.schemaprobe.op) if ops else None
            if not err[0]:
                vt.ops.unload('schemaprobe')
            out.append([err, ops, schema])
        out.append(still_computes())
        print(json.dumps(out))
    """)


@pytest.fixture(scope="session")
def bad_schema_outcomes(raw):
    return pt.once("bad_schemas", lambda: dict(zip(BAD_SCHEMAS, _try_schemas(raw["schemaprobe"], list(BAD_SCHEMAS)))))


@pytest.mark.parametrize("schema", list(BAD_SCHEMAS), ids=range(len(BAD_SCHEMAS)))
def test_bad_schema_refused(bad_schema_outcomes, schema):
    err, ops, _ = bad_schema_outcomes[schema]
    assert err[0] == "PackError", err
    assert "bad op schema" in err[1] and BAD_SCHEMAS[schema] in err[1] and "rolled back" in err[1]
    assert ops == []


def test_good_schemas_accepted(raw):
    r = _try_schemas(raw["schemaprobe"], GOOD_SCHEMAS)
    assert r.pop() is True
    for schema, (err, ops, rep) in zip(GOOD_SCHEMAS, r):
        assert err == ["", ""], (schema, err)
        assert ops == ["schemaprobe::op"] and schema in rep


def test_build_refuses_a_schema_the_runtime_refuses(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(MISUSE / "schema_probe.c", source / "schema_probe.c")
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(sp LANGUAGES C)\n"
        "find_package(VibeTensor REQUIRED)\n"
        "vt_add_oppack(NAME schemaprobe VERSION 0.1.0 SOURCES schema_probe.c)\n")
    proc = pt.vt_ops("build", source, "-o", tmp_path / "build", check=False,
                     env=pt.clean_env(VT_TEST_SCHEMA="schemaprobe::op(Blob x) -> Tensor"))
    assert proc.returncode != 0 and "Blob" in proc.stdout


def test_op_handle_follows_a_redefined_op(raw):
    """An op object kept across unload + load of a pack that now defines the op differently (a
    rebuilt pack, say) describes and calls the new definition."""
    r = pt.result(f"""
        os.environ['VT_TEST_SCHEMA'] = 'schemaprobe::op() -> int'
        vt.ops.load({str(raw['schemaprobe'])!r})
        op = vt.ops.schemaprobe.op
        first = [op.schema, len(op.args)]
        vt.ops.unload('schemaprobe')
        os.environ['VT_TEST_SCHEMA'] = 'schemaprobe::op(Tensor x, *, int k=3) -> Tensor'
        vt.ops.load({str(raw['schemaprobe'])!r})
        second = [op.schema, repr(op), [a.name for a in vt.ops.schemaprobe.op.args]]
        call = raises(op)                       # no kernel was registered: the args check comes first
        print(json.dumps([first, second, call]))
    """)
    first, second, call = r
    assert first == ["schemaprobe::op() -> int", 0]
    assert second[0] == "schemaprobe::op(Tensor x, *, int k=3) -> Tensor"
    assert second[1] == "<op schemaprobe::op(Tensor x, *, int k=3) -> Tensor>"
    assert second[2] == ["x", "k"]
    assert call[0] == "TypeError" and "missing argument 'x'" in call[1]
