"""What one probe run measured, and the verdict on it.

All times in a :class:`Round` are :func:`time.monotonic` seconds, from the
probe (``write_started``, ``write_acked``) and from the readers (``observed``);
they share one clock on a host. Figures are milliseconds:

* ``propagation_ms = observed - write_acked``: from the vendor's acknowledgement
  of the toggle to the reader's guard refusing (halt) or admitting (resume).
  It can be slightly negative when a reader sees the new value before the
  writer has heard back from the vendor.
* ``end_to_end_ms = observed - write_started``: the same, from before the
  admin call, so it includes the write itself.
* The fleet's figure for a round is its *last* reader's: the time until every
  reader refuses. A round where any reader timed out has no fleet figure.

Bounds (``max_p95_ms``, ``max_p99_ms``) apply to ``propagation_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from breakglass.probe.stats import Summary, summarize

if TYPE_CHECKING:
    from datetime import datetime

Metric = Literal["propagation_ms", "end_to_end_ms"]
Direction = Literal["halt", "resume"]


@dataclass(frozen=True, slots=True)
class Round:
    """One toggle and when each reader saw it.

    Attributes:
        index: The round's number, from 0.
        target: The value written: ``False`` is a halt, ``True`` a resume.
        write_started: Monotonic time just before the admin call.
        write_acked: Monotonic time just after the vendor acknowledged it.
        observed: Per reader, the monotonic time its guard flipped to
            ``target``; ``None`` when it did not within the timeout.
        change_id: The vendor's id for the change, where it gives one.
        pause_s: The random pause before the round began.
    """

    index: int
    target: bool
    write_started: float
    write_acked: float
    observed: tuple[float | None, ...]
    change_id: str | None = None
    pause_s: float = 0.0

    @property
    def direction(self) -> Direction:
        """``"halt"`` or ``"resume"``."""
        return "resume" if self.target else "halt"

    @property
    def write_ms(self) -> float:
        """How long the admin call took until acknowledged."""
        return (self.write_acked - self.write_started) * 1000.0

    def value(self, metric: Metric, reader: int) -> float | None:
        """One reader's figure for this round (``None``: timed out)."""
        seen = self.observed[reader]
        if seen is None:
            return None
        origin = self.write_acked if metric == "propagation_ms" else self.write_started
        return (seen - origin) * 1000.0

    def fleet(self, metric: Metric) -> float | None:
        """The last reader's figure (``None`` when any reader timed out)."""
        values = [self.value(metric, r) for r in range(len(self.observed))]
        if not values or any(v is None for v in values):
            return None
        return max(v for v in values if v is not None)

    @property
    def timed_out(self) -> int:
        """How many readers did not observe this round in time."""
        return sum(1 for seen in self.observed if seen is None)


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits a run must keep, in milliseconds of ``propagation_ms`` (``None``: no limit).

    ``max_p95_ms``/``max_p99_ms`` hold every round, halts and resumes alike; the ``halt`` ones
    hold the halts only, so CI can gate the halt time on a provider whose resume is slow by design.
    """

    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_halt_p95_ms: float | None = None
    max_halt_p99_ms: float | None = None

    def breaches(self, summary: Summary, what: str) -> list[str]:
        """Each way ``summary`` breaks these bounds or timed out, as sentences."""
        problems = []
        if summary.rounds == 0:
            problems.append(f"{what}: no round was measured")
        if summary.timed_out:
            problems.append(f"{what}: {summary.timed_out} of {summary.rounds} rounds timed out")
        return problems + _percentile_breaches(
            summary, what, ((95, self.max_p95_ms), (99, self.max_p99_ms))
        )

    def halt_breaches(self, halts: Summary, what: str) -> list[str]:
        """Each way the halt rounds' ``halts`` break the halt-only bounds, as sentences."""
        return _percentile_breaches(
            halts, f"{what}, halts", ((95, self.max_halt_p95_ms), (99, self.max_halt_p99_ms))
        )


def _percentile_breaches(
    summary: Summary, what: str, bounds: tuple[tuple[int, float | None], ...]
) -> list[str]:
    problems = []
    for percent, bound in bounds:
        if bound is None or summary.rounds == 0:
            continue
        value = summary.percentile(percent)
        if value is None:
            problems.append(f"{what}: p{percent} is beyond the timeout (bound {bound:g} ms)")
        elif value > bound:
            problems.append(f"{what}: p{percent} {value:.3f} ms > bound {bound:g} ms")
    return problems


@dataclass(frozen=True, slots=True)
class Case:
    """One verdict: a reader's, or the fleet's.

    Attributes:
        name: ``"reader 3"`` or ``"fleet"``.
        propagation: Its ``propagation_ms`` figures (the bounded ones).
        end_to_end: Its ``end_to_end_ms`` figures.
        failures: Why it failed; empty when it passed.
    """

    name: str
    propagation: Summary
    end_to_end: Summary
    failures: list[str]

    @property
    def passed(self) -> bool:
        """Whether every bound held and no round timed out."""
        return not self.failures


@dataclass(slots=True)
class UnexpectedFlip:
    """A reader's guard flipped when no round asked it to, or for another cause.

    Late observations of a timed-out round, and halts for staleness or errors,
    land here: they are reported, never taken as a round's observation.
    """

    reader: int
    at: float
    active: bool
    cause: str


@dataclass(slots=True)
class ProbeResult:
    """Everything one run measured.

    Attributes:
        provider: The provider probed.
        flag_key: The flag toggled.
        readers: How many reader processes observed it.
        rounds_requested: How many rounds were asked for.
        timeout_s: Seconds a reader had to observe a round.
        spacing_s: The width of the random pause before each round.
        seed: The random seed of the pauses.
        run_id: Ties this run to its changes in the vendor's audit log.
        bounds: The limits the run was held to.
        started_at: When the run began (UTC).
        finished_at: When it ended (UTC).
        original: The flag's value before the run (``None``: it did not exist).
        restored: Whether the flag is known to be back at its original value
            (or at ``False``, halted, when it did not exist before).
        rounds: The completed rounds, in order.
        unexpected: Flips no round explains.
        interrupted: The signal that stopped the run early, if any.
        aborted: The error that stopped the run early, if any.
        ready_s: Seconds from starting the readers until all of them had read the flag.
        load: The host's 1-minute load average at the start and at the end
            (``None`` where the platform has none): readers compete for CPU,
            so a busy host shows up in the figures.
    """

    provider: str
    flag_key: str
    readers: int
    rounds_requested: int
    timeout_s: float
    spacing_s: float
    seed: int
    run_id: str
    bounds: Bounds
    started_at: datetime
    finished_at: datetime | None = None
    original: bool | None = None
    restored: bool = False
    rounds: list[Round] = field(default_factory=list)
    unexpected: list[UnexpectedFlip] = field(default_factory=list)
    interrupted: str | None = None
    aborted: str | None = None
    ready_s: float | None = None
    load: tuple[float | None, float | None] = (None, None)

    def _rounds(self, direction: Direction | None) -> list[Round]:
        return [r for r in self.rounds if direction is None or r.direction == direction]

    def write_summary(self) -> Summary:
        """How long the admin calls took (write started -> acknowledged)."""
        return summarize(r.write_ms for r in self.rounds)

    def fleet_summary(self, metric: Metric, direction: Direction | None = None) -> Summary:
        """The last reader's figure per round, over all rounds or one direction."""
        return summarize(r.fleet(metric) for r in self._rounds(direction))

    def reader_summary(
        self, reader: int, metric: Metric, direction: Direction | None = None
    ) -> Summary:
        """One reader's figure per round."""
        return summarize(r.value(metric, reader) for r in self._rounds(direction))

    def pooled_summary(self, metric: Metric) -> Summary:
        """Every reader's figure of every round, in one series."""
        return summarize(r.value(metric, i) for r in self.rounds for i in range(self.readers))

    def cases(self) -> list[Case]:
        """One verdict per reader, then the fleet's (the last reader per round)."""
        cases = []
        for i in range(self.readers):
            prop = self.reader_summary(i, "propagation_ms")
            cases.append(
                Case(
                    name=f"reader {i}",
                    propagation=prop,
                    end_to_end=self.reader_summary(i, "end_to_end_ms"),
                    failures=[
                        *self.bounds.breaches(prop, f"reader {i} propagation"),
                        *self.bounds.halt_breaches(
                            self.reader_summary(i, "propagation_ms", "halt"),
                            f"reader {i} propagation",
                        ),
                    ],
                )
            )
        prop = self.fleet_summary("propagation_ms")
        fleet_failures = [
            *self.bounds.breaches(prop, "fleet propagation (last reader)"),
            *self.bounds.halt_breaches(
                self.fleet_summary("propagation_ms", "halt"), "fleet propagation (last reader)"
            ),
        ]
        cases.append(
            Case(
                name="fleet",
                propagation=prop,
                end_to_end=self.fleet_summary("end_to_end_ms"),
                failures=fleet_failures,
            )
        )
        return cases

    @property
    def error(self) -> str | None:
        """Why the run did not finish as asked (interrupted, aborted, not restored)."""
        reasons = []
        if self.interrupted:
            reasons.append(
                f"interrupted by {self.interrupted} after {len(self.rounds)} of "
                f"{self.rounds_requested} rounds"
            )
        if self.aborted:
            reasons.append(f"aborted after {len(self.rounds)} rounds: {self.aborted}")
        if not self.restored:
            reasons.append(f"the flag {self.flag_key} was not restored")
        return "; ".join(reasons) or None

    @property
    def problems(self) -> list[str]:
        """Every failed bound, timed-out round and early stop, as sentences."""
        problems = [p for case in self.cases() for p in case.failures]
        if self.error:
            problems.append(self.error)
        return problems

    @property
    def passed(self) -> bool:
        """Whether the run finished, restored the flag and kept every bound."""
        return not self.problems
