"""Building and running serve: settings -> bridge, store, auth, app -> uvicorn."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.bridge import Bridge
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import ServeStoreError
from breakglass.reports.fleet import FleetView
from breakglass.serve.auth import OidcVerifier, Role, TokenBook
from breakglass.serve.control import Control, ResumeGate
from breakglass.serve.events import EventHub
from breakglass.serve.limits import SharedFailures, failure_limit
from breakglass.serve.listeners import ListenerRunner, SuspensionListener, load_listeners
from breakglass.serve.revocations import SessionRevocations
from breakglass.serve.sessions import Sessions
from breakglass.serve.settings import ServeSettings, load_serve_settings
from breakglass.serve.store import ServeStore, open_serve_store
from breakglass.serve.telemetry import Metrics, Tracing
from breakglass.settings import Settings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from breakglass.serve.app import Services

logger = logging.getLogger("breakglass.serve")


def open_store(settings: Settings, serve: ServeSettings, clock: Clock = SYSTEM_CLOCK) -> ServeStore:
    """Serve's store as the settings name it."""
    return open_serve_store(serve.sqlite_path(settings), serve.database_url, clock=clock)


@dataclass
class Server:
    """A built serve: the app and the parts to close."""

    app: FastAPI
    services: Services
    bridge: Bridge
    tracing: Tracing

    def close(self) -> None:
        """Stop reading, deliver queued events, flush spans and audit records."""
        self.services.control.close()
        self.services.control.hub.close()
        self.tracing.close()
        if isinstance(self.services.limiter, SharedFailures):
            self.services.limiter.close()
        self.bridge.close()


def build(
    settings: Settings | None = None,
    serve: ServeSettings | None = None,
    *,
    listeners: list[SuspensionListener] | None = None,
    gate: ResumeGate | None = None,
    clock: Clock = SYSTEM_CLOCK,
    **overrides: Any,
) -> Server:
    """Build serve from the settings (read from the environment when ``None``); the bridge is started."""
    from breakglass.serve.app import Services, create_app

    settings = settings if settings is not None else load_settings()
    serve = serve if serve is not None else load_serve_settings(settings, **overrides)
    store = open_store(settings, serve, clock)
    if gate is None:
        gate = policy_gate(store, clock)
    bridge = Bridge.from_settings(settings, clock=clock).start(halt_authority=True)
    try:
        try:
            session_key = store.session_key()
        except ServeStoreError as exc:
            raise ServeStoreError(f"cannot start without the store: {exc}") from None
        _warn_of_missing_grants(store)
        hub = EventHub()
        metrics = Metrics(lambda: _state(bridge))
        tracing = Tracing(serve.otlp_endpoint)
        control = Control(
            bridge,
            store,
            hub,
            metrics,
            tracing,
            serve,
            listeners=ListenerRunner(
                listeners if listeners is not None else load_listeners(settings)
            ),
            gate=gate,
            clock=clock,
        )
        tokens = TokenBook(store, refresh=serve.token_refresh, clock=clock)
        services = Services(
            control=control,
            tokens=tokens,
            oidc=OidcVerifier(serve.oidc) if serve.oidc.enabled else None,
            sessions=Sessions(
                session_key,
                max_age=serve.session_hours * 3600,
                idle=serve.session_idle_minutes * 60,
                secure=serve.cookies_secure,
                clock=clock,
            ),
            revocations=SessionRevocations(store, refresh=serve.token_refresh, clock=clock),
            limiter=failure_limit(store, serve.login_failures, serve.login_window, clock=clock),
            recorder=bridge.recorder,
            public_origin=serve.public_origin,
            clock=clock,
            # Readers reading none of what this serve halts are flagged: they will not stop.
            fleet=FleetView(clock, source_ids=bridge.source_ids),
        )
    except BaseException:
        bridge.close()
        raise
    return Server(create_app(services), services, bridge, tracing)


def _warn_of_missing_grants(store: ServeStore) -> None:
    """Say at start what the role lacks: halts still work, but resumes and reviews would be refused."""
    try:
        lacking = store.grants_missing(("serve", "hold"))
    except ServeStoreError as exc:
        logger.warning("cannot check the serve store's grants: %s", exc)
        return
    if lacking:
        logger.error("serve store %s: %s", store.location, lacking)


def policy_gate(store: ServeStore, clock: Clock = SYSTEM_CLOCK) -> ResumeGate | None:
    """The resumption gate of the policy file, when one exists (else an approver resumes alone).

    Raises:
        ConfigurationError: The policy file exists but is invalid (serve does not start).
    """
    from breakglass.policy import load_policy, policy_file
    from breakglass.resume.gate import PolicyGate

    if not policy_file().exists():
        logger.warning("no policy file %s: an approver resumes alone, ungated", policy_file())
        return None
    return PolicyGate(load_policy().resume, store, clock)


def _state(bridge: Bridge) -> tuple[bool, float | None]:
    state = bridge.engine.state
    age = state.age_ms(bridge.engine.clock.monotonic())
    return state.active, None if age is None else age / 1000.0


def bootstrap_admin(tokens: TokenBook) -> str | None:
    """Make the first admin token when the store has none; its text (shown once), else ``None``."""
    if tokens.any_admin():
        return None
    taken = {t.name for t in tokens.list()}
    name = "admin" if "admin" not in taken else f"admin-{secrets.token_hex(3)}"
    try:
        _, text = tokens.create(name, Role.ADMIN, by="breakglass serve (no live admin token)")
    except ServeStoreError:
        # Another replica starting at the same moment made it first (names are unique).
        if tokens.any_admin():
            return None
        raise
    return text
