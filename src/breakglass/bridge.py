"""One process's breakglass: settings -> provider adapter -> engine, guard and OpenFeature provider."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Self

from breakglass.audit.recorder import AuditRecorder
from breakglass.authority import halt_authority
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.engine import StateEngine
from breakglass.errors import AdminError, ConfigurationError, NotServedError
from breakglass.guard import Guard
from breakglass.persistence import StateStore
from breakglass.plugins import load_plugin
from breakglass.provider import DEFAULT_DOMAIN, SystemActiveProvider, register
from breakglass.reports.reporter import Reporter
from breakglass.reports.settings import load_report_settings
from breakglass.seams import Backend
from breakglass.settings import Settings, load_settings
from breakglass.targets import Target, TargetResult, change_all

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from breakglass.killswitch import KillswitchAdmin
    from breakglass.seams import Acknowledgement, AuditSource, FlagAdmin, FlagSource


logger = logging.getLogger("breakglass")


class Bridge:
    """The configured providers' seams, wired to one fail-closed engine.

    With several providers (``providers = ["launchdarkly", "local"]``) the
    engine reads them all and stop wins; :meth:`halt` and :meth:`resume` change
    every one of them in parallel. :attr:`backend` is the first of them.

    Build it with :meth:`from_settings` (or :func:`breakglass.open_bridge`),
    then :meth:`start` it, or use it as a context manager::

        with breakglass.open_bridge() as bridge:
            bridge.register()                # OpenFeature domain "breakglass"
            guard = bridge.guard()           # for the per-request check
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend | Sequence[Backend],
        *,
        clock: Clock = SYSTEM_CLOCK,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        self.backends: list[Backend] = [backend] if isinstance(backend, Backend) else list(backend)
        if not self.backends:
            raise ConfigurationError("BREAKGLASS_PROVIDERS: no provider configured")
        self.backend = self.backends[0]
        self.name = "+".join(b.name for b in self.backends)
        """The providers, joined with ``+`` (``launchdarkly+local``)."""
        # Nothing remembered unless every source may be: the relay keeps its workers' state.
        durable = all(b.durable for b in self.backends)
        store = (
            StateStore(settings.state_file, self.name, settings.flag_key, read_only=read_only)
            if durable
            else None
        )
        self._clock = clock
        self.engine = StateEngine(
            settings.flag_key,
            [b.source for b in self.backends],
            max_staleness=settings.max_staleness,
            store=store,
            clock=clock,
            sources_after_fork=self._rebuild_after_fork,
        )
        # The bridge's own evidence (observed flips, halts, resumes); off the request path.
        self.recorder = AuditRecorder.for_bridge(settings, self.name, clock=clock)
        self.recorder.attach(self.engine)
        self.report_settings = load_report_settings(settings)
        self.role: str | None = "bridge" if durable else "worker"
        """How this reader reports to serve (``bridge``, ``worker``, ``relay``); ``None``: it does not.
        Reports go only where ``report.url`` is set."""
        self.report_channel: str | None = None
        """A relay's: the source id its workers report (set by :class:`breakglass.relay.relay.Relay`)."""
        self.reporter: Reporter | None = None
        self._killswitch: list[KillswitchAdmin] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        read_only: bool = False,
    ) -> Self:
        """Build the bridge for ``settings`` (read from the environment when ``None``).

        ``read_only=True``: for a command that only looks; it loads the remembered state
        but writes none (see :class:`~breakglass.persistence.StateStore`).
        """
        settings = settings if settings is not None else load_settings()
        plugins = [load_plugin(name) for name in settings.provider_names]
        backends = [p.create(settings, clock) for p in plugins]
        return cls(settings, backends, clock=clock, read_only=read_only)

    def __repr__(self) -> str:
        return f"Bridge(provider={self.name!r}, flag_key={self.settings.flag_key!r})"

    def _rebuild_after_fork(self) -> list[FlagSource]:
        """In a forked child: every provider's seams built afresh (own SDK clients, sockets, threads)."""
        self.backends = [
            load_plugin(b.name).create(self.settings, self._clock) for b in self.backends
        ]
        self.backend = self.backends[0]
        return [b.source for b in self.backends]

    def start(self, *, halt_authority: bool = False, wait: float = 0.0) -> Self:
        """Start reading; the flag reads halted until a source confirms it.

        Logs a warning for each way this process could change the flag itself
        (see :mod:`breakglass.authority`): a guarded service should only read it.
        ``halt_authority=True`` says this process is meant to change the flag
        (``breakglass serve``, the operator's control plane): no warning then.
        ``wait``: seconds to wait for every source's first answer (returns at once
        with ``0``); the flag still reads halted if none confirmed it by then.

        Raises:
            ConfigurationError: ``max_staleness`` is too short for what a provider
                can confirm (a healthy vendor would flap the flag); one line naming it.
        """
        check_staleness(self.settings.max_staleness, self.backends)
        for line in [] if halt_authority else self.halt_authority():
            logger.warning(
                "%s: a guarded service that can change its flag can un-halt itself", line
            )
        self.engine.start()
        self.recorder.warm()  # the store opened now, not by every reader at the first halt
        if self.role is not None and self.report_settings.url is not None and self.reporter is None:
            self.reporter = Reporter(
                self.engine,
                self.report_settings,
                role=self.role,
                provider=self.name,
                source_ids=self.source_ids,
                channel=self.report_channel,
            )
            self.reporter.start()
        if wait > 0:
            self.engine.wait_for_confirmation(wait)
        return self

    @property
    def source_ids(self) -> list[str | None]:
        """What each provider reads, without secrets (``None`` where a provider cannot say)."""
        return [b.source_id for b in self.backends]

    def halt_authority(self) -> list[str]:
        """How this process could change the flag (empty when it can only read it)."""
        return halt_authority(self.backends)

    def close(self) -> None:
        """Stop reading and release threads and sockets (the admin's and audit's too, if they hold any)."""
        self.engine.close()
        if self.reporter is not None:
            self.reporter.close()  # after the engine: its last report says "closed"
        self.recorder.close()
        for backend in self.backends:
            for part in (backend.admin, backend.audit):
                close = getattr(part, "close", None)
                if callable(close):
                    close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def admin(self) -> FlagAdmin:
        """The first provider's management API (raises when it has none configured)."""
        if self.backend.admin is None:
            b = self.backend
            raise ConfigurationError(Target(b.name, None, b.admin_setting, b.no_admin).no_admin())
        return self.recorder.wrap_admin(self.backend.admin, backend=self.backend.name)

    def targets(self) -> list[Target]:
        """Every provider as a place to halt, each change recorded (``admin`` ``None`` without credentials).

        With ``[killswitch]`` configured, the infrastructure kill switch is one more target.
        """
        targets = [
            Target(
                b.name,
                None if b.admin is None else self.recorder.wrap_admin(b.admin, backend=b.name),
                b.admin_setting,
                b.no_admin,
            )
            for b in self.backends
        ]
        if self._killswitch is None:
            from breakglass.killswitch import KillswitchAdmin, load_killswitch_settings

            settings = load_killswitch_settings()
            self._killswitch = (
                [KillswitchAdmin(settings, self.settings.flag_key, clock=self._clock)]
                if settings.url is not None
                else []
            )
        targets += [
            Target("killswitch", self.recorder.wrap_admin(admin, backend="killswitch"))
            for admin in self._killswitch
        ]
        return targets

    def change(
        self, *, active: bool, actor: str, reason: str, timeout: float | None = None
    ) -> list[TargetResult]:
        """Change every provider in parallel; each one's result.

        A provider that did not answer within ``timeout`` is a failed result naming it.
        """
        return change_all(
            self.targets(),
            active=active,
            actor=actor,
            reason=reason,
            timeout=timeout,
            clock=self._clock,
        )

    @property
    def audit(self) -> AuditSource:
        """The provider's change history (raises when the provider has none configured)."""
        if self.backend.audit is None:
            raise ConfigurationError(
                f"the {self.backend.name} provider has no audit source configured"
            )
        return self.backend.audit

    def halt(self, *, actor: str, reason: str) -> Acknowledgement:
        """Turn the flag off through every provider's management API, in parallel.

        Returns the first provider's acknowledgement that arrived; stop wins, so
        one is a halt. Raises :class:`AdminError` when none acknowledged.
        """
        if len(self.backends) == 1:
            return _served(self.admin.set_active(False, actor=actor, reason=reason))
        results = self.change(active=False, actor=actor, reason=reason)
        acked = sorted((r for r in results if r.ok), key=lambda r: r.finished_at)
        if not acked:
            raise AdminError("NOT HALTED: no provider acknowledged: " + _failures(results))
        return acked[0].ack  # type: ignore[return-value]

    def resume(self, *, actor: str, reason: str) -> Acknowledgement:
        """Turn the flag on through every provider's management API, in parallel.

        Stop wins, so the system runs again only when every provider
        acknowledged; raises :class:`AdminError` naming those that did not.
        """
        if len(self.backends) == 1:
            return _served(self.admin.set_active(True, actor=actor, reason=reason))
        results = self.change(active=True, actor=actor, reason=reason)
        failed = [r for r in results if not r.ok]
        if failed or not results:
            raise AdminError("not resumed everywhere: " + _failures(results))
        return results[0].ack  # type: ignore[return-value]

    def openfeature_provider(self) -> SystemActiveProvider:
        """An OpenFeature provider on this bridge's engine (the bridge keeps the engine's lifecycle)."""
        return SystemActiveProvider(self.engine, owns_engine=False)

    def register(self, domain: str = DEFAULT_DOMAIN) -> SystemActiveProvider:
        """Bind an OpenFeature provider to ``domain`` and wait until it is ready."""
        provider = self.openfeature_provider()
        register(provider, domain)
        return provider

    def guard(self, **options: Any) -> Guard:
        """A request guard on this bridge's engine (see :class:`breakglass.guard.Guard`)."""
        options.setdefault("retry_after", self.settings.guard.retry_after)
        options.setdefault("status_url", self.settings.guard.status_url)
        return Guard(self.engine, **options)


def _served(ack: Acknowledgement) -> Acknowledgement:
    """``ack`` when readers are served what was asked for; else :class:`NotServedError`."""
    if not ack.confirmed:
        served = "unknown" if ack.served is None else str(ack.served).lower()
        raise NotServedError(
            f"{'NOT RESUMED' if ack.active else 'NOT HALTED'}: acknowledged, but readers are "
            f"served {served} ({ack.served_detail})",
            ack,
        )
    return ack


STALENESS_ROOM = 1.25
"""``max_staleness`` must be this many times a provider's confirmation interval: a healthy
vendor's request and the scheduler need a little time on top of the interval itself."""


def check_staleness(max_staleness: float, backends: Sequence[Backend]) -> None:
    """Refuse a staleness budget shorter than what a provider can confirm in.

    With ``max_staleness = 3`` and an Unleash SDK refreshing every 5 s, every
    confirmation would age out 2 s before the next one arrives: a healthy vendor
    would flap the system between active and halted for ever.

    Raises:
        ConfigurationError: One line naming the setting, the provider and the floor.
    """
    for backend in backends:
        floor = backend.confirm_interval * STALENESS_ROOM
        if max_staleness < floor:
            raise ConfigurationError(
                f"BREAKGLASS_MAX_STALENESS={max_staleness:g} is shorter than the {backend.name} "
                f"provider can confirm the flag (every {backend.confirm_interval:g} s): set it to at "
                f"least {floor:g} s, or make the {backend.name} provider poll faster"
            )


def _failures(results: list[TargetResult]) -> str:
    return "; ".join(f"{r.target}: {r.error}" for r in results if not r.ok) or "no answer"


def open_bridge(settings: Settings | None = None, **overrides: Any) -> Bridge:
    """Build a :class:`Bridge` from the settings (plus ``overrides``); call :meth:`Bridge.start` next."""
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        settings = settings.model_copy(update=overrides)
    return Bridge.from_settings(settings)
