"""The audit history: every provider's change log in one store, exported as evidence.

* :mod:`~breakglass.audit.store` — the :class:`AuditStore` protocol and :func:`open_audit_store`
  (SQLite in the state directory, or PostgreSQL), with :mod:`~breakglass.audit.migrations`;
* :mod:`~breakglass.audit.pull` — fetch what is new from a provider's :class:`AuditSource`;
* :mod:`~breakglass.audit.recorder` — the bridge's own evidence (observed flips, halts, resumes);
* :mod:`~breakglass.audit.export` and :mod:`~breakglass.audit.verify` — hash-chained JSON Lines
  (and CSV), and the check that an export is intact;
* :mod:`~breakglass.audit.integrity` — the store's own chain and export log, checked;
* :mod:`~breakglass.audit.signing` and :mod:`~breakglass.audit.timestamp` — Ed25519 signatures
  and RFC 3161 time stamps of an export hash;
* :mod:`~breakglass.audit.spool` — where the bridge's own records wait while the store is down.

See ``docs/audit-record.md`` and ``docs/compliance.md``.
"""

from breakglass.audit.export import Manifest, export_csv, export_jsonl
from breakglass.audit.integrity import StoreCheck, check_store
from breakglass.audit.pull import PullReport, pull_history
from breakglass.audit.recorder import AuditRecorder, RecordingAdmin
from breakglass.audit.settings import AuditSettings, load_audit_settings
from breakglass.audit.store import AuditQuery, AuditStore, open_audit_store
from breakglass.audit.verify import VerifyResult, verify_export, verify_lines

__all__ = [
    "AuditQuery",
    "AuditRecorder",
    "AuditSettings",
    "AuditStore",
    "Manifest",
    "PullReport",
    "RecordingAdmin",
    "StoreCheck",
    "VerifyResult",
    "check_store",
    "export_csv",
    "export_jsonl",
    "load_audit_settings",
    "open_audit_store",
    "pull_history",
    "verify_export",
    "verify_lines",
]
