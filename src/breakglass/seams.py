"""The three seams every provider implements, and the plugin that bundles them.

A provider is found through the ``breakglass.providers`` entry-point group:
the entry point names a :class:`ProviderPlugin`. The core never imports a
vendor SDK; each vendor adapter is its own distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from datetime import datetime

    from breakglass.audit_record import AuditRecord
    from breakglass.clock import Clock
    from breakglass.observation import Observation
    from breakglass.reading import ReadingLoop
    from breakglass.settings import Settings
    from breakglass.state import Cause


@runtime_checkable
class FlagSource(Protocol):
    """**Protocol**: reads the flag through a vendor's own SDK and reports observations.

    Implemented by each provider; called by :class:`breakglass.engine.StateEngine`.
    Application code never needs to implement this.

    A source never blocks its caller on the network: :meth:`start` returns at
    once and the SDK connects in the background. It calls the listener (from
    its own thread) whenever the value, its health or its freshness changes,
    and at least once per successful contact with the vendor, so the engine
    sees ``confirmed_at`` advance. A listener's exception is the engine's
    problem, never the source's.
    """

    @property
    def name(self) -> str:
        """A short name for logs and status output, e.g. ``"unleash"``."""
        ...

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Begin reading in the background and report every observation to ``listener``."""
        ...

    def current(self) -> Observation:
        """The latest observation (never blocks, never raises)."""
        ...

    def close(self) -> None:
        """Stop reading and release threads and sockets within about a second."""
        ...

    def readers(self) -> Sequence[ReadingLoop]:
        """The source's reading loops, which the engine watches (empty for a push-only source).

        Every thread that reads the flag runs in a :class:`breakglass.reading.ReadingLoop`:
        it never dies of an exception, and one that ends or hangs halts the flag.
        """
        ...


@runtime_checkable
class HaltsAhead(Protocol):
    """**Protocol**, optional for a :class:`FlagSource`: it can see a halt before it has read it whole.

    A relay worker woken by a change reads one byte that says "not active" several
    hundred microseconds before its full, checked read becomes an observation. The
    engine gives such a source a function to call at that moment: the guard refuses
    from then on, and the source's next observation decides as usual. It can only ever
    halt early, never admit: an early halt that the full read contradicts ends with it.
    """

    def on_halt_ahead(self, halt: Callable[[Cause], None]) -> None:
        """Keep ``halt``; call it with the cause the coming observation will carry."""
        ...


@dataclass(frozen=True, slots=True)
class Served:
    """What readers are served, as an admin found it after a change.

    Attributes:
        value: The boolean readers get, or ``None`` when it could not be told
            (not a boolean, or the vendor's data could not be read in time).
        detail: How it came about, in the vendor's terms (one line, no secrets).
    """

    value: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The vendor's answer to a change made through :class:`FlagAdmin`.

    Attributes:
        flag_key: The flag that was changed.
        active: The value the vendor now holds.
        acknowledged_at: When the vendor's success answer arrived (UTC).
        change_id: The vendor's id for the change, where it gives one.
        changed: ``False`` when the flag already had this value.
        served: What readers are served after the change, evaluated for the
            service's context as the vendor's SDK computes it (off variations,
            prerequisites, targeting, strategies, overrides), not the on/off
            switch; ``None`` when the admin could not tell.
        served_detail: How ``served`` was found, or why it differs from ``active``.
        created: The change created the flag (or its store): nothing was reading
            it as active before.
        target: What was changed, for people: the store's path or the vendor's
            project, environment and flag (no secrets).
    """

    flag_key: str
    active: bool
    acknowledged_at: datetime
    change_id: str | None = None
    changed: bool = True
    served: bool | None = None
    served_detail: str | None = None
    created: bool = False
    target: str | None = None

    @property
    def confirmed(self) -> bool:
        """Whether readers are served the value that was asked for (``served is active``)."""
        return self.served is self.active


@runtime_checkable
class FlagAdmin(Protocol):
    """**Protocol**: changes the flag through a vendor's management API.

    Implemented by each provider; called by ``breakglass halt/resume``, the
    latency probe and the demo. Returns only after the vendor acknowledged the
    write; raises an :class:`breakglass.errors.AdminError` subclass otherwise.

    An admin may also offer ``target``, a string naming the vendor-side object it
    changes (no secrets): the probe refuses to run when its flag's target is the
    production flag's, whatever the flag keys say; and ``dashboard_url``, where
    a person can change the flag by hand when the API fails (the fallback
    ``breakglass halt`` prints with ``NOT HALTED``).

    Each acknowledgement says what readers are served after the change
    (:attr:`Acknowledgement.served`), evaluated as the SDK evaluates it for the
    service's context: a vendor's 2xx alone proves nothing.
    """

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the value is the point
        """Set the flag, recording who did it and why wherever the vendor can."""
        ...

    def get_active(self) -> bool | None:
        """The vendor's own current value (``None`` when the flag does not exist)."""
        ...


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of a vendor's change history.

    Attributes:
        records: Normalised records, oldest first.
        cursor: Where the next pull resumes; store it only after the records.
        malformed: Vendor entries on this page that could not be normalised
            (counted and reported, never silently dropped).
        problems: One line per malformed entry, for the report.
    """

    records: list[AuditRecord]
    cursor: str | None
    malformed: int = 0
    problems: list[str] = field(default_factory=list)


@runtime_checkable
class AuditSource(Protocol):
    """**Protocol**: yields a vendor's change history for the flag since a cursor.

    Implemented by each provider; called by ``breakglass audit pull``. Pages
    come oldest first; re-pulling from the last cursor yields nothing already
    seen. Rate limits (429, ``Retry-After``) are honoured inside.
    """

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield the history after ``cursor`` (all of it when ``None``), page by page."""
        ...


@dataclass(frozen=True, slots=True)
class Backend:
    """What a provider plugin builds from the settings: its three seams."""

    name: str
    source: FlagSource
    admin: FlagAdmin | None
    audit: AuditSource | None
    poll_bound: float
    """Seconds a change may take to reach the source by design (0 for streaming)."""
    confirm_interval: float = 0.0
    """Seconds between two confirmations from a healthy vendor (the poll or refresh period the
    source's ``true`` rests on). ``max_staleness`` must exceed it with room to spare, or a healthy
    vendor would flap the flag; :meth:`breakglass.bridge.Bridge.start` refuses it otherwise."""
    admin_setting: str | None = None
    """The setting that gives this backend its admin API (``BREAKGLASS_UNLEASH__ADMIN_TOKEN``):
    named when a halt or resume is asked of a backend that has none."""
    no_admin: str | None = None
    """Why this backend can never change the flag, said instead of asking for credentials
    (a relay worker: the flag is changed upstream)."""
    durable: bool = True
    """Whether the bridge may remember this source's decision across restarts. ``False`` for a
    relay worker: a restarted worker must wait for the relay, never serve a remembered ``true``."""
    source_id: str | None = None
    """What this backend reads, named without secrets (:func:`breakglass.source_id.source_id`):
    equal for two processes exactly when they read the same store, environment or server. serve
    shows a reader whose sources are not its own as reading another source. ``None``: unknown."""


class ProviderPlugin(Protocol):
    """**Protocol**: the object a ``breakglass.providers`` entry point names."""

    @property
    def name(self) -> str:
        """The value of ``BREAKGLASS_PROVIDER`` that selects this plugin."""
        ...

    def create(self, settings: Settings, clock: Clock) -> Backend:
        """Build the provider's seams for ``settings.flag_key`` (no network I/O here)."""
        ...
