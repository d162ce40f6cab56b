"""Signed packs: an Ed25519 signature of a pack's manifest.json, checked against keys the user trusts.

    vt-ops keygen -o ~/.config/vibetensor/packs.key    # writes the key and packs.key.pub
    vt-ops sign mypack/build/packs/mypack --key ~/.config/vibetensor/packs.key
    vt.ops.load("mypack/build/packs/mypack", trusted_keys=["packs.key.pub"])   # or VT_TRUSTED_KEYS

The signature covers the manifest's exact bytes, and the manifest holds the library's sha256,
which the loader compares with the very file it maps: so a changed manifest, a changed library
(or a manifest rewritten to match it) and a signature by any other key are all refused. The
signature lives beside the manifest in manifest.sig (JSON: the signer's public key and the
signature, base64). Public keys are one line, "vt-ed25519 <base64 of the 32 key bytes> [comment]".

The cryptography is the `cryptography` package's Ed25519 (an optional dependency: the `sign`
extra, `pip install vibetensor[sign]`); nothing here is hand-rolled.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from .manifest import MANIFEST, Manifest, PackError

SIGNATURE = "manifest.sig"
SIG_VERSION = 1
KEY_PREFIX = "vt-ed25519"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                                       Ed25519PublicKey)
    except ImportError:
        raise PackError("signed packs need the 'cryptography' package (pip install "
                        "'vibetensor[sign]')") from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def key_id(public: bytes) -> str:
    """A short name for a public key (the first 16 hex digits of its sha256)."""
    return hashlib.sha256(public).hexdigest()[:16]


# ---- keys -----------------------------------------------------------------------------------------

def keygen(path, comment: str = "") -> tuple[Path, Path]:
    """Writes a new private key to `path` (PEM, readable by the owner only) and its public key
    to `path`.pub; returns both paths. Refuses to overwrite an existing key."""
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    path = Path(path)
    pub_path = Path(f"{path}.pub")
    for p in (path, pub_path):
        if p.exists():
            raise PackError(f"keygen: {p} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_text(public_line(_public_bytes(key.public_key()), comment) + "\n")
    return path, pub_path


def _public_bytes(pub) -> bytes:
    _, serialization, _, _ = _crypto()
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_line(public: bytes, comment: str = "") -> str:
    line = f"{KEY_PREFIX} {base64.b64encode(public).decode()}"
    return f"{line} {comment}".rstrip() if comment else line


def _private_key(path):
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PackError(f"sign: cannot read the key {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise PackError(f"sign: {path} is not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(f"sign: {path} is not an Ed25519 key (make one with `vt-ops keygen`)")
    return key


def parse_trusted(keys) -> list[bytes]:
    """Trusted keys as raw 32-byte public keys. Each item: the raw bytes, a public key line
    ("vt-ed25519 BASE64 [comment]") or its bare base64, or a path to a file of such lines."""
    if isinstance(keys, (str, bytes, bytearray, os.PathLike)):
        keys = [keys]
    out = []
    for key in keys:
        if isinstance(key, (bytes, bytearray)) and len(key) == 32:
            out.append(bytes(key))
        elif isinstance(key, os.PathLike) or (isinstance(key, str) and os.path.isfile(key)):
            try:
                text = Path(key).read_text()
            except OSError as e:
                raise PackError(f"trusted key file {key}: {e.strerror}") from None
            out += _public_lines(text, str(key))
        elif isinstance(key, str):
            out += _public_lines(key, "trusted key")
        else:
            raise PackError(f"a trusted key must be a public key line, its base64, 32 bytes or a "
                            f"file path, got {type(key).__name__}")
    return out


def _public_lines(text: str, where: str) -> list[bytes]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        b64 = parts[1] if parts[0] == KEY_PREFIX and len(parts) > 1 else parts[0]
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise PackError(f"{where}: {line[:60]!r} is not an Ed25519 public key "
                            f"('{KEY_PREFIX} <base64 of 32 bytes>', as `vt-ops keygen` writes)")
        out.append(raw)
    if not out:
        raise PackError(f"{where}: no public key in it")
    return out


def trusted_from_env() -> list[bytes] | None:
    """The keys in VT_TRUSTED_KEYS (os.pathsep-separated public key files or key lines);
    None when it is unset or empty (no signature required)."""
    val = os.environ.get("VT_TRUSTED_KEYS", "")
    items = [v for v in val.split(os.pathsep) if v.strip()]
    if not items:
        return None
    return parse_trusted(items)


# ---- signing and checking -------------------------------------------------------------------------

def sign(folder, key_path) -> Path:
    """Signs the manifest of the pack in `folder` with the private key at `key_path`; writes
    `folder`/manifest.sig and returns its path. The pack's library must match the manifest's hash
    (signing a manifest that no longer describes its library would vouch for the wrong code)."""
    from . import manifest as _manifest

    m = _manifest.read(folder)
    fd = _manifest.open_library(m)
    try:
        digest = _manifest.sha256_of_fd(fd)
    finally:
        os.close(fd)
    if digest != m.sha256:
        raise PackError(f"sign: pack '{m.name}': {m.library.name} has sha256 {digest}, the manifest "
                        f"says {m.sha256}; rebuild the pack before signing it")
    key = _private_key(key_path)
    public = _public_bytes(key.public_key())
    data = {"vt_ops_sig": SIG_VERSION, "pack": m.name, "key": base64.b64encode(public).decode(),
            "key_id": key_id(public), "signature": base64.b64encode(key.sign(m.text)).decode()}
    out = Path(folder) / SIGNATURE
    tmp = Path(f"{out}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out)
    return out


def _read_signature(m: Manifest) -> dict:
    path = Path(m.folder) / SIGNATURE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PackError(f"pack '{m.name}' is not signed (no {SIGNATURE} beside its {MANIFEST}) and "
                        f"signatures are required (trusted_keys / VT_TRUSTED_KEYS): sign it with "
                        f"`vt-ops sign {m.folder} --key KEY`") from None
    except OSError as e:
        raise PackError(f"pack '{m.name}': cannot read {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(1 << 16).decode())
    except (OSError, ValueError) as e:
        raise PackError(f"pack '{m.name}': {path} is not a signature file ({e})") from None
    if not (isinstance(data, dict) and data.get("vt_ops_sig") == SIG_VERSION
            and isinstance(data.get("key"), str) and isinstance(data.get("signature"), str)):
        raise PackError(f"pack '{m.name}': {path} is not a vt-ops signature of version {SIG_VERSION}")
    return data


def check(m: Manifest, trusted: list[bytes]) -> str:
    """Raises PackError unless the manifest m carries a valid signature by one of the trusted
    keys (raw 32-byte public keys); returns the id of the key that signed it."""
    InvalidSignature, _, _, Ed25519PublicKey = _crypto()
    data = _read_signature(m)
    try:
        public = base64.b64decode(data["key"], validate=True)
        signature = base64.b64decode(data["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise PackError(f"pack '{m.name}': {SIGNATURE} holds a key or signature that is not base64") from None
    if public not in set(trusted):
        raise PackError(f"pack '{m.name}' is signed by key {key_id(public)}, which is not among the "
                        f"trusted keys ({', '.join(key_id(k) for k in trusted) or 'none'})")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, m.text)
    except (InvalidSignature, ValueError):
        raise PackError(f"pack '{m.name}': the signature in {SIGNATURE} does not match its "
                        f"{MANIFEST} (the manifest changed after it was signed, or the signature "
                        f"is damaged)") from None
    return key_id(public)
