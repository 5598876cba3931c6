"""The shared provider conformance suite (``docs/conformance.md``, C1-C27).

Written once here, run by every provider against its real or
protocol-faithful server. A provider's test module supplies a harness and
subclasses :class:`ProviderConformance`::

    class TestUnleashConformance(ProviderConformance):
        @pytest.fixture
        def harness(self, unleash_server) -> ConformanceHarness:
            return UnleashHarness(unleash_server)

Every bound comes from the harness's ``poll_bound`` and the suite's short
``max_staleness``. A behaviour a vendor cannot express raises
:class:`NotExpressible` in the harness and is reported as skipped *with that
reason*; a server that cannot start must fail in the harness fixture, never skip.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pytest
from openfeature import api

from breakglass.bridge import Bridge
from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import ConfigurationError, NotServedError
from breakglass.provider import register
from breakglass.seams import Acknowledgement
from breakglass.state import Cause, FlagState
from breakglass.testing.forked import Child

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from breakglass.settings import Settings

MAX_STALENESS = 1.0
"""Seconds: short, so the staleness cases finish quickly."""

MARGIN = 1.5
"""Seconds of scheduling slack on this suite's time bounds (two cores, busy CI)."""


class NotExpressible(Exception):  # noqa: N818 -- reads as what it says
    """The vendor cannot express this situation (for example a non-boolean flag)."""


class ConformanceHarness(Protocol):
    """**Protocol**: what a provider's test module gives the shared suite.

    The harness owns the vendor's server (real or protocol-faithful) and can
    change the flag behind the bridge's back, as an admin in the dashboard would.
    """

    poll_bound: float
    """Seconds a halt may take to reach a reader by design (0 for streaming).

    A harness may also set ``resume_bound`` when turning the flag back on takes
    longer by design (for example when a second, slower reader must agree).
    """

    def settings(self, **overrides: Any) -> Settings:
        """Settings that point a bridge at the server (a fresh ``state_dir`` each call unless given)."""
        ...

    def set_from_dashboard(self, active: bool) -> None:  # noqa: FBT001
        """Set the flag through the vendor, not through breakglass."""
        ...

    def vendor_value(self) -> bool | None:
        """The flag's value as the vendor holds it (``None``: no such flag)."""
        ...

    def delete_flag(self) -> None:
        """Delete or archive the flag."""
        ...

    def set_wrong_type(self) -> None:
        """Make the vendor serve a non-boolean (raise :class:`NotExpressible` if it cannot)."""
        ...

    def serve_garbage(self) -> None:
        """Make the vendor answer 5xx, malformed or truncated bodies (or the local equivalent)."""
        ...

    def stop(self) -> None:
        """Take the vendor away (connections refused)."""
        ...

    def stall(self) -> None:
        """Freeze the vendor: connections stay open, nothing answers."""
        ...

    def restore(self) -> None:
        """Undo :meth:`stop`, :meth:`stall`, :meth:`serve_garbage`, :meth:`delete_flag` and :meth:`set_wrong_type`."""
        ...

    def bad_credentials(self) -> Settings:
        """Settings with wrong credentials (raise :class:`NotExpressible` if there are none)."""
        ...

    def secrets(self) -> list[str]:
        """Every secret value in the settings, to prove none is ever shown."""
        ...

    def away_causes(self) -> frozenset[Cause]:
        """Causes accepted while the vendor is away (normally ``stale``)."""
        ...

    # Optional (a harness without them is NotExpressible for C21/C22):
    #   serve_true_while_off(): make readers get true even with the vendor's switch off
    #       (an off variation serving true, a change that never reaches the SDK's data);
    #   exclude_service_while_on(): make readers get false with the switch on
    #       (targeting, strategies or constraints that leave the service's context out).
    # restore() undoes both.
    #   control(bridge): the bridge whose admin and audit change and record the flag ``bridge``
    #       reads (a relay's workers have none: the operator halts upstream); ``bridge`` itself
    #       when absent.
    #   not_expressible: a mapping from a case ("C15") to why this provider cannot express it
    #       at all; the case is reported as skipped with that reason.


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.005
) -> float | None:
    """Poll ``predicate`` until true; return the seconds it took, or ``None`` on timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)


class ProviderConformance:
    """The conformance cases; a provider's test class subclasses this and adds a ``harness`` fixture."""

    margin: ClassVar[float] = MARGIN

    @pytest.fixture
    def harness(self) -> ConformanceHarness:
        """Overridden by each provider's test class."""
        raise NotImplementedError("a provider's conformance class must define the harness fixture")

    @pytest.fixture
    def bridge_factory(self, harness: ConformanceHarness) -> Iterator[Callable[..., Bridge]]:
        """Build started bridges on the harness's settings; all are closed after the test."""
        made: list[Bridge] = []

        def make(**overrides: Any) -> Bridge:
            overrides.setdefault("max_staleness", MAX_STALENESS)
            bridge = Bridge.from_settings(harness.settings(**overrides))
            made.append(bridge)
            return bridge.start()

        yield make
        for bridge in made:
            bridge.close()

    @pytest.fixture(autouse=True)
    def _expressible(self, harness: ConformanceHarness, request: pytest.FixtureRequest) -> None:
        """A case the harness declares not expressible is skipped with its reason, never silently."""
        case = re.match(r"test_c(\d+)", request.function.__name__)
        reasons: dict[str, str] = getattr(harness, "not_expressible", {})
        reason = reasons.get(f"C{int(case.group(1))}") if case else None
        if reason:
            pytest.skip(f"not expressible by this provider: {reason}")

    @pytest.fixture(autouse=True)
    def _no_secrets_in_logs(
        self, harness: ConformanceHarness, caplog: pytest.LogCaptureFixture
    ) -> Iterator[None]:
        """C17: no secret appears in any log line of any case."""
        caplog.set_level("DEBUG")
        yield
        text = caplog.text
        for secret in harness.secrets():
            assert secret not in text, "a secret reached the log"

    # -------------------------------------------------------------- helpers

    def _active_within(self, bridge: Bridge, timeout: float) -> float | None:
        return wait_for(lambda: bridge.engine.active, timeout)

    def _halted_within(self, bridge: Bridge, timeout: float) -> float | None:
        return wait_for(lambda: not bridge.engine.active, timeout)

    def _bound(self, harness: ConformanceHarness) -> float:
        return harness.poll_bound + self.margin

    def _resume_bound(self, harness: ConformanceHarness) -> float:
        return float(getattr(harness, "resume_bound", harness.poll_bound)) + self.margin

    def _control(self, harness: ConformanceHarness, bridge: Bridge) -> Bridge:
        """Where an operator halts, resumes and audits the flag ``bridge`` reads (see ``control``)."""
        control: Callable[[Bridge], Bridge] | None = getattr(harness, "control", None)
        return bridge if control is None else control(bridge)

    # -------------------------------------------------------------- cases

    def test_c01_first_read_on(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C1: the flag on at start reads active within poll_bound + 1 s."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory()
        assert (
            self._active_within(
                bridge, float(getattr(harness, "resume_bound", harness.poll_bound)) + 1.0
            )
            is not None
        ), bridge.engine.state
        assert bridge.engine.state.cause is Cause.ACTIVE

    def test_c02_c03_dashboard_off_then_on(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C2/C3: dashboard changes reach the reader, one notification each."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        changes: list[FlagState] = []
        bridge.engine.subscribe(changes.append)
        harness.set_from_dashboard(False)
        assert self._halted_within(bridge, self._bound(harness)) is not None
        assert bridge.engine.state.cause is Cause.OFF
        # The guard reads a new deadline before listeners hear of it, so the start's own "active"
        # may reach a listener subscribed just after the guard saw it. Once the halt is heard
        # that one has come or never will (an older decision is not announced after a newer one,
        # nor the same decision twice): drop it, and only it.
        heard = wait_for(lambda: any(not s.active for s in changes), self._bound(harness))
        assert heard is not None, changes
        if changes and changes[0].active:
            del changes[0]
        harness.set_from_dashboard(True)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        # The guard reads the new deadline before listeners hear of the change: wait for them too.
        wait_for(lambda: len(changes) >= 2, self._bound(harness))
        assert [s.active for s in changes] == [False, True], changes

    def test_c04_admin_writes_with_actor_and_reason(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C4: FlagAdmin changes show in the vendor and come back acknowledged."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        control = self._control(harness, bridge)
        ack = control.halt(actor="conformance@test", reason="C4 halt")
        assert ack.active is False
        assert harness.vendor_value() is False
        assert self._halted_within(bridge, self._bound(harness)) is not None
        ack = control.resume(actor="conformance@test", reason="C4 resume")
        assert ack.active is True
        assert harness.vendor_value() is True
        assert control.admin.get_active() is True
        assert self._active_within(bridge, self._resume_bound(harness)) is not None

    def test_c05_c07_vendor_away_then_back(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C5/C7: the vendor going away halts within max_staleness; its return resumes."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory()
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        harness.stop()
        try:
            took = self._halted_within(bridge, MAX_STALENESS + self._bound(harness))
            assert took is not None, bridge.engine.state
            assert bridge.engine.state.cause in harness.away_causes()
        finally:
            harness.restore()
        assert self._active_within(bridge, self._resume_bound(harness) + 2.0) is not None

    def test_c06_vendor_frozen(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C6: a frozen vendor is not a confirmation: halted as in C5."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory()
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        harness.stall()
        try:
            took = self._halted_within(bridge, MAX_STALENESS + self._bound(harness))
            assert took is not None, bridge.engine.state
            assert bridge.engine.state.cause in {Cause.STALE, *harness.away_causes()}
        finally:
            harness.restore()

    def test_c08_cold_start_vendor_away(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C8: cold start with the vendor away reads halted, never the caller's default."""
        harness.set_from_dashboard(True)
        harness.stop()
        try:
            bridge = bridge_factory()
            register(bridge.openfeature_provider(), "conformance")
            client = api.get_client("conformance")
            for _ in range(20):
                assert client.get_boolean_value(bridge.settings.flag_key, True) is False
                time.sleep(0.02)
            assert bridge.engine.state.cause in {Cause.UNCONFIRMED, *harness.away_causes()}
        finally:
            harness.restore()

    def test_c09_flag_deleted(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C9: a deleted or archived flag reads halted, cause flag_missing (not off)."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        harness.delete_flag()
        try:
            assert self._halted_within(bridge, self._bound(harness)) is not None
            wait_for(lambda: bridge.engine.state.cause is Cause.FLAG_MISSING, self._bound(harness))
            assert bridge.engine.state.cause is Cause.FLAG_MISSING
        finally:
            harness.restore()

    def test_c10_wrong_type(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C10: a non-boolean value reads halted, cause wrong_type."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        try:
            harness.set_wrong_type()
        except NotExpressible as exc:
            pytest.skip(f"not expressible by this vendor: {exc}")
        try:
            assert self._halted_within(bridge, self._bound(harness)) is not None
            assert bridge.engine.state.cause is Cause.WRONG_TYPE
        finally:
            harness.restore()

    def test_c11_garbage_answers(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C11: 5xx / malformed answers halt after staleness, without a crash."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory()
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        harness.serve_garbage()
        try:
            assert self._halted_within(bridge, MAX_STALENESS + self._bound(harness)) is not None
            assert bridge.engine.state.cause in {Cause.STALE, Cause.ERROR}
        finally:
            harness.restore()
        assert self._active_within(bridge, self._resume_bound(harness) + 2.0) is not None

    def test_c12_wrong_credentials(self, harness: ConformanceHarness) -> None:
        """C12: wrong credentials read halted at once (cause error); errors name the setting, never the secret."""
        try:
            settings = harness.bad_credentials()
        except NotExpressible as exc:
            pytest.skip(f"not expressible by this vendor: {exc}")
        settings = settings.model_copy(update={"max_staleness": MAX_STALENESS})
        bridge = Bridge.from_settings(settings).start()
        try:
            # The vendor answered "not allowed": a confirmed problem, halted at once (not "away").
            took = wait_for(lambda: bridge.engine.state.cause is Cause.ERROR, self._bound(harness))
            state = bridge.engine.state
            assert took is not None, state
            assert state.active is False
            for secret in harness.secrets():
                assert secret not in repr(state)
                assert secret not in repr(bridge.backend)
        finally:
            bridge.close()

    def test_c13_freshness_advances_only_while_healthy(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C13: confirmed_at advances while the vendor is healthy and stops when it is not."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        first = bridge.backend.source.current().confirmed_at
        interval = max(harness.poll_bound, 0.2) * 2
        time.sleep(interval)
        second = bridge.backend.source.current().confirmed_at
        assert first is not None
        assert second is not None
        assert second > first
        harness.stop()
        try:
            time.sleep(interval)
            frozen = bridge.backend.source.current().confirmed_at
            time.sleep(interval)
            assert bridge.backend.source.current().confirmed_at == frozen
        finally:
            harness.restore()

    def test_c14_restart_while_halted(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C14: a process restarted while halted, with the vendor away, stays halted."""
        harness.set_from_dashboard(False)
        first = bridge_factory(max_staleness=30.0)
        assert wait_for(lambda: first.engine.state.cause is Cause.OFF, self._bound(harness))
        state_dir = first.settings.state_dir
        first.close()
        harness.stop()
        try:
            second = bridge_factory(max_staleness=30.0, state_dir=state_dir)
            time.sleep(0.2)
            state = second.engine.state
            assert state.active is False
            assert state.cause in {Cause.OFF, *harness.away_causes()}, state
        finally:
            harness.restore()

    def test_c15_audit_records_and_resumable_pulls(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C15: changes appear as normalised records; a second pull adds nothing; pulls resume."""
        harness.set_from_dashboard(True)
        bridge = self._control(harness, bridge_factory(max_staleness=30.0))
        before = [r for page in bridge.audit.pull(None) for r in page.records]
        cursor = None
        for page in bridge.audit.pull(None):
            cursor = page.cursor
        bridge.halt(actor="conformance@test", reason="C15 halt")
        bridge.resume(actor="conformance@test", reason="C15 resume")
        new = wait_for_records(bridge, cursor, 2, self._bound(harness))
        actions = [r.action.value for r in new]
        assert actions[-2:] == ["disabled", "enabled"], actions
        off, on = new[-2], new[-1]
        assert (off.value_before, off.value_after) == (True, False)
        assert (on.value_before, on.value_after) == (False, True)
        assert off.occurred_at <= on.occurred_at
        assert off.raw, "the vendor's entry is kept verbatim"
        ids = {r.id for r in before} | {r.id for r in new}
        assert len(ids) == len(before) + len(new), "a record came twice"
        last = None
        for page in bridge.audit.pull(cursor):
            last = page.cursor
        assert [r for page in bridge.audit.pull(last) for r in page.records] == []

    def test_c20_changes_confirmed_by_the_served_value(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C20: every halt and resume says what readers are served (not the switch) and what it changed."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        control = self._control(harness, bridge)
        ack = control.halt(actor="conformance@test", reason="C20 halt")
        assert (ack.served, ack.confirmed) == (False, True), ack.served_detail
        assert ack.served_detail
        assert ack.target
        for secret in harness.secrets():
            assert secret not in f"{ack.target} {ack.served_detail}", (
                "a secret in the acknowledgement"
            )
        assert self._halted_within(bridge, self._bound(harness)) is not None
        ack = control.resume(actor="conformance@test", reason="C20 resume")
        assert (ack.served, ack.confirmed) == (True, True), ack.served_detail
        assert self._active_within(bridge, self._resume_bound(harness)) is not None

    def test_c21_halt_readers_do_not_see_is_not_halted(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C21: a halt the vendor acknowledges but readers are still served true raises, never succeeds."""
        self._check_not_served(harness, bridge_factory, active=False)

    def test_c22_resume_readers_do_not_see_is_not_resumed(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C22: a resume whose targeting leaves the service out raises; readers stay halted."""
        self._check_not_served(harness, bridge_factory, active=True)

    def _check_not_served(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge], *, active: bool
    ) -> None:
        harness.set_from_dashboard(not active)
        _optional(harness, "exclude_service_while_on" if active else "serve_true_while_off")
        try:
            bridge = bridge_factory(max_staleness=30.0)
            control = self._control(harness, bridge)
            change = control.resume if active else control.halt
            with pytest.raises(NotServedError) as raised:
                change(actor="conformance@test", reason="C21/C22")
            ack = raised.value.ack
            assert isinstance(ack, Acknowledgement)
            assert ack.served is not active, ack.served_detail
            assert ("NOT RESUMED" if active else "NOT HALTED") in str(raised.value)
            # The verdict agrees with the readers: they still read the old value.
            if active:
                time.sleep(self._resume_bound(harness))
                assert bridge.engine.active is False, bridge.engine.state
            else:
                assert self._active_within(bridge, self._resume_bound(harness)) is not None
        finally:
            harness.restore()

    def test_c16_close_releases_threads(self, harness: ConformanceHarness) -> None:
        """C16: closing releases the provider's threads within a second."""
        harness.set_from_dashboard(True)
        before = set(threading.enumerate())
        bridge = Bridge.from_settings(harness.settings(max_staleness=MAX_STALENESS)).start()
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        bridge.close()
        leftover = wait_for(lambda: not (set(threading.enumerate()) - before), 1.0)
        assert leftover is not None, sorted(t.name for t in set(threading.enumerate()) - before)
        assert bridge.engine.state.cause is Cause.CLOSED

    # -------------------------------------------------------------- how it fails (docs/architecture.md)

    def test_c18_reader_survives_any_exception(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C18: whatever a read raises halts at once (cause error); the reader carries on and recovers."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        loops = list(bridge.backend.source.readers())
        assert loops, "every source reads on a breakglass.reading.ReadingLoop"
        loop = loops[0]
        real = loop._step

        def hostile() -> Any:
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

        loop._step = hostile
        try:
            took = wait_for(lambda: bridge.engine.state.cause is Cause.ERROR, self._bound(harness))
            assert took is not None, bridge.engine.state
            assert bridge.engine.active is False
            assert loop.alive
        finally:
            loop._step = real
        # The loop backs off while reads keep failing: at most 5 s between two of them.
        assert self._active_within(bridge, self._resume_bound(harness) + 6.0) is not None

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_c19_reader_stopped(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C19: a reader thread that ends halts the flag at once with cause reader_stopped."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        loop = next(iter(bridge.backend.source.readers()))

        def leave() -> Any:
            raise SystemExit  # the one thing a reading loop lets through

        loop._step = leave
        took = wait_for(
            lambda: bridge.engine.state.cause is Cause.READER_STOPPED, self._bound(harness)
        )
        assert took is not None, bridge.engine.state
        assert not loop.alive
        assert bridge.engine.active is False

    def test_c23_staleness_budget_within_what_the_provider_confirms(
        self, harness: ConformanceHarness
    ) -> None:
        """C23: a max_staleness the provider cannot confirm within is refused at start (or it confirms faster)."""
        probe = Bridge.from_settings(harness.settings(max_staleness=MAX_STALENESS))
        interval = probe.backend.confirm_interval
        probe.close()
        assert interval > 0, (
            "every provider declares how often it confirms (Backend.confirm_interval)"
        )
        short = harness.settings(max_staleness=interval)
        bridge = Bridge.from_settings(short)
        try:
            if bridge.backend.confirm_interval * 1.25 <= interval:
                return  # the provider adapts: it confirms faster for a shorter budget
            with pytest.raises(ConfigurationError, match="BREAKGLASS_MAX_STALENESS"):
                bridge.start()
            assert bridge.engine.active is False
        finally:
            bridge.close()

    def test_c24_restart_then_a_confirmed_problem_halts_and_is_remembered(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C24: a remembered true does not survive a live "flag missing"; the halt outlives the next restart."""
        harness.set_from_dashboard(True)
        first = bridge_factory(max_staleness=30.0)
        assert self._active_within(first, self._resume_bound(harness)) is not None
        state_dir = first.settings.state_dir
        first.close()
        harness.delete_flag()
        try:
            second = bridge_factory(max_staleness=30.0, state_dir=state_dir)
            took = wait_for(
                lambda: second.engine.state.cause is Cause.FLAG_MISSING, self._bound(harness)
            )
            assert took is not None, second.engine.state
            second.close()
            harness.stop()
            third = bridge_factory(max_staleness=30.0, state_dir=state_dir)
            time.sleep(0.2)
            state = third.engine.state
            assert state.active is False, "the problem halt must be remembered"
            assert state.cause in {Cause.OFF, *harness.away_causes()}, state
        finally:
            harness.restore()

    def test_c25_close_never_serves_true(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C25: from the moment close() begins, guard and OpenFeature read false, sync and async."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        register(bridge.openfeature_provider(), "conformance-close")
        client = api.get_client("conformance-close")
        key = bridge.settings.flag_key
        source = bridge.backend.source
        real_close = source.close
        during: list[tuple[bool, bool, bool]] = []

        def observed_close() -> None:
            # What every reader gets while the vendor SDK is still shutting down.
            during.append(
                (
                    bridge.engine.active,
                    client.get_boolean_value(key, True),
                    asyncio.run(client.get_boolean_value_async(key, True)),
                )
            )
            real_close()

        source.close = observed_close  # type: ignore[method-assign]
        bridge.close()
        assert during == [(False, False, False)], during
        assert bridge.engine.state.cause is Cause.CLOSED

    def test_c26_forked_child_reads_through_its_own_readers(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C26: after fork() the child starts halted, confirms through its own readers, and follows a halt."""
        harness.set_from_dashboard(True)
        bridge = bridge_factory(max_staleness=30.0)
        assert self._active_within(bridge, self._resume_bound(harness)) is not None
        inherited = list(bridge.backend.source.readers())
        bound = self._bound(harness)
        resume_bound = self._resume_bound(harness) + 2.0

        def body(child: Child) -> dict[str, Any]:
            own = [loop for loop in bridge.backend.source.readers() if loop not in inherited]
            active_in = wait_for(lambda: bridge.engine.active, resume_bound)
            child.tell("active")
            child.wait_for_go()
            halted_in = wait_for(lambda: not bridge.engine.active, bound)
            return {
                "own": bool(own) and all(loop.alive for loop in own),
                "active_in": active_in,
                "halted_in": halted_in,
                "cause": bridge.engine.state.cause.value,
            }

        child = Child(body)
        try:
            assert child.heard() == "active"
            harness.set_from_dashboard(False)
            child.go()
            result = child.result(resume_bound + bound + 30.0)
        finally:
            child.kill()
        assert result["own"] is True, result
        assert result["active_in"] is not None, result
        assert result["halted_in"] is not None, result
        assert result["cause"] == Cause.OFF.value, result
        assert self._halted_within(bridge, bound) is not None, "and the parent halts too"

    def test_c27_wall_clock_stepped_back_across_a_restart(
        self, harness: ConformanceHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """C27: an old true does not become fresh because the wall clock moved back across a restart."""
        harness.set_from_dashboard(True)
        first = bridge_factory()
        assert self._active_within(first, self._resume_bound(harness)) is not None
        state_dir = first.settings.state_dir
        first.close()
        harness.stop()
        try:
            time.sleep(MAX_STALENESS + 0.5)  # the remembered true is now too old
            settings = harness.settings(max_staleness=MAX_STALENESS, state_dir=state_dir)
            # The wall clock stepped back: on it alone, the old confirmation looks brand new.
            second = Bridge(
                settings,
                Bridge.from_settings(settings).backends,
                clock=_SteppedClock(-(MAX_STALENESS + 0.5)),
            ).start()
            try:
                time.sleep(0.2)
                assert second.engine.active is False, second.engine.state
            finally:
                second.close()
        finally:
            harness.restore()


def _optional(harness: ConformanceHarness, name: str) -> None:
    """Call the harness's optional situation ``name``; skip, with the reason, where it cannot be expressed."""
    method = getattr(harness, name, None)
    if method is None:
        pytest.skip(f"not expressible by this vendor: the harness has no {name}()")
    try:
        method()
    except NotExpressible as exc:
        pytest.skip(f"not expressible by this vendor: {exc}")


class _SteppedClock:
    """The system's clocks with the wall clock moved by ``offset`` seconds (an NTP step)."""

    def __init__(self, offset: float) -> None:
        self._offset = timedelta(seconds=offset)

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()

    def now(self) -> datetime:
        return SYSTEM_CLOCK.now() + self._offset

    def boot_id(self) -> str | None:
        return SYSTEM_CLOCK.boot_id()


def wait_for_records(bridge: Bridge, cursor: str | None, count: int, timeout: float) -> list[Any]:
    """Pull after ``cursor`` until at least ``count`` records arrived (vendors index lazily)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for page in bridge.audit.pull(cursor) for r in page.records]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.1)
