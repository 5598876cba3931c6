"""The conformance suite through a host relay, plus the relay's own faults (``docs/conformance.md``).

The reader under test is a worker on the ``relay`` provider; behind it runs a
real ``breakglass relay`` process reading an upstream provider whose own
conformance harness plays the vendor. The suite's dashboard and admin
operations act upstream, as an operator's would: the ``relay`` provider has
no admin and keeps no history. A provider's test module wires it up::

    class TestLocalRelayConformance(RelayConformance):
        @pytest.fixture
        def harness(self, relay_rig) -> RelayHarness:
            return relay_rig  # a RelayHarness on the upstream harness and a RelayProcess

:class:`RelayConformance` adds the cases only a relay has (R1-R5): the relay
killed, frozen, its channel replaced by a hostile file, a worker started while
the relay says nothing, and a worker that has nothing to halt with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from breakglass.bridge import Bridge
from breakglass.errors import ConfigurationError
from breakglass.relay.channel import ChannelWriter, Snapshot
from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass.testing.conformance import (
    MAX_STALENESS,
    ConformanceHarness,
    NotExpressible,
    ProviderConformance,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from breakglass.relay.process import RelayProcess

HOSTILE = ("mode", "owner", "symlink", "truncated")
"""How :meth:`RelayHarness.replace_channel` can replace the channel file."""

LONG = 30.0
"""Seconds: a worker's max_staleness when only the relay's silence (or its word) may halt it."""

_STRANGER = 65534
"""A uid that is neither root nor the channel directory's owner (``nobody``)."""

# What a worker reads for each cause its relay reports (breakglass.relay.source.observation_for).
_MIRRORED = {Cause.OFF, Cause.STALE, Cause.UNCONFIRMED, Cause.FLAG_MISSING, Cause.WRONG_TYPE}


class RelayHarness:
    """A :class:`ConformanceHarness` whose reads go through a relay and whose vendor is ``upstream``.

    Args:
        upstream: The upstream provider's conformance harness (it owns the vendor).
        relay: The ``breakglass relay`` process reading ``upstream``, already started.
        channel: The relay's channel file.
        root: A directory for the workers' state and the hostile files.
        heartbeat: The relay's ``heartbeat`` (workers must be told the same).
        silent_after: The workers' ``silent_after``.
    """

    def __init__(
        self,
        upstream: ConformanceHarness,
        relay: RelayProcess,
        channel: Path,
        root: Path,
        *,
        heartbeat: float,
        silent_after: float,
    ) -> None:
        self.upstream = upstream
        self.relay = relay
        self.channel = channel
        self.root = root
        self.heartbeat = heartbeat
        self.silent_after = silent_after
        # A change reaches the relay within the upstream's bound, then is written at once and
        # wakes the worker (inotify); a heartbeat on top covers a worker that polls instead.
        self.poll_bound = upstream.poll_bound + heartbeat
        self.resume_bound = float(getattr(upstream, "resume_bound", upstream.poll_bound)) + (
            2 * heartbeat
        )
        self.not_expressible = {
            "C15": "the relay provider keeps no change history: the upstream provider's audit is "
            "the record, checked by the upstream's own conformance run",
        }
        self._runs = 0
        self._controls: dict[int, Bridge] = {}
        self._frozen = False
        self._aside: Path | None = None
        self._forger: _Forger | None = None

    def settings(self, **overrides: Any) -> Settings:
        """Settings for a worker on the relay (a fresh ``state_dir`` each call unless given)."""
        self._runs += 1
        overrides.setdefault("state_dir", self.root / f"worker-{self._runs}")
        return Settings(
            provider="relay",
            sections={
                "relay": {
                    "path": self.channel,
                    "heartbeat": self.heartbeat,
                    "silent_after": self.silent_after,
                }
            },
            **overrides,
        )

    def control(self, bridge: Bridge) -> Bridge:
        """The operator's bridge on the upstream provider (``breakglass halt`` with the relay's settings)."""
        key = id(bridge)
        if key not in self._controls:
            self._controls[key] = Bridge.from_settings(self.upstream.settings())
        return self._controls[key]

    # ------------------------------------------------------------ the vendor: upstream's

    def set_from_dashboard(self, active: bool) -> None:  # noqa: FBT001 -- the Protocol's shape
        """Set the flag in the upstream vendor."""
        self.upstream.set_from_dashboard(active)

    def vendor_value(self) -> bool | None:
        """The flag's value as the upstream vendor holds it."""
        return self.upstream.vendor_value()

    def delete_flag(self) -> None:
        """Delete the flag upstream."""
        self.upstream.delete_flag()

    def set_wrong_type(self) -> None:
        """Make the upstream serve a non-boolean."""
        self.upstream.set_wrong_type()

    def serve_garbage(self) -> None:
        """Make the upstream answer garbage."""
        self.upstream.serve_garbage()

    def stop(self) -> None:
        """Take the upstream vendor away (the relay stays up)."""
        self.upstream.stop()

    def stall(self) -> None:
        """Freeze the upstream vendor (the relay stays up)."""
        self.upstream.stall()

    def serve_true_while_off(self) -> None:
        """Where the upstream can: readers served true with its switch off."""
        self._upstream_optional("serve_true_while_off")

    def exclude_service_while_on(self) -> None:
        """Where the upstream can: readers served false with its switch on."""
        self._upstream_optional("exclude_service_while_on")

    def _upstream_optional(self, name: str) -> None:
        # The acknowledgement's served value is the upstream SDK's evaluation; a relay adds no
        # targeting of its own, so the situation exists only where the upstream can make it.
        method = getattr(self.upstream, name, None)
        if method is None:
            raise NotExpressible(f"the upstream harness has no {name}()")
        try:
            method()
        except NotExpressible as exc:
            raise NotExpressible(f"upstream: {exc}") from None

    def bad_credentials(self) -> Settings:
        """The channel has none of its own (its owner and mode stand for them: R3); the upstream's may.

        A relay on wrong upstream credentials is a relay process of its own, which this harness
        does not start: it says so rather than pass.
        """
        try:
            self.upstream.bad_credentials()
        except NotExpressible as exc:
            raise NotExpressible(
                f"the relay channel has no credentials (its owner and mode: R3), and upstream: {exc}"
            ) from None
        raise NotExpressible(
            "a relay on the upstream's wrong credentials needs a relay process of its own; "
            "this harness runs one relay on the good ones"
        )

    def secrets(self) -> list[str]:
        """The upstream's secrets (the channel holds none)."""
        return self.upstream.secrets()

    def away_causes(self) -> frozenset[Cause]:
        """The upstream's away causes as a worker reads them through the relay."""
        # A relay passes on the causes it can (stale stays stale); the rest read as "error".
        return frozenset(c if c in _MIRRORED else Cause.ERROR for c in self.upstream.away_causes())

    # ------------------------------------------------------------ the relay's own faults

    def kill_relay(self) -> None:
        """SIGKILL: the channel keeps the dead relay's last write."""
        self.relay.kill()

    def freeze_relay(self) -> None:
        """SIGSTOP: the process lives, holds its lock, and writes nothing."""
        os.kill(self.relay.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw_relay(self) -> None:
        """SIGCONT."""
        if self._frozen:
            os.kill(self.relay.pid, signal.SIGCONT)
            self._frozen = False

    def replace_channel(self, how: str) -> None:
        """Put a hostile file where the channel was; the relay keeps writing the real one, aside.

        ``mode``, ``owner`` and ``symlink`` are live forgeries (a fresh "active" write every
        heartbeat, as a relay would): group-writable, owned by a stranger, a symbolic link to a
        file of its own. ``truncated`` is the channel cut short.
        """
        if how not in HOSTILE:
            raise ValueError(f"not one of {HOSTILE}: {how!r}")
        if how == "owner" and os.getuid() != 0:
            # tests/test_relay_channel.py pins the same refusal without root (a reader told the
            # relay is another user); a forged file of a stranger's takes root to make.
            raise NotExpressible("a file owned by another user takes root to make")
        forged = self.root / "forger" / "relay.channel"
        forged.parent.mkdir(exist_ok=True)
        forged.unlink(missing_ok=True)
        if how == "truncated":
            forged.write_bytes(self.channel.read_bytes()[:512])
            forged.chmod(0o644)
        else:
            self._forger = _Forger(forged, self.heartbeat)
            if how == "mode":
                forged.chmod(0o664)
            elif how == "owner":
                os.chown(forged, _STRANGER, _STRANGER)
        # Swapped in with one rename, so the path never goes missing (that is another, milder
        # halt); the relay's file stays linked aside for restore().
        self._aside = self.channel.with_name(self.channel.name + ".aside")
        os.link(self.channel, self._aside)
        if how == "symlink":
            link = forged.with_name("link")
            link.unlink(missing_ok=True)
            link.symlink_to(forged)
            forged = link
        forged.rename(self.channel)

    def restore(self) -> None:
        """Undo every fault: the relay thawed or restarted, its channel back, the upstream restored."""
        self.thaw_relay()
        if self._forger is not None:
            self._forger.close()
            self._forger = None
        if self._aside is not None:
            self._aside.rename(self.channel)  # over the hostile file: the relay's own inode again
            self._aside = None
        if self.relay.process is None or self.relay.process.poll() is not None:
            self.relay.start()
        self.upstream.restore()

    def close(self) -> None:
        """Undo every fault and close the operator bridges (the relay process stays for the next case)."""
        self.restore()
        for bridge in self._controls.values():
            bridge.close()
        self._controls.clear()


class _Forger:
    """Writes a fresh "active" to ``path`` every ``interval``, as a relay would: what a forgery needs."""

    def __init__(self, path: Path, interval: float) -> None:
        self._writer = ChannelWriter(path)
        self._interval = interval
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, name="forger", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        now = time.time()
        self._writer.write(
            Snapshot(
                instance=self._writer.instance,
                seq=0,
                pid=os.getpid(),
                active=True,
                cause=Cause.ACTIVE,
                remaining=30.0,
                written_wall=now,
                confirmed_wall=now,
                max_staleness=30.0,
                interval=self._interval,
                flag_key="system-active",
                source="forged",
                detail="",
            )
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._writer.close()


class RelayConformance(ProviderConformance):
    """The shared suite through a relay (the ``harness`` fixture gives a :class:`RelayHarness`), plus R1-R5."""

    relay_margin: ClassVar[float] = 1.5
    """Seconds of slack on the relay's own bounds (a relay process on a busy machine)."""

    def _silence_bound(self, harness: RelayHarness) -> float:
        # A worker notices silence on its next idle read (at most silent_after / 4 later).
        return harness.silent_after * 1.25 + self.relay_margin

    def _comes_back(self, harness: RelayHarness, bridge: Bridge) -> None:
        assert wait_for(lambda: bridge.engine.active, self._resume_bound(harness) + 2.0), (
            bridge.engine.state
        )

    def _up(self, harness: RelayHarness, bridge: Bridge) -> None:
        harness.set_from_dashboard(True)
        self._comes_back(harness, bridge)

    def test_r1_relay_killed(
        self, harness: RelayHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """R1: SIGKILL of the relay halts every worker within silent_after (or its max_staleness)."""
        silent = bridge_factory(max_staleness=LONG)
        short = bridge_factory(max_staleness=MAX_STALENESS)
        self._up(harness, silent)
        self._up(harness, short)
        harness.kill_relay()
        assert wait_for(lambda: not short.engine.active, MAX_STALENESS + self.relay_margin), (
            short.engine.state
        )
        assert wait_for(lambda: not silent.engine.active, self._silence_bound(harness)), (
            silent.engine.state
        )
        state = silent.engine.state
        assert state.cause is Cause.ERROR, state
        assert "silent" in (state.detail or ""), state
        time.sleep(0.3)
        assert not silent.engine.active, "a dead relay's last write must not bring it back"
        harness.restore()  # a new relay on the same file: trusted from its next write
        self._comes_back(harness, silent)

    def test_r2_relay_frozen(
        self, harness: RelayHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """R2: SIGSTOP of the relay halts the workers after silent_after; SIGCONT resumes them."""
        bridge = bridge_factory(max_staleness=LONG)
        self._up(harness, bridge)
        harness.freeze_relay()
        try:
            took = wait_for(lambda: not bridge.engine.active, self._silence_bound(harness))
            assert took is not None, bridge.engine.state
            assert took >= harness.silent_after * 0.9, f"halted after {took:.2f} s, not silence"
            assert bridge.engine.state.cause is Cause.ERROR
        finally:
            harness.thaw_relay()
        self._comes_back(harness, bridge)

    @pytest.mark.parametrize("how", HOSTILE)
    def test_r3_hostile_channel_file(
        self, harness: RelayHarness, bridge_factory: Callable[..., Bridge], how: str
    ) -> None:
        """R3: a channel file others may write, owned by a stranger, a symlink or truncated halts at once.

        The forgeries keep writing "active" while the vendor says off: the worker must not follow them.
        """
        bridge = bridge_factory(max_staleness=LONG)
        self._up(harness, bridge)
        try:
            try:
                harness.replace_channel(how)
            except NotExpressible as exc:
                pytest.skip(f"not expressible here: {exc}")
            harness.set_from_dashboard(False)
            took = wait_for(lambda: not bridge.engine.active, self._bound(harness))
            assert took is not None, bridge.engine.state
            state = bridge.engine.state
            assert state.cause is Cause.ERROR, state
            # And it stays halted while the forgery goes on.
            assert wait_for(lambda: bridge.engine.active, 4 * harness.heartbeat) is None, state
        finally:
            harness.restore()
        harness.set_from_dashboard(True)
        self._comes_back(harness, bridge)

    def test_r4_worker_started_while_the_relay_is_silent(
        self, harness: RelayHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """R4: a worker (re)started while the relay is up but not writing stays halted until it writes."""
        first = bridge_factory(max_staleness=LONG)
        self._up(harness, first)
        first.close()
        harness.freeze_relay()  # the file is the live relay's, a heartbeat old: it proves nothing
        try:
            second = bridge_factory(max_staleness=LONG)
            assert wait_for(lambda: second.engine.active, harness.silent_after) is None, (
                second.engine.state
            )
            assert second.engine.state.cause in {Cause.UNCONFIRMED, Cause.ERROR}
        finally:
            harness.thaw_relay()
        self._comes_back(harness, second)

    def test_r5_a_worker_cannot_change_or_audit_the_flag(
        self, harness: RelayHarness, bridge_factory: Callable[..., Bridge]
    ) -> None:
        """R5: halt, resume and audit on a worker are refused with the reason; the operator's work upstream."""
        bridge = bridge_factory(max_staleness=LONG)
        self._up(harness, bridge)
        for call, said in (
            (lambda: bridge.halt(actor="conformance@test", reason="R5"), "the relay reads"),
            (lambda: bridge.resume(actor="conformance@test", reason="R5"), "the relay reads"),
            (lambda: bridge.audit, "relay provider has no audit"),
        ):
            with pytest.raises(ConfigurationError, match=said):
                call()
        assert harness.vendor_value() is True
        assert bridge.engine.active is True
        harness.control(bridge).halt(actor="conformance@test", reason="R5 upstream")
        assert wait_for(lambda: not bridge.engine.active, self._bound(harness)) is not None
        assert bridge.engine.state.cause is Cause.OFF


@contextlib.contextmanager
def closing(harness: RelayHarness) -> Iterator[RelayHarness]:
    """``harness`` for one case: every fault undone and its operator bridges closed afterwards."""
    try:
        yield harness
    finally:
        harness.close()
