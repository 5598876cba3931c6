"""One process's breakglass: settings -> provider adapter -> engine, guard and OpenFeature provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from breakglass.audit.recorder import AuditRecorder
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.engine import StateEngine
from breakglass.errors import ConfigurationError
from breakglass.guard import Guard
from breakglass.persistence import StateStore
from breakglass.plugins import load_plugin
from breakglass.provider import DEFAULT_DOMAIN, SystemActiveProvider, register
from breakglass.settings import Settings, load_settings

if TYPE_CHECKING:
    from types import TracebackType

    from breakglass.seams import Acknowledgement, AuditSource, Backend, FlagAdmin


class Bridge:
    """The configured provider's seams, wired to a fail-closed engine.

    Build it with :meth:`from_settings` (or :func:`breakglass.open_bridge`),
    then :meth:`start` it, or use it as a context manager::

        with breakglass.open_bridge() as bridge:
            bridge.register()                # OpenFeature domain "breakglass"
            guard = bridge.guard()           # for the per-request check
    """

    def __init__(
        self, settings: Settings, backend: Backend, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.settings = settings
        self.backend = backend
        store = StateStore(settings.state_file, backend.name, settings.flag_key)
        self.engine = StateEngine(
            settings.flag_key,
            [backend.source],
            max_staleness=settings.max_staleness,
            store=store,
            clock=clock,
        )
        # The bridge's own evidence (observed flips, halts, resumes); off the request path.
        self.recorder = AuditRecorder.for_bridge(settings, backend.name, clock=clock)
        self.recorder.attach(self.engine)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> Self:
        """Build the bridge for ``settings`` (read from the environment when ``None``)."""
        settings = settings if settings is not None else load_settings()
        backend = load_plugin(settings.provider).create(settings, clock)
        return cls(settings, backend, clock=clock)

    def __repr__(self) -> str:
        return f"Bridge(provider={self.backend.name!r}, flag_key={self.settings.flag_key!r})"

    def start(self) -> Self:
        """Start reading (returns at once; the flag reads halted until confirmed)."""
        self.engine.start()
        return self

    def close(self) -> None:
        """Stop reading and release threads and sockets (the admin's and audit's too, if they hold any)."""
        self.engine.close()
        self.recorder.close()
        for part in (self.backend.admin, self.backend.audit):
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
        """The provider's management API (raises when the provider has none configured)."""
        if self.backend.admin is None:
            raise ConfigurationError(
                f"the {self.backend.name} provider has no admin credentials configured"
            )
        return self.recorder.wrap_admin(self.backend.admin)

    @property
    def audit(self) -> AuditSource:
        """The provider's change history (raises when the provider has none configured)."""
        if self.backend.audit is None:
            raise ConfigurationError(
                f"the {self.backend.name} provider has no audit source configured"
            )
        return self.backend.audit

    def halt(self, *, actor: str, reason: str) -> Acknowledgement:
        """Turn the flag off through the provider's management API."""
        return self.admin.set_active(False, actor=actor, reason=reason)

    def resume(self, *, actor: str, reason: str) -> Acknowledgement:
        """Turn the flag on through the provider's management API."""
        return self.admin.set_active(True, actor=actor, reason=reason)

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
        return Guard(self.engine, **options)


def open_bridge(settings: Settings | None = None, **overrides: Any) -> Bridge:
    """Build a :class:`Bridge` from the settings (plus ``overrides``); call :meth:`Bridge.start` next."""
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        settings = settings.model_copy(update=overrides)
    return Bridge.from_settings(settings)
