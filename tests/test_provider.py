"""The OpenFeature provider never lets the caller's default decide."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.flag_evaluation import Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import ProviderStatus
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from breakglass.engine import StateEngine
from breakglass.guard import Guard
from breakglass.provider import SystemActiveProvider, register
from breakglass.state import Cause, FlagState
from breakglass.testing import ManualClock, ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEY = "system-active"


@pytest.fixture
def wired(clock: ManualClock) -> Iterator[tuple[ScriptedSource, SystemActiveProvider]]:
    source = ScriptedSource("vendor", clock)
    engine = StateEngine(KEY, [source], max_staleness=30.0, clock=clock)
    provider = SystemActiveProvider(engine)
    register(provider, "breakglass")
    yield source, provider
    engine.close()


def _both_apis(default: bool) -> tuple[bool, bool]:
    client = api.get_client("breakglass")
    sync = client.get_boolean_value(KEY, default)
    asynchronous = asyncio.run(client.get_boolean_value_async(KEY, default))
    return sync, asynchronous


def _stale(s: ScriptedSource, c: ManualClock) -> None:
    s.confirm(True)
    c.advance(31)


def _clock_jump(s: ScriptedSource, c: ManualClock) -> None:
    _stale(s, c)
    c.jump_wall(-3600)


def _confirm(value: object) -> Callable[[ScriptedSource, ManualClock], None]:
    return lambda s, c: s.confirm(value)


UNSURE: dict[str, Callable[[ScriptedSource, ManualClock], None]] = {
    "cold-start": lambda s, c: None,
    "stale": _stale,
    "error": lambda s, c: s.unreadable("vendor returned garbage"),
    "error-before-confirmation": lambda s, c: s.fail("connection refused"),
    "flag-missing": lambda s, c: s.missing(),
    "wrong-type-str-false": _confirm("false"),
    "wrong-type-str-true": _confirm("true"),
    "wrong-type-zero": _confirm(0),
    "wrong-type-one": _confirm(1),
    "wrong-type-null": _confirm(None),
    "wrong-type-object": _confirm({}),
    "off": _confirm(False),
    "clock-jump": _clock_jump,
}


@pytest.mark.parametrize("situation", list(UNSURE))
def test_default_true_never_decides(
    situation: str,
    wired: tuple[ScriptedSource, SystemActiveProvider],
    clock: ManualClock,
) -> None:
    """get_boolean_value(KEY, True) is False in every unsure state, sync and async."""
    source, _ = wired
    UNSURE[situation](source, clock)
    assert _both_apis(True) == (False, False)
    details = api.get_client("breakglass").get_boolean_details(KEY, True)
    assert details.error_code is None, "an error code would hand the caller's default back"
    assert details.flag_metadata["cause"] != "active"


def test_source_exception_reads_false(clock: ManualClock) -> None:
    """A source that raises at start reads False through OpenFeature."""

    class Exploding(ScriptedSource):
        def start(self, listener: Callable[..., None]) -> None:
            raise RuntimeError("SDK crashed")

    engine = StateEngine(KEY, [Exploding("x", clock)], max_staleness=30.0, clock=clock)
    register(SystemActiveProvider(engine), "breakglass")
    try:
        assert _both_apis(True) == (False, False)
    finally:
        engine.close()


def test_fresh_true_reads_true_with_metadata(
    wired: tuple[ScriptedSource, SystemActiveProvider], clock: ManualClock
) -> None:
    """A fresh true reads True, with cause, source, confirmed_at and age_ms."""
    source, _ = wired
    source.confirm(True)
    clock.advance(1.5)
    assert _both_apis(False) == (True, True)
    details = api.get_client("breakglass").get_boolean_details(KEY, False)
    assert details.reason == Reason.CACHED
    assert details.variant == "on"
    meta = details.flag_metadata
    assert meta["cause"] == "active"
    assert meta["source"] == "vendor"
    assert meta["age_ms"] == pytest.approx(1500.0)
    assert str(meta["confirmed_at"]).endswith("Z")


@pytest.mark.parametrize(
    ("situation", "reason"),
    [
        ("cold-start", Reason.DEFAULT),
        ("stale", Reason.STALE),
        ("error", Reason.ERROR),
        ("off", Reason.DISABLED),
    ],
)
def test_reasons(
    situation: str,
    reason: Reason,
    wired: tuple[ScriptedSource, SystemActiveProvider],
    clock: ManualClock,
) -> None:
    """Each halted state carries an OpenFeature reason."""
    source, _ = wired
    UNSURE[situation](source, clock)
    assert api.get_client("breakglass").get_boolean_details(KEY, True).reason == reason


def test_other_flags_and_types_are_not_served(
    wired: tuple[ScriptedSource, SystemActiveProvider],
) -> None:
    """Another key as a string is FLAG_NOT_FOUND; the served key as a string is a type mismatch."""
    client = api.get_client("breakglass")
    assert client.get_string_details("other-flag", "x").error_code == "FLAG_NOT_FOUND"
    assert client.get_string_details(KEY, "x").error_code == "TYPE_MISMATCH"


def test_a_misspelt_key_reads_false_not_the_callers_default(
    wired: tuple[ScriptedSource, SystemActiveProvider],
) -> None:
    """`system_active` for `system-active`: False, sync and async, even while the flag is on."""
    source, _ = wired
    source.confirm(True)
    client = api.get_client("breakglass")
    assert client.get_boolean_value("system_active", True) is False
    assert asyncio.run(client.get_boolean_value_async("system_active", True)) is False
    details = client.get_boolean_details("system_active", True)
    assert details.error_code is None
    assert details.flag_metadata["cause"] == "unknown_flag"


def test_the_resolve_path_cannot_raise(clock: ManualClock) -> None:
    """An exception while answering is False (reason ERROR), never the caller's default."""

    class Exploding(StateEngine):
        @property
        def state(self) -> FlagState:
            raise RecursionError("maximum recursion depth exceeded")

    source = ScriptedSource("vendor", clock)
    engine = Exploding(KEY, [source], max_staleness=30.0, clock=clock)
    register(SystemActiveProvider(engine), "breakglass")
    try:
        assert _both_apis(default=True) == (False, False)
        details = api.get_client("breakglass").get_boolean_details(KEY, True)
        assert (details.reason, details.error_code) == (Reason.ERROR, None)
        assert "RecursionError" in str(details.flag_metadata["detail"])
    finally:
        engine.close()


def test_shutdown_of_openfeature_never_closes_a_shared_engine(clock: ManualClock) -> None:
    """By default the provider does not own the engine: api.shutdown() leaves the guard deciding."""
    source = ScriptedSource("vendor", clock)
    engine = StateEngine(KEY, [source], max_staleness=30.0, clock=clock)
    guard = Guard(engine)
    register(SystemActiveProvider(engine), "breakglass")
    try:
        source.confirm(True)
        assert guard.active
        api.shutdown()
        assert engine.state.cause is Cause.ACTIVE, "the guard's engine must survive api.shutdown()"
        source.confirm(False)
        assert guard.active is False
    finally:
        engine.close()


class _RaisingHook(Hook):
    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext | None:
        raise RuntimeError("a hook's bug")


@pytest.mark.parametrize("where", ["shutdown", "replaced", "hook"])
def test_where_openfeature_decides_only_a_false_default_fails_closed(
    wired: tuple[ScriptedSource, SystemActiveProvider], where: str
) -> None:
    """Pinned limits (docs/architecture.md, How it fails): OpenFeature serves the caller's default.

    The provider is not asked at all after api.shutdown() or when a hook raises: `True` as
    the default then reads true, `False` reads false. When another provider is bound to the
    domain, that provider answers. Hence the rules: pass False, check who answers the
    domain, or read guard.active.
    """
    source, _ = wired
    source.confirm(False)
    if where == "shutdown":
        api.shutdown()
    elif where == "replaced":
        api.set_provider_and_wait(
            InMemoryProvider({KEY: InMemoryFlag("on", {"on": True, "off": False})}),
            domain="breakglass",
        )
    else:
        api.add_hooks([_RaisingHook()])
    try:
        if where == "replaced":
            # Another provider answers for the domain: no default helps; only a check of who
            # answers does (or guard.active, which OpenFeature cannot touch).
            assert api.get_provider_metadata("breakglass").name != "breakglass"
            assert _both_apis(default=False) == (True, True)
        else:
            assert _both_apis(default=False) == (False, False)
            assert _both_apis(default=True) == (True, True), "OpenFeature's decision, not ours"
    finally:
        api.clear_hooks()


def test_domain_leaves_the_default_provider_alone(
    wired: tuple[ScriptedSource, SystemActiveProvider],
) -> None:
    """Registering under a domain never replaces the host's default provider."""
    api.set_provider_and_wait(
        InMemoryProvider({"other": InMemoryFlag("on", {"on": True, "off": False})})
    )
    source, _ = wired
    source.confirm(True)
    assert api.get_client().get_boolean_value("other", False) is True
    assert api.get_client("breakglass").get_boolean_value(KEY, False) is True
    assert api.get_provider_metadata().name == "In-Memory Provider"
    assert api.get_provider_metadata("breakglass").name == "breakglass"


def test_events_on_flips_and_health(
    wired: tuple[ScriptedSource, SystemActiveProvider], clock: ManualClock
) -> None:
    """Flips emit CONFIGURATION_CHANGED; health changes emit READY / STALE / ERROR."""
    client = api.get_client("breakglass")
    events: list[tuple[ProviderEvent, EventDetails]] = []
    lock = threading.Lock()
    arrived = threading.Semaphore(0)

    def record(event: ProviderEvent) -> Callable[[EventDetails], None]:
        def handler(details: EventDetails) -> None:
            with lock:
                events.append((event, details))
            arrived.release()

        return handler

    for event in (
        ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
        ProviderEvent.PROVIDER_STALE,
        ProviderEvent.PROVIDER_ERROR,
        ProviderEvent.PROVIDER_READY,
    ):
        client.add_handler(event, record(event))
    # add_handler runs the READY handler at once for a ready provider: drain it.
    assert arrived.acquire(timeout=5)
    with lock:
        events.clear()

    source, _ = wired

    def step(action: Callable[[], object], expected: set[ProviderEvent]) -> None:
        action()
        for _ in expected:
            assert arrived.acquire(timeout=5), f"missing one of {expected}"
        with lock:
            got = {event for event, _ in events}
            events.clear()
        assert got == expected

    step(
        lambda: source.confirm(True),
        {ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_READY},
    )
    step(lambda: source.confirm(False), {ProviderEvent.PROVIDER_CONFIGURATION_CHANGED})
    step(source.missing, {ProviderEvent.PROVIDER_ERROR})
    assert client.get_provider_status() == ProviderStatus.ERROR
    assert client.get_boolean_value(KEY, True) is False
    step(
        lambda: source.confirm(True),
        {ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_READY},
    )

    def age_out() -> None:
        clock.advance(31)
        source.fail("timeout")

    step(
        age_out,
        {ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_STALE},
    )
    assert client.get_provider_status() == ProviderStatus.STALE
    assert client.get_boolean_value(KEY, True) is False


def test_initialize_is_fast_and_never_raises(clock: ManualClock) -> None:
    """initialize returns at once even when the engine cannot start."""

    class Broken(StateEngine):
        def start(self) -> None:
            raise RuntimeError("boom")

    engine = Broken(KEY, [], max_staleness=30.0, clock=clock)
    provider = SystemActiveProvider(engine)
    register(provider, "breakglass")
    assert api.get_client("breakglass").get_provider_status() == ProviderStatus.READY
    assert api.get_client("breakglass").get_boolean_value(KEY, True) is False
