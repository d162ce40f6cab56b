"""Signed packs: `vt-ops keygen`, `vt-ops sign PACK --key KEY` (an Ed25519 signature of the
manifest, which holds the library's sha256), and loads that require a trusted signature
(`trusted_keys=` or VT_TRUSTED_KEYS): good, tampered manifest, tampered library, wrong key,
unsigned."""
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("cryptography", reason="signed packs need the optional 'sign' extra")

import vibetensor as vt  # noqa: E402
from vibetensor.cli import main  # noqa: E402
from vibetensor.registry import sign as S  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

KERNELS = [{"op": "caps::twice", "device": "cpu", "provider": "plain", "priority": 0},
           {"op": "caps::twice", "device": "cuda", "provider": "plain", "priority": 0},
           {"op": "caps::twice", "device": "cuda", "provider": "fast", "priority": 10}]


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    code, out = cli("keygen", "-o", d / "me.key", "-C", "me@example")
    assert code == 0 and "me.key.pub" in out, out
    code, out = cli("keygen", "-o", d / "other.key")
    assert code == 0, out
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return pt.compile_raw(pt.HERE / "caps" / "caps_pack.c", tmp_path_factory.mktemp("sig") / "caps",
                          "caps", abi=(1, 1), kernels=KERNELS, devices=["cpu", "cuda"])


@pytest.fixture
def signed(built, keys, tmp_path):
    folder = pt.copy_pack(built, tmp_path / "caps")
    code, out = cli("sign", folder, "--key", keys / "me.key")
    assert code == 0 and "wrote" in out and (folder / "manifest.sig").is_file(), out
    return folder


@pytest.fixture
def unload_after():
    yield
    if vt.ops.get("caps") is not None:
        vt.ops.unload("caps")


def test_keygen_writes_a_private_key_only_its_owner_reads(keys):
    assert os.stat(keys / "me.key").st_mode & 0o077 == 0
    line = (keys / "me.key.pub").read_text().split()
    assert line[0] == "vt-ed25519" and line[2] == "me@example" and len(S.parse_trusted(keys / "me.key.pub")[0]) == 32
    code, out = cli("keygen", "-o", keys / "me.key")
    assert code != 0 and "refusing to overwrite" in out


def test_a_good_signature_loads(signed, keys, unload_after):
    pack = vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])
    assert vt.ops.caps.twice(vt.tensor([1.5])).numpy().tolist() == [3.0]
    assert pack.loaded
    sig = json.loads((signed / "manifest.sig").read_text())
    assert sig["pack"] == "caps" and sig["key_id"] == S.key_id(S.parse_trusted(keys / "me.key.pub")[0])


def test_info_names_the_signer(signed, keys):
    code, out = cli("info", signed)
    key = S.key_id(S.parse_trusted(keys / "me.key.pub")[0])
    assert code == 0 and f"signature: manifest.sig by key {key} (not checked here)" in out, out


def test_trusted_keys_from_the_environment(signed, keys, monkeypatch, unload_after):
    monkeypatch.setenv("VT_TRUSTED_KEYS", os.pathsep.join([str(keys / "other.key.pub"), str(keys / "me.key.pub")]))
    assert vt.ops.load(signed).loaded
    vt.ops.unload("caps")
    monkeypatch.setenv("VT_TRUSTED_KEYS", str(keys / "other.key.pub"))
    with pytest.raises(vt.ops.PackError, match="which is not among the trusted keys"):
        vt.ops.load(signed)


def test_a_tampered_manifest_is_refused(signed, keys):
    man = json.loads((signed / "manifest.json").read_text())
    man["kernels"][0]["priority"] = 99  # say, to take over an op
    (signed / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(vt.ops.PackError, match="the signature in manifest.sig does not match its manifest.json"):
        vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])
    assert vt.ops.get("caps") is None


def test_a_tampered_library_is_refused(signed, keys):
    lib = signed / "libvt_caps.so"
    data = bytearray(lib.read_bytes())
    data[-1] ^= 0xFF
    lib.write_bytes(bytes(data))
    with pytest.raises(vt.ops.PackError, match="sha256 of libvt_caps.so is .* the library changed"):
        vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])
    # and rewriting the manifest to the new hash breaks the signature instead
    man = json.loads((signed / "manifest.json").read_text())
    man["sha256"] = pt.sha256(lib)
    (signed / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(vt.ops.PackError, match="does not match its manifest.json"):
        vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])
    # nor does signing vouch for a library the manifest does not describe
    man["sha256"] = "0" * 64
    (signed / "manifest.json").write_text(json.dumps(man))
    code, out = cli("sign", signed, "--key", keys / "me.key")
    assert code != 0 and "rebuild the pack before signing it" in out


def test_a_signature_by_another_key_is_refused(signed, keys):
    with pytest.raises(vt.ops.PackError, match=r"pack 'caps' is signed by key [0-9a-f]{16}, which is not among"):
        vt.ops.load(signed, trusted_keys=[keys / "other.key.pub"])


def test_an_unsigned_pack_is_refused_when_signatures_are_required(built, keys, unload_after):
    with pytest.raises(vt.ops.PackError, match=r"pack .caps. is not signed .*`vt-ops sign"):
        vt.ops.load(built, trusted_keys=[keys / "me.key.pub"])
    assert vt.ops.load(built).loaded  # without trusted keys nothing is required


def test_a_damaged_signature_file_is_refused(signed, keys):
    sig = json.loads((signed / "manifest.sig").read_text())
    sig["signature"] = sig["signature"][:-4] + "AAA="
    (signed / "manifest.sig").write_text(json.dumps(sig))
    with pytest.raises(vt.ops.PackError, match="does not match"):
        vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])
    (signed / "manifest.sig").write_text("{}")
    with pytest.raises(vt.ops.PackError, match="is not a vt-ops signature"):
        vt.ops.load(signed, trusted_keys=[keys / "me.key.pub"])


def test_bad_trusted_keys_are_explained(signed, keys, tmp_path):
    with pytest.raises(vt.ops.PackError, match="is not an Ed25519 public key"):
        vt.ops.load(signed, trusted_keys=["vt-ed25519 not-base64"])
    (tmp_path / "empty.pub").write_text("# nothing\n")
    with pytest.raises(vt.ops.PackError, match="no public key in it"):
        vt.ops.load(signed, trusted_keys=[tmp_path / "empty.pub"])
    code, out = cli("sign", signed, "--key", keys / "me.key.pub")
    assert code != 0 and "is not an unencrypted PEM private key" in out


def test_shipped_packs_are_exempt(monkeypatch, keys):
    """The packs inside vibetensor's installation are as trusted as vibetensor itself."""
    monkeypatch.setenv("VT_TRUSTED_KEYS", str(keys / "me.key.pub"))
    folder = Path(vt.ops.get("core").path).parent / "on_demand" / "allreduce"
    if vt.ops.get("allreduce") is not None:
        pytest.skip("allreduce is loaded by an earlier test of this process")
    pack = vt.ops.load(folder)
    try:
        assert pack.loaded and not (folder / "manifest.sig").exists()
    finally:
        vt.ops.unload(pack)
