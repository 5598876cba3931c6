"""The notification chain: who is told of a halt, how, within which time, and proof they were.

* :mod:`~breakglass.notify.config` — the ``[notify]`` policy section (groups, channels, deployers);
* :mod:`~breakglass.notify.channels` — PagerDuty, Opsgenie, Slack, Teams, e-mail, webhooks;
* :mod:`~breakglass.notify.outbox` — the durable outbox in the audit store's database;
* :mod:`~breakglass.notify.worker` — parallel delivery, retries, escalation;
* :mod:`~breakglass.notify.notifier` — :class:`Notifier`, what serve and the CLI call;
* :mod:`~breakglass.notify.ack` and :mod:`~breakglass.notify.web` — acknowledgements, status pages.

Usable without serve: ``Notifier.open(settings, policy)`` then ``halted(...)``. See
``docs/notifications.md``.
"""

from breakglass.notify.config import NotifyPolicy, Severity
from breakglass.notify.notifier import GroupStatus, Notifier, open_notifier

__all__ = ["GroupStatus", "Notifier", "NotifyPolicy", "Severity", "open_notifier"]
