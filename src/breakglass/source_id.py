"""Source identity: a short, stable, non-secret name for what a provider reads.

serve compares every reader's source identity with its own (see
:mod:`breakglass.reports.fleet`): a reader that reads another store, another
vendor environment or another server will not stop when serve halts, and is
shown as reading another source before anyone needs it to stop.

A credential that selects what is read (a LaunchDarkly SDK key, a Flagsmith
environment key) enters only as :func:`secret_digest`: the first 48 bits of a
SHA-256 over a fixed label and the key. Such keys are long random secrets
(well over 100 bits), so the digest can neither be reversed nor guessed from
it; 48 bits authenticate nothing anywhere; and the label keeps it from
matching any other system's hash of the same key. All it tells is whether two
readers hold the same key, which is what is compared.
"""

from __future__ import annotations

import hashlib

DIGEST_HEX = 12
"""Hex digits kept of a secret's digest (48 bits: a chance collision is ~1 in 2.8e14 per pair)."""
MAX_LENGTH = 200
"""Longest identity sent in a report; a longer one keeps its head and a digest of the whole."""
_LABEL = b"breakglass source identity\x00"


def secret_digest(secret: str) -> str:
    """``#`` and 12 hex digits of a labelled SHA-256 of ``secret`` (never the secret)."""
    return "#" + hashlib.sha256(_LABEL + secret.encode()).hexdigest()[:DIGEST_HEX]


def source_id(provider: str, *parts: str, secret: str | None = None) -> str:
    """``provider:part:part[:#digest]``, at most :data:`MAX_LENGTH` characters.

    Args:
        provider: The provider's name (``local``, ``unleash``...).
        parts: Non-secret names of what is read (a URL, a path, a project).
        secret: A credential that selects what is read; only its digest is kept.
    """
    text = ":".join((provider, *parts, *([] if secret is None else [secret_digest(secret)])))
    if len(text) <= MAX_LENGTH and text.isprintable():
        return text
    # Still one stable name per source: the head for people, a digest of the whole for equality.
    whole = "~" + hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]
    head = "".join(c if c.isprintable() else "?" for c in text)
    return head[: MAX_LENGTH - len(whole)] + whole
