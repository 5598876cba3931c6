"""The embedded ``local`` provider: the flag lives in a SQLite file on this host.

No vendor is needed. ``breakglass halt`` / ``resume`` write the file; every
process on the host that reads through breakglass sees the change within one
poll (20 ms by default). Each change is kept as an audit record.
"""

from breakglass.local.admin import LocalAdmin
from breakglass.local.audit import LocalAudit
from breakglass.local.source import LocalSource
from breakglass.local.store import LocalStore

__all__ = ["LocalAdmin", "LocalAudit", "LocalSource", "LocalStore"]
