"""Ed25519 signatures on export hashes: the key pair, signing, checking.

An export's manifest hash (the export hash) fixes every byte of the export.
Signing it with a private key that only the exporting side holds turns "this
file is self-consistent" into "this file is what that exporter wrote": a
forger who rewrites the file and recomputes every hash cannot make a new
signature. The public key is what an auditor keeps.

The signature is Ed25519 over the 64 ASCII characters of the export hash (lower-case hex),
so it can be checked without breakglass (see ``docs/compliance.md``)::

    openssl pkeyutl -verify -pubin -inkey audit.pub -rawin -in hash.txt -sigfile sig.bin
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE_SCHEMA = "breakglass.audit-signature/v1"
"""The ``schema`` of an export's signature line."""

ALGORITHM = "ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 of its 32 raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Signer:
    """A private key that signs export hashes (its repr never shows the key).

    Attributes:
        key_id: The public key's short name (:func:`key_id`).
        exposed: The key file is readable by other users than its owner.
    """

    _key: Ed25519PrivateKey
    key_id: str
    exposed: bool = False

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def sign(self, export_hash: str) -> str:
        """The signature of ``export_hash`` (hex text), base64."""
        return base64.b64encode(self._key.sign(export_hash.encode("ascii"))).decode("ascii")

    def public_key(self) -> PublicKey:
        """The matching public key (to check what this key signed)."""
        return PublicKey(self._key.public_key(), self.key_id)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key that checks export signatures."""

    _key: Ed25519PublicKey
    key_id: str

    def verify(self, export_hash: str, signature: str) -> bool:
        """Whether ``signature`` (base64) is this key's signature of ``export_hash``."""
        from cryptography.exceptions import InvalidSignature

        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
            self._key.verify(raw, export_hash.encode("ascii"))
        except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
            return False
        return True


def generate(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (private key mode 0600, never over an existing file); return its id.

    Raises:
        ConfigurationError: A file exists already or cannot be written.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigurationError(f"{path} exists already: keys are never overwritten")
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    return key_id(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from None


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > 64 * 1024:
        raise ConfigurationError(f"{path} is not an Ed25519 {what} (too large)")
    return data


def load_signer(path: Path) -> Signer:
    """The private key in the PEM file at ``path``.

    Raises:
        ConfigurationError: Unreadable, or not an unencrypted Ed25519 private key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, "signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The parser's message could quote key material: name the file only.
        raise ConfigurationError(
            f"{path} is not an unencrypted PEM Ed25519 private key (make one with "
            "`breakglass audit keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    try:
        exposed = bool(path.stat().st_mode & 0o077)
    except OSError:
        exposed = False
    return Signer(key, key_id(key.public_key()), exposed)


def load_public_key(path: Path) -> PublicKey:
    """The public key in the PEM file at ``path``.

    Raises:
        ConfigurationError: Unreadable, or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read(path, "public key")
    if b"PRIVATE KEY-----" in data:  # the easy mix-up of the two files keygen writes
        raise ConfigurationError(
            f"{path} is a private key: give its public half (the --public file of "
            "`breakglass audit keygen`); the private key stays with whoever exports"
        )
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigurationError(f"{path} is not a PEM Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return PublicKey(key, key_id(key))
