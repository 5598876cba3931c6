"""Signed resume authorisations (Ed25519), as the control plane issues them.

A token is ``bgresume1.<payload>.<signature>``: the payload is base64url JSON,
the signature Ed25519 over the ASCII bytes ``bgresume1.<payload>`` (both
base64url without padding). The payload::

    {"typ": "breakglass.killswitch.resume/v1", "switch": "prod-eu",
     "episode": "h-…", "iss": "breakglass-serve", "approvers": ["alice", "bob"],
     "reason": "…", "iat": 1796000000, "exp": 1796000300, "jti": "…"}

It resumes one switch's one halt once: ``switch`` must be this switch's name,
``episode`` the open halt, ``jti`` unused, ``exp`` in the future and
``exp - iat`` within ``resume.max_token_age``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from breakglass_killswitch.errors import ConfigError, ResumeRefused

PREFIX = "bgresume1"
TYPE = "breakglass.killswitch.resume/v1"
_CLOCK_SKEW = 60.0
_MAX_TOKEN = 8192


@dataclass(frozen=True, slots=True)
class Grant:
    """A verified authorisation: who issued it, who approved, why."""

    issuer: str
    approvers: tuple[str, ...]
    reason: str
    jti: str
    key_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key (its first 8 bytes, hex)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)[:8].hex()


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form ``resume.control_plane_keys`` takes: base64 of the 32 raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """Read a public key given as base64 of its 32 raw bytes, or as PEM.

    Raises:
        ConfigError: It is neither, or not an Ed25519 key.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ConfigError(f"resume.control_plane_keys: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError("resume.control_plane_keys: the PEM key is not Ed25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("resume.control_plane_keys: a key is neither PEM nor base64") from None
    if len(raw) != 32:
        raise ConfigError("resume.control_plane_keys: an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read an unencrypted PEM (PKCS#8) Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the private key is not Ed25519")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (keep the file readable only by the control plane)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def sign_resume(  # noqa: PLR0913 -- one argument per claim
    key: Ed25519PrivateKey,
    *,
    switch: str,
    episode: str,
    issuer: str,
    approvers: list[str] | tuple[str, ...],
    reason: str,
    ttl: float = 300.0,
    issued_at: float | None = None,
) -> str:
    """Issue an authorisation (the control plane's side; also ``breakglass-killswitch sign-resume``)."""
    iat = int(time.time() if issued_at is None else issued_at)
    payload = {
        "typ": TYPE,
        "switch": switch,
        "episode": episode,
        "iss": issuer,
        "approvers": list(approvers),
        "reason": reason,
        "iat": iat,
        "exp": iat + int(ttl),
        "jti": secrets.token_hex(16),
    }
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    signing_input = f"{PREFIX}.{body}".encode("ascii")
    return f"{PREFIX}.{body}.{_b64(key.sign(signing_input))}"


def _claims(token: str, keys: list[Ed25519PublicKey]) -> tuple[dict[str, Any], str]:
    if len(token) > _MAX_TOKEN:
        raise ResumeRefused("resume refused: the authorisation is too long", ["a valid signature"])
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ResumeRefused(
            "resume refused: the authorisation is not a bgresume1 token", ["a valid signature"]
        )
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
    try:
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError):
        signature = b""
    for key in keys:
        try:
            key.verify(signature, signing_input)
        except InvalidSignature:
            continue
        try:
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError):
            break
        if isinstance(claims, dict):
            return claims, key_id(key)
        break
    raise ResumeRefused(
        "resume refused: the authorisation's signature matches no configured control-plane key",
        ["a signature by a key in resume.control_plane_keys"],
    )


def verify_resume(
    token: str,
    keys: list[Ed25519PublicKey],
    *,
    switch: str,
    episode: str,
    max_age: float,
    now: float | None = None,
) -> Grant:
    """Check an authorisation for this switch's open halt (the caller then spends its ``jti``).

    Raises:
        ResumeRefused: Naming what is wrong; nothing is resumed.
    """
    if not keys:
        raise ResumeRefused(
            "resume refused: this switch trusts no control-plane key",
            ["resume.control_plane_keys in the switch's config"],
        )
    claims, kid = _claims(token, keys)
    moment = time.time() if now is None else now
    problems: list[str] = []
    if claims.get("typ") != TYPE:
        problems.append(f"typ {TYPE}")
    if claims.get("switch") != switch:
        problems.append(f"an authorisation for switch {switch!r}")
    if claims.get("episode") != episode:
        problems.append(f"an authorisation for the open halt {episode!r}")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        problems.append("numeric iat and exp")
    else:
        if exp <= moment:
            problems.append("an authorisation that has not expired")
        if iat > moment + _CLOCK_SKEW:
            problems.append("an authorisation not issued in the future")
        if exp - iat > max_age:
            problems.append(f"a lifetime of at most {max_age:.0f} s")
    approvers = claims.get("approvers")
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
        problems.append("a list of approvers")
        approvers = []
    jti, issuer, reason = claims.get("jti"), claims.get("iss"), claims.get("reason")
    if not isinstance(jti, str) or not jti:
        problems.append("a jti")
    if problems:
        raise ResumeRefused("resume refused: the authorisation does not hold", problems)
    return Grant(
        issuer=issuer if isinstance(issuer, str) else "unknown",
        approvers=tuple(approvers),
        reason=reason if isinstance(reason, str) else "",
        jti=str(jti),
        key_id=kid,
    )
