"""The probe run: toggle the probe flag, time every reader, always put the flag back.

Safety rules, in the order they apply:

1. The probe toggles a dedicated flag (``system-active-probe`` by default) and
   refuses the production flag (the configured ``flag_key`` and the default
   ``system-active``) unless ``allow_production_flag`` is given.
2. Before anything changes it reads the flag's value through the provider's
   :class:`breakglass.seams.FlagAdmin`; at the end it writes that value back
   and reads it again to be sure. A flag that did not exist is left ``False``
   (halted), which reads the same as a missing flag.
3. The restore runs on every way out: the last round, a timed-out or failed
   round, a reader that died, Ctrl-C (SIGINT) and SIGTERM. Signals only set a
   flag that the run checks between steps, so a signal can never land between
   a write and the note of what was written; a second signal does not skip
   the restore.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.audit.recorder import OBSERVED_HOLD_S
from breakglass.bridge import Bridge
from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import BreakglassError, ProbeError
from breakglass.plugins import load_plugin
from breakglass.probe.fleet import Fleet
from breakglass.probe.result import Bounds, ProbeResult, Round, UnexpectedFlip
from breakglass.probe.wire import Kind
from breakglass.relay.process import RelayProcess
from breakglass.settings import DEFAULT_FLAG_KEY, DEFAULT_PROBE_FLAG_KEY
from breakglass.state import Cause
from breakglass.wording import agrees, counted

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from types import FrameType

    from breakglass.probe.fleet import Reader
    from breakglass.probe.wire import ReaderEvent
    from breakglass.seams import FlagAdmin
    from breakglass.settings import Settings

MIN_GAP_S = OBSERVED_HOLD_S[1] + 0.05
"""Seconds every pause lasts at least, so the readers' last flips have settled: each reader
writes its audit record of a flip up to ``OBSERVED_HOLD_S[1]`` after it (stop first, record
after), and a toggle must meet a settled fleet, as a real halt does, not fifty such writes."""

READ_BATCH_S = 0.005
"""Seconds between the probe's reads of its readers' lines during a round. Woken for each line,
the probe would compete for the CPU with the readers still deciding; a line carries the moment
its reader decided, so reading it later changes no figure."""

_RESTORE_ATTEMPTS = 3


MIN_TIMEOUT = 5.0
"""Seconds: the least a reader is given to observe a toggle by default."""


def default_timeout(poll_bound: float) -> float:
    """The default ``--timeout``: twice the provider's declared bound, at least :data:`MIN_TIMEOUT`.

    The bound is the slower of halt and resume by design (Unleash: a resume waits for the SDK's
    next poll of the whole flag set), so a round at the default never times out by design alone.
    """
    return max(MIN_TIMEOUT, 2.0 * poll_bound)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """How a probe run goes.

    Attributes:
        rounds: How many toggles to time.
        readers: How many reader processes observe each toggle.
        timeout: Seconds a reader has to observe a toggle after it was acknowledged;
            ``None``: :func:`default_timeout` of the provider's declared propagation bound.
        flag_key: The flag to toggle.
        allow_production_flag: Permit toggling the production flag itself.
        spacing: The width, in seconds, of the random part of the pause before
            each round; ``None`` uses one poll period of the provider (at least 0.1 s).
        ready_timeout: Seconds the readers have to start and read the flag once.
        seed: Seeds the random pauses (``None``: a random seed, reported).
        actor: Who the changes are recorded as.
        bounds: The limits the run is held to.
        via: ``"relay"``: one ``breakglass relay`` reads the provider and the
            readers read the relay (``BREAKGLASS_PROVIDER=relay``).
    """

    rounds: int = 50
    readers: int = 1
    timeout: float | None = None
    flag_key: str = DEFAULT_PROBE_FLAG_KEY
    allow_production_flag: bool = False
    spacing: float | None = None
    ready_timeout: float = 60.0
    seed: int | None = None
    actor: str = "breakglass-probe"
    bounds: Bounds = field(default_factory=Bounds)
    via: str | None = None

    def __post_init__(self) -> None:
        # The same normalisation as Settings.flag_key, so " system-active" cannot slip past the refusal.
        object.__setattr__(self, "flag_key", self.flag_key.strip())
        if not self.flag_key:
            raise ProbeError("the probe flag key must not be empty")
        if self.rounds < 1:
            raise ProbeError(f"rounds must be at least 1, not {self.rounds}")
        if self.readers < 1:
            raise ProbeError(f"readers must be at least 1, not {self.readers}")
        for name in ("timeout", "ready_timeout"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ProbeError(f"{name} must be positive, not {getattr(self, name)}")
        if self.spacing is not None and self.spacing < 0:
            raise ProbeError(f"spacing must not be negative, not {self.spacing}")
        if self.via not in (None, "relay"):
            raise ProbeError(f"--via must be 'relay', not {self.via!r}")


class ProbeRestoreError(ProbeError):
    """The probe could not put the flag back; the message says how to do it by hand.

    Attributes:
        result: What the run measured before the restore failed.
    """

    def __init__(self, message: str, result: ProbeResult) -> None:
        super().__init__(message)
        self.result = result


class _Interrupted(BaseException):
    """Raised at a safe point after SIGINT or SIGTERM, so `except Exception` cannot swallow it."""


def production_keys(settings: Settings) -> set[str]:
    """The flag keys the probe refuses without ``allow_production_flag``."""
    return {settings.flag_key, DEFAULT_FLAG_KEY}


def check_flag_key(settings: Settings, options: ProbeOptions) -> None:
    """Refuse to toggle the production flag unless explicitly allowed.

    Raises:
        ProbeError: ``options.flag_key`` is a production flag and
            ``options.allow_production_flag`` is not set.
    """
    if options.allow_production_flag:
        return
    same_key = options.flag_key in production_keys(settings)
    # A provider may map keys onto vendor objects (Flagsmith's FEATURE_NAME): compare what is written.
    target = admin_target(settings)
    same_target = target is not None and target == admin_target(
        probe_settings(settings, options.flag_key)
    )
    if same_key or same_target:
        raise ProbeError(
            f"refusing to toggle {options.flag_key!r}: it is (or the provider maps it onto) the "
            "production flag, and every service reading it would halt and resume with each round. "
            f"Probe a dedicated flag (the default is {DEFAULT_PROBE_FLAG_KEY!r}), or pass "
            "--allow-production-flag if stopping production is what you mean"
        )


def admin_target(settings: Settings) -> str | None:
    """The vendor-side object the provider's admin would change for ``settings``, if it says."""
    try:
        backend = load_plugin(settings.provider).create(settings, SYSTEM_CLOCK)
    except BreakglassError:
        return None  # not configured for writing: the run itself will say so
    try:
        target = getattr(backend.admin, "target", None)
        return target if isinstance(target, str) else None
    finally:
        for part in (backend.source, backend.admin, backend.audit):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def probe_settings(settings: Settings, flag_key: str) -> Settings:
    """``settings`` for the probe flag, with every path the readers need pinned down.

    Readers get state directories of their own, so the local provider's store
    is named explicitly: by default it would follow the state directory.
    """
    local = settings.local.model_copy(update={"path": settings.local_file})
    return settings.model_copy(update={"flag_key": flag_key, "local": local})


def reader_overrides(settings: Settings) -> dict[str, Any]:
    """The settings handed to each reader (the rest, credentials included, come from the environment)."""
    return {
        "provider": settings.provider,
        "flag_key": settings.flag_key,
        "max_staleness": settings.max_staleness,
        "local": {
            "path": str(settings.local_file),
            "poll_interval": settings.local.poll_interval,
        },
    }


def relay_environment(settings: Settings, work: Path) -> dict[str, str | None]:
    """The variables of the probe's own relay: the provider's settings, a channel in ``work``.

    ``None`` unsets a variable the probe's own environment may hold for another purpose.
    """
    return {
        "BREAKGLASS_PROVIDER": settings.provider,
        "BREAKGLASS_PROVIDERS": None,
        "BREAKGLASS_FLAG_KEY": settings.flag_key,
        "BREAKGLASS_MAX_STALENESS": str(settings.max_staleness),
        "BREAKGLASS_STATE_DIR": str(work / "relay"),
        "BREAKGLASS_LOCAL__PATH": str(settings.local_file),
        "BREAKGLASS_LOCAL__POLL_INTERVAL": str(settings.local.poll_interval),
        "BREAKGLASS_RELAY__PATH": str(work / "relay.channel"),
        "BREAKGLASS_RELAY__UPSTREAM": None,
        "BREAKGLASS_RELAY__OFREP": None,
    }


def relay_reader_overrides(settings: Settings, work: Path) -> dict[str, Any]:
    """The settings handed to each reader behind the probe's relay."""
    return {
        "provider": "relay",
        "flag_key": settings.flag_key,
        "max_staleness": settings.max_staleness,
        "sections": {"relay": {"path": str(work / "relay.channel")}},
    }


def load_average() -> float | None:
    """The host's 1-minute load average, or ``None`` where there is none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _clean_cause(target: bool) -> str:  # noqa: FBT001 -- the value is the point
    # The one cause a reader reports when it followed the toggle itself (not staleness, not errors).
    return Cause.ACTIVE.value if target else Cause.OFF.value


class _Run:
    def __init__(
        self,
        settings: Settings,
        options: ProbeOptions,
        on_round: Callable[[ProbeResult], None] | None,
        say: Callable[[str], None],
    ) -> None:
        self.settings = probe_settings(settings, options.flag_key)
        self.options = options
        self.timeout = options.timeout or MIN_TIMEOUT  # set from the provider in run()
        self.on_round = on_round
        self.say = say
        self.signal_name: str | None = None
        self.restoring = False
        # What the probe knows of the flag's value: `wrote` once it changed anything,
        # `uncertain` while a write is in flight or failed (the value is then unknown).
        self.wrote = False
        self.uncertain = False
        self.current: bool | None = None

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        if self.restoring:
            self.say(f"{signal.Signals(signum).name}: still restoring the flag, please wait")

    def check(self) -> None:
        """Raise at a safe point once a signal asked the run to stop."""
        if self.signal_name is not None and not self.restoring:
            raise _Interrupted(self.signal_name)

    # ------------------------------------------------------------------ the run

    def run(self) -> ProbeResult:
        options = self.options
        bridge = Bridge.from_settings(self.settings)  # never started: the probe only writes
        try:
            admin = bridge.admin
            original = admin.get_active()
            seed = (
                options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
            )
            if options.timeout is None:
                self.timeout = default_timeout(bridge.backend.poll_bound)
            spacing = (
                options.spacing
                if options.spacing is not None
                else max(0.1, bridge.backend.poll_bound)
            )
            result = ProbeResult(
                provider=bridge.backend.name + (" via relay" if options.via else ""),
                flag_key=self.settings.flag_key,
                readers=options.readers,
                rounds_requested=options.rounds,
                timeout_s=self.timeout,
                spacing_s=spacing,
                seed=seed,
                run_id=uuid.uuid4().hex[:12],
                bounds=options.bounds,
                started_at=SYSTEM_CLOCK.now(),
                original=original,
                load=(load_average(), None),
            )
            self.current = original
            by_hand = "resume" if original else "halt"
            now = "does not exist yet" if original is None else f"now {original}"
            self.say(
                f"probing {result.provider} flag {result.flag_key!r} ({now}); "
                f"should the probe be killed, restore it with: breakglass --provider "
                f"{bridge.backend.name} --flag-key {result.flag_key} {by_hand} --reason 'after probe'"
            )
            with self._signals(), tempfile.TemporaryDirectory(prefix="breakglass-probe-") as work:
                self._measure(admin, result, Path(work), random.Random(seed))  # noqa: S311 -- pacing, not security
        finally:
            bridge.close()
        if not result.restored:
            raise ProbeRestoreError(
                f"could not restore {result.flag_key!r} to {self._restore_value(result)}: "
                f"{result.aborted}; set it by hand (breakglass --provider {self.settings.provider} "
                f"--flag-key {result.flag_key} {'resume' if self._restore_value(result) else 'halt'} "
                "--reason 'restore after probe')",
                result,
            )
        return result

    def _signals(self) -> _SignalScope:
        return _SignalScope(self._on_signal)

    def _measure(
        self, admin: FlagAdmin, result: ProbeResult, work: Path, rng: random.Random
    ) -> None:
        options = self.options
        lifetime = (
            2 * (options.ready_timeout + options.rounds * (self.timeout + result.spacing_s + 30))
            + 600
        )
        fleet, relay = self._readers(work, lifetime)
        try:
            self.check()
            if relay is not None:
                self.say("starting breakglass relay")
                relay.start()
            self.say(f"starting {counted(options.readers, 'reader process', 'reader processes')}")
            begun = time.monotonic()
            fleet.start()
            # The readers' own wait for a first answer starts once they have imported breakglass.
            fleet.wait_ready(options.ready_timeout + 10.0, self.check)
            result.ready_s = round(time.monotonic() - begun, 3)
            self.say(f"{counted(options.readers, 'reader')} ready in {result.ready_s:.1f} s")
            self._settle(fleet, result)
            for index in range(options.rounds):
                pause = MIN_GAP_S + rng.uniform(0.0, result.spacing_s)
                self._listen(fleet, result, time.monotonic() + pause)
                target = not self.current
                result.rounds.append(self._round(admin, fleet, result, index, target, pause))
                if self.on_round is not None:
                    self.on_round(result)
        except _Interrupted as stop:
            result.interrupted = str(stop)
        except BreakglassError as exc:
            result.aborted = str(exc)
        finally:
            self.restoring = True
            try:
                self._restore(admin, result)
            finally:
                fleet.close()
                if relay is not None:
                    relay.stop()
                result.finished_at = SYSTEM_CLOCK.now()
                result.load = (result.load[0], load_average())
                if self.signal_name is not None and result.interrupted is None:
                    result.interrupted = self.signal_name

    def _readers(self, work: Path, lifetime: float) -> tuple[Fleet, RelayProcess | None]:
        """The reader fleet, and the relay it reads through (``--via relay``) or ``None``."""
        relay = None
        overrides = reader_overrides(self.settings)
        if self.options.via == "relay":
            relay = RelayProcess(relay_environment(self.settings, work), work / "relay.log")
            overrides = relay_reader_overrides(self.settings, work)
        fleet = Fleet(
            self.options.readers,
            overrides,
            work,
            ready_timeout=self.options.ready_timeout,
            lifetime=lifetime,
        )
        return fleet, relay

    def _settle(self, fleet: Fleet, result: ProbeResult) -> None:
        """Wait until every reader reads the flag as the vendor holds it."""
        expected = bool(result.original)
        deadline = time.monotonic() + self.timeout
        while True:
            off = [r for r in fleet.readers if r.active is not expected]
            if not off:
                return
            if time.monotonic() >= deadline:
                reader = off[0]
                raise ProbeError(
                    f"{counted(len(off), 'reader')} {agrees(len(off), 'does', 'do')} not read the flag "
                    "as the provider holds it "
                    f"({expected}) within {self.timeout:g} s; reader {reader.index} "
                    f"reads {reader.active} (cause {reader.cause})"
                )
            self._listen(fleet, result, min(deadline, time.monotonic() + 0.05))

    def _listen(self, fleet: Fleet, result: ProbeResult, until: float) -> None:
        """Take in the readers' events until ``until``; any flip now is unexpected."""
        while True:
            self.check()
            fleet.raise_on_problem()
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, READ_BATCH_S))
            for reader, event in fleet.poll(0.0):
                self._unexpected(result, reader, event)

    @staticmethod
    def _unexpected(result: ProbeResult, reader: Reader, event: ReaderEvent) -> None:
        if event.kind is Kind.FLIP:
            result.unexpected.append(
                UnexpectedFlip(reader.index, event.at, event.active, event.cause)
            )

    def _round(
        self,
        admin: FlagAdmin,
        fleet: Fleet,
        result: ProbeResult,
        index: int,
        target: bool,  # noqa: FBT001
        pause: float,
    ) -> Round:
        options = self.options
        reason = f"latency probe {result.run_id}: round {index + 1} of {options.rounds}"
        self.wrote = True
        self.uncertain = True
        started = time.monotonic()
        ack = admin.set_active(target, actor=options.actor, reason=reason)
        acked = _acknowledged_mono(ack.acknowledged_at, started)
        self.current = target
        self.uncertain = False
        observed: list[float | None] = [None] * options.readers
        waiting = set(range(options.readers))
        cause = _clean_cause(target)
        deadline = acked + self.timeout
        while waiting:
            self.check()
            fleet.raise_on_problem()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, READ_BATCH_S))
            for reader, event in fleet.poll(0.0):
                if (
                    event.kind is Kind.FLIP
                    and reader.index in waiting
                    and event.active is target
                    and event.cause == cause
                    and event.at >= started
                ):
                    observed[reader.index] = event.at
                    waiting.discard(reader.index)
                else:
                    self._unexpected(result, reader, event)
        return Round(
            index=index,
            target=target,
            write_started=started,
            write_acked=acked,
            observed=tuple(observed),
            change_id=ack.change_id,
            pause_s=pause,
        )

    # ------------------------------------------------------------------ restore

    @staticmethod
    def _restore_value(result: ProbeResult) -> bool:
        # A flag that did not exist reads halted; False keeps that meaning.
        return bool(result.original)

    def _restore(self, admin: FlagAdmin, result: ProbeResult) -> None:
        value = self._restore_value(result)
        if not self.wrote or (not self.uncertain and self.current is value):
            result.restored = True
            return
        problem = "unknown"
        for attempt in range(_RESTORE_ATTEMPTS):
            try:
                admin.set_active(
                    value,
                    actor=self.options.actor,
                    reason=f"latency probe {result.run_id}: restore the value from before the run",
                )
                now = admin.get_active()
            except BreakglassError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if now is value:
                    self.current = value
                    self.uncertain = False
                    result.restored = True
                    self.say(f"restored {result.flag_key!r} to {value}")
                    return
                problem = f"the provider reads {now} after the restore"
            time.sleep(0.5 * 2**attempt)
        result.aborted = (
            f"{result.aborted + '; ' if result.aborted else ''}restore failed: {problem}"
        )


class _SignalScope:
    """SIGINT and SIGTERM set the run's stop flag while inside; the old handlers come back after.

    Outside the main thread signals cannot be caught (Python delivers them to
    the main thread only); there the scope does nothing.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, handler: Callable[[int, FrameType | None], None]) -> None:
        self._handler = handler
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self._SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def run_probe(
    settings: Settings,
    options: ProbeOptions,
    *,
    on_round: Callable[[ProbeResult], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> ProbeResult:
    """Measure how long a toggle takes to reach the readers' guards, and restore the flag.

    Args:
        settings: The configured settings (provider, credentials, production flag key).
        options: How the run goes; ``options.flag_key`` is the flag toggled.
        on_round: Called after each round with the result so far (for progress).
        say: Called with one line per step, for people (never a secret).

    Returns:
        What was measured. Check :attr:`ProbeResult.passed`; a run stopped by a
        signal has :attr:`ProbeResult.interrupted` set and is still restored.

    Raises:
        ProbeError: The flag is the production flag and that was not allowed,
            or the options are invalid.
        ProbeRestoreError: The flag could not be put back (it names the command
            to do it by hand).
        BreakglassError: The provider is not configured, or its value could not
            be read before the run (nothing was changed).
    """
    check_flag_key(settings, options)
    return _Run(settings, options, on_round, say or (lambda _line: None)).run()


def _acknowledged_mono(acknowledged_at: datetime, started: float) -> float:
    """When the vendor acknowledged, on the monotonic clock.

    ``set_active`` returns only after it confirmed what readers are served,
    which may take a while longer than the acknowledgement itself (Unleash's
    client API trails by a revision tick): propagation is measured from the
    acknowledgement, mapped from the wall clock and kept within the call.
    """
    returned = time.monotonic()
    since = (SYSTEM_CLOCK.now() - acknowledged_at).total_seconds()
    return min(returned, max(started, returned - max(0.0, since)))
