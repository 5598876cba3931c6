"""Who last halted or resumed the flag, when, why and where: read from the audit store.

``status`` and ``watch`` show it next to the state. It is the newest halt or resume in the store
(made through breakglass, or pulled from the vendor's log), never an observed flip, which says
only that a process saw the change. Reading it writes nothing: a SQLite store that does not exist
yet is not created, and an unreadable store yields nothing (the state itself never depends on it).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from breakglass.audit.recorder import OBSERVED
from breakglass.audit.recorder import PROVIDER as BRIDGE_PROVIDER
from breakglass.audit.store import AuditQuery, open_audit_store
from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from breakglass.audit.codec import StoredRecord
    from breakglass.settings import Settings

_CHANGES = {"enabled": "resumed", "disabled": "halted"}


def last_change(settings: Settings) -> dict[str, Any] | None:
    """The newest halt or resume of ``settings.flag_key``, or ``None`` when none is known.

    Returns:
        ``action`` (``halted``/``resumed``), ``actor``, ``at`` (RFC 3339), ``reason``,
        ``provider`` (the adapter it went through) and ``target`` (what it changed).
    """
    from breakglass.audit.settings import load_audit_settings

    try:
        audit = load_audit_settings()
        if audit.database_url is None and not audit.sqlite_path(settings).exists():
            return None
        store = open_audit_store(settings, audit)
    except BreakglassError:
        return None
    newest: tuple[StoredRecord, dict[str, Any]] | None = None
    with contextlib.suppress(BreakglassError, OSError, ValueError):
        try:
            for row in store.iter_rows(AuditQuery(flags=(settings.flag_key,))):
                if row.action not in _CHANGES or row.vendor_event_type == OBSERVED:
                    continue
                raw = _raw(row)
                if row.provider == BRIDGE_PROVIDER and (
                    raw.get("error") or not raw.get("changed", True)
                ):
                    continue  # an attempt that failed, or changed nothing, is no change
                newest = (row, raw)  # rows come oldest first
        finally:
            store.close()
    if newest is None:
        return None
    row, raw = newest
    backend = raw.get("backend") if row.provider == BRIDGE_PROVIDER else row.provider
    return {
        "action": _CHANGES[row.action],
        "actor": row.actor_name or row.actor_email or row.actor_id,
        "at": row.occurred_at,
        "reason": row.comment,
        "provider": backend if isinstance(backend, str) else row.provider,
        "target": raw.get("target") if isinstance(raw.get("target"), str) else row.environment,
    }


def _raw(row: StoredRecord) -> dict[str, Any]:
    raw = json.loads(row.canonical).get("raw")
    return raw if isinstance(raw, dict) else {}


class LastChangeFollower:
    """:func:`last_change` for ``watch``: read at start and for a few seconds after each flip.

    The change's audit record may land just after the flip is seen; reading on every sample
    would query the store twice a second for nothing.
    """

    AFTER_FLIP = 5.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._active: bool | None = None
        self._until = 0.0
        self._known: dict[str, Any] | None = None

    def after(self, *, active: bool) -> dict[str, Any] | None:
        """The last change, as of a sample that read ``active``."""
        now = time.monotonic()
        if active != self._active:
            self._active, self._until = active, now + self.AFTER_FLIP
            self._known = last_change(self._settings)
        elif now < self._until:
            self._known = last_change(self._settings)
        return self._known
