"""The OpenFeature provider that serves ``system-active``, failing closed.

OpenFeature returns the *caller's* default when a provider reports an error
or is not ready, so a caller that passes ``True`` would fail open. This
provider therefore never reports an error for the flag it serves: every
unsure state is answered with ``False`` itself, with a reason (``STALE``,
``ERROR``, ``DEFAULT``) and metadata (cause, source, confirmed_at, age_ms).
Register it with :func:`register`, under a domain, so it never replaces the
host's default provider and is ready before the first read.

The resolve path cannot raise (an exception would hand the caller's default
back), and any boolean asked of this provider under a key it does not serve
(``system_active`` for ``system-active``) is answered ``False`` too. Where
OpenFeature itself decides without asking the provider (after
``api.shutdown()``, when another provider is bound to the domain, when a hook
raises, before the provider is ready) only the caller's default can fail
closed: pass ``False`` (see "How it fails" in ``docs/architecture.md``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from breakglass.clock import isoformat_ms
from breakglass.state import Cause, FlagState

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from breakglass.engine import StateEngine

logger = logging.getLogger("breakglass")

DEFAULT_DOMAIN = "breakglass"

T = TypeVar("T")

_REASONS: dict[Cause, str] = {
    Cause.ACTIVE: Reason.CACHED,
    Cause.OFF: Reason.DISABLED,
    Cause.STALE: Reason.STALE,
    Cause.UNCONFIRMED: Reason.DEFAULT,
    Cause.ERROR: Reason.ERROR,
    Cause.FLAG_MISSING: Reason.ERROR,
    Cause.WRONG_TYPE: Reason.ERROR,
    Cause.STORE_UNAVAILABLE: Reason.ERROR,
    Cause.CLOSED: Reason.DEFAULT,
    Cause.READER_STOPPED: Reason.ERROR,
}


def openfeature_reason(cause: Cause) -> str:
    """The OpenFeature reason a decision is reported with (also over OFREP)."""
    return _REASONS[cause]


def _health(cause: Cause) -> str:
    match cause:
        case Cause.ACTIVE | Cause.OFF:
            return "ready"
        case Cause.STALE | Cause.UNCONFIRMED:
            return "stale"
        case (
            Cause.ERROR
            | Cause.FLAG_MISSING
            | Cause.WRONG_TYPE
            | Cause.STORE_UNAVAILABLE
            | Cause.CLOSED
            | Cause.READER_STOPPED
        ):
            return "error"


class SystemActiveProvider(AbstractProvider):
    """An OpenFeature provider for one boolean flag, answered from a :class:`StateEngine`.

    Args:
        engine: The engine that decides. :meth:`initialize` starts it and
            :meth:`shutdown` closes it only when ``owns_engine`` is ``True``.
        owns_engine: Whether the provider's shutdown closes the engine. Off by
            default: an engine is usually shared with a guard, and
            ``api.shutdown()`` (or another provider replacing this one) must
            never stop the guard's decisions.

    Evaluations read the engine's precomputed state: no I/O, no lock. The
    provider emits ``PROVIDER_CONFIGURATION_CHANGED`` when the flag flips and
    ``PROVIDER_READY`` / ``PROVIDER_STALE`` / ``PROVIDER_ERROR`` when its health
    changes (from the engine's thread; OpenFeature runs handlers on a pool).
    """

    def __init__(self, engine: StateEngine, *, owns_engine: bool = False) -> None:
        super().__init__()
        self._engine = engine
        self._owns_engine = owns_engine
        self._flag_key = engine.flag_key
        self._unsubscribe: Callable[[], None] | None = None
        self._last_active: bool | None = None
        self._last_health: str | None = None
        self._warned_keys: set[str] = set()

    def __repr__(self) -> str:
        return f"SystemActiveProvider(flag_key={self._flag_key!r})"

    def get_metadata(self) -> Metadata:
        """Name the provider ``breakglass``."""
        return Metadata(name="breakglass")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start the engine unless already started (near-instant: sources connect in the background).

        Never raises. Starting is idempotent, so an engine the bridge started is
        left as it is; one nobody started is started here, not left unread.
        """
        del evaluation_context
        try:
            state = self._engine.state
            self._last_active, self._last_health = state.active, _health(state.cause)
            self._unsubscribe = self._engine.subscribe(self._on_change)
            self._engine.start()
        except Exception:
            logger.exception("breakglass engine failed to start; serving halted")

    def shutdown(self) -> None:
        """Stop listening, and close the engine only if this provider owns it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_engine:
            self._engine.close()

    # ----------------------------------------------------------------- evaluation

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,  # noqa: FBT001 -- OpenFeature's signature
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """Answer from the engine; never raises, and ``default_value`` never decides.

        A key this provider does not serve is answered ``False`` as well: in the
        domain of a stop button, a misspelt key must not run on the caller's
        default. An unexpected exception is answered ``False`` (reason ``ERROR``).
        """
        del evaluation_context, default_value
        try:
            if flag_key != self._flag_key:
                return self._unknown_key(flag_key)
            return self._details(self._engine.state)
        except Exception as exc:
            logger.exception("breakglass could not answer %r; serving False", flag_key)
            return FlagResolutionDetails(
                value=False,
                reason=Reason.ERROR,
                variant="off",
                flag_metadata={
                    "cause": Cause.ERROR.value,
                    "detail": f"breakglass could not read its decision: {type(exc).__name__}",
                },
            )

    def _unknown_key(self, flag_key: str) -> FlagResolutionDetails[bool]:
        if flag_key not in self._warned_keys:
            self._warned_keys.add(flag_key)
            logger.warning(
                "OpenFeature asked breakglass for %r, but it serves %r: answering False",
                flag_key,
                self._flag_key,
            )
        # No error_code: OpenFeature would replace this False with the caller's default.
        return FlagResolutionDetails(
            value=False,
            reason=Reason.ERROR,
            variant="off",
            flag_metadata={
                "cause": "unknown_flag",
                "detail": f"breakglass serves {self._flag_key!r}, not {flag_key!r}",
            },
        )

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,  # noqa: FBT001 -- OpenFeature's signature
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """As :meth:`resolve_boolean_details`; it never blocks, so no thread hop is needed."""
        return self.resolve_boolean_details(flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """Only the boolean flag is served."""
        del evaluation_context
        return self._wrong_kind(flag_key, default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """Only the boolean flag is served."""
        del evaluation_context
        return self._wrong_kind(flag_key, default_value)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """Only the boolean flag is served."""
        del evaluation_context
        return self._wrong_kind(flag_key, default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        """Only the boolean flag is served."""
        del evaluation_context
        return self._wrong_kind(flag_key, default_value)

    def _details(self, state: FlagState) -> FlagResolutionDetails[bool]:
        meta: dict[str, str | float | bool] = {"cause": state.cause.value}
        if state.source is not None:
            meta["source"] = state.source
        if state.confirmed_at is not None:
            meta["confirmed_at"] = isoformat_ms(state.confirmed_at)
        age = state.age_ms(self._engine.clock.monotonic())
        if age is not None:
            meta["age_ms"] = round(age, 3)
        if state.detail:
            meta["detail"] = state.detail
        # No error_code, ever: OpenFeature would replace our False with the caller's default.
        return FlagResolutionDetails(
            value=state.active,
            reason=openfeature_reason(state.cause),
            variant="on" if state.active else "off",
            flag_metadata=meta,
        )

    def _wrong_kind(self, flag_key: str, default_value: T) -> FlagResolutionDetails[T]:
        if flag_key != self._flag_key:
            return _not_found(flag_key, default_value)
        return FlagResolutionDetails(
            value=default_value,
            reason=Reason.ERROR,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message=f"{flag_key} is a boolean flag",
        )

    # ----------------------------------------------------------------- events

    def _on_change(self, state: FlagState) -> None:
        health = _health(state.cause)
        if state.active != self._last_active:
            self._last_active = state.active
            self.emit_provider_configuration_changed(
                ProviderEventDetails(
                    flags_changed=[self._flag_key],
                    message=f"{self._flag_key} is now {'active' if state.active else 'halted'}",
                    metadata={"cause": state.cause.value, "active": state.active},
                )
            )
        if health != self._last_health:
            self._last_health = health
            details = ProviderEventDetails(
                message=state.detail, metadata={"cause": state.cause.value}
            )
            if health == "ready":
                self.emit_provider_ready(details)
            elif health == "stale":
                self.emit_provider_stale(details)
            else:
                # GENERAL, never PROVIDER_FATAL: a FATAL provider is skipped and the caller's default served.
                details.error_code = ErrorCode.GENERAL
                self.emit_provider_error(details)


def _not_found(flag_key: str, default_value: T) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default_value,
        reason=Reason.ERROR,
        error_code=ErrorCode.FLAG_NOT_FOUND,
        error_message=f"breakglass serves only its own flag, not {flag_key!r}",
    )


def register(provider: SystemActiveProvider, domain: str = DEFAULT_DOMAIN) -> None:
    """Bind ``provider`` to an OpenFeature domain and wait for it to be ready.

    ``set_provider`` does not wait (OpenFeature 0.10), and until a provider is
    ready OpenFeature serves the caller's default; waiting here is cheap
    because :meth:`SystemActiveProvider.initialize` is near-instant.
    """
    api.set_provider_and_wait(provider, domain=domain)
