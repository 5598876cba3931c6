"""The relay channel and the worker's source, in one process: hostile files, clocks, silence."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from breakglass.bridge import Bridge
from breakglass.engine import StateEngine
from breakglass.errors import ConfigurationError
from breakglass.guard import Guard
from breakglass.observation import NoValue
from breakglass.plugins import available_providers
from breakglass.relay.channel import SIZE, ChannelError, ChannelReader, ChannelWriter, Snapshot
from breakglass.relay.relay import Relay
from breakglass.relay.settings import load_relay_settings
from breakglass.relay.source import RelaySource
from breakglass.relay.watch import ChangeWatch
from breakglass.seams import Backend
from breakglass.settings import Settings
from breakglass.state import Cause
from breakglass.testing import ScriptedSource

if TYPE_CHECKING:
    from collections.abc import Iterator

    from breakglass.testing import ManualClock

KEY = "system-active"


def snap(cause: Cause = Cause.ACTIVE, remaining: float = 10.0, **fields: object) -> Snapshot:
    values: dict[str, object] = {
        "instance": "00" * 8,
        "seq": 0,
        "pid": 4242,
        "active": cause is Cause.ACTIVE,
        "cause": cause,
        "remaining": remaining if cause is Cause.ACTIVE else 0.0,
        "written_wall": 1.8e9,
        "confirmed_wall": 1.8e9,
        "max_staleness": 30.0,
        "interval": 0.05,
        "flag_key": KEY,
        "source": "local",
        "detail": "the flag is on and fresh",
    }
    values.update(fields)
    return Snapshot(**values)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "relay.channel"


@pytest.fixture
def writer(path: Path) -> Iterator[ChannelWriter]:
    w = ChannelWriter(path)
    yield w
    w.close()


def test_round_trip(writer: ChannelWriter, path: Path) -> None:
    seq = writer.write(snap(detail="é" * 1000))  # over-long text is clipped, never torn
    got = ChannelReader(path).read()
    assert got.seq == seq
    assert got.instance == writer.instance
    assert got.active
    assert got.cause is Cause.ACTIVE
    assert got.remaining == 10.0
    assert got.flag_key == KEY
    assert got.source == "local"
    assert got.pid == 4242
    assert got.detail.startswith("é")
    assert len(got.detail.encode()) < SIZE
    assert writer.write(snap()) == seq + 2


def test_second_relay_on_the_same_file_is_refused(writer: ChannelWriter, path: Path) -> None:
    with pytest.raises(ConfigurationError, match="another relay is running"):
        ChannelWriter(path)


def test_a_new_relay_keeps_counting(path: Path) -> None:
    first = ChannelWriter(path)
    last = first.write(snap())
    first.close()
    second = ChannelWriter(path)
    try:
        assert second.write(snap()) > last
        assert second.instance != first.instance
    finally:
        second.close()


def _rewrite(path: Path, mutate: object) -> None:
    raw = bytearray(path.read_bytes())
    mutate(raw)  # type: ignore[operator]
    path.write_bytes(bytes(raw))


def _reseal(raw: bytearray) -> None:
    raw[SIZE - 4 :] = struct.pack("<I", zlib.crc32(bytes(raw[8 : SIZE - 4])))


def _set_body(offset: int, fmt: str, value: object) -> object:
    def mutate(raw: bytearray) -> None:
        struct.pack_into(fmt, raw, 24 + offset, value)
        _reseal(raw)

    return mutate


HOSTILE = {
    "bad magic": (lambda raw: raw.__setitem__(slice(0, 8), b"NOTRELAY"), "bad magic"),
    "flipped byte": (lambda raw: raw.__setitem__(300, raw[300] ^ 0xFF), "checksum"),
    "odd sequence": (lambda raw: raw.__setitem__(8, raw[8] | 1), "torn"),
    "future version": (_set_body(0, "<H", 9), "version 9"),
    "active but halted cause": (_set_body(3, "<B", 2), "contradicts"),
    "unknown cause": (_set_body(3, "<B", 200), "impossible"),
    "nan remaining": (_set_body(16, "<d", float("nan")), "remaining"),
    "remaining past staleness": (_set_body(16, "<d", 1e12), "remaining"),
    "negative remaining": (_set_body(16, "<d", -1.0), "remaining"),
    "zero staleness": (_set_body(32, "<d", 0.0), "max_staleness"),
    "text length past its field": (_set_body(48, "<H", 60000), "text length"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_refused_with_a_reason(
    writer: ChannelWriter, path: Path, name: str
) -> None:
    writer.write(snap())
    mutate, reason = HOSTILE[name]
    _rewrite(path, mutate)
    with pytest.raises(ChannelError, match=reason):
        ChannelReader(path).read()


def test_invalid_utf8_text_is_refused(writer: ChannelWriter, path: Path) -> None:
    writer.write(snap(source="abc"))

    def mutate(raw: bytearray) -> None:
        at = 24 + struct.calcsize("<HBBIdddddHHH") + 128
        raw[at : at + 3] = b"\xff\xfe\xfd"
        _reseal(raw)

    _rewrite(path, mutate)
    with pytest.raises(ChannelError, match="not UTF-8"):
        ChannelReader(path).read()


@pytest.mark.parametrize("size", [0, 10, SIZE - 1, SIZE + 1, 10 * SIZE])
def test_truncated_or_grown_file_is_refused(writer: ChannelWriter, path: Path, size: int) -> None:
    writer.write(snap())
    os.truncate(path, size)
    with pytest.raises(ChannelError, match="bytes, not 1024"):
        ChannelReader(path).read()


def test_a_file_others_may_write_is_refused(writer: ChannelWriter, path: Path) -> None:
    writer.write(snap())
    path.chmod(0o666)
    with pytest.raises(ChannelError, match="writable by group or others"):
        ChannelReader(path).read()


def test_a_symbolic_link_is_refused(writer: ChannelWriter, path: Path, tmp_path: Path) -> None:
    """Even to a sane, live channel: whoever can write the directory could point it anywhere."""
    writer.write(snap())
    link = tmp_path / "link.channel"
    link.symlink_to(path)
    with pytest.raises(ChannelError, match="symbolic link"):
        ChannelReader(link).read()


def _stranger(path: Path) -> int | None:
    """Make ``path`` a stranger's file; the ``owner`` to pass a reader when that cannot be done."""
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)  # nobody: neither root nor the directory's owner
        return None
    return os.getuid() + 1  # not root: the reader is told the relay is someone else


def test_a_file_owned_by_a_stranger_is_refused(writer: ChannelWriter, path: Path) -> None:
    """Another user who can write the directory must not be able to plant a 0644 file of its own."""
    writer.write(snap())
    owner = _stranger(path)
    with pytest.raises(ChannelError, match=r"owned by uid \d+, not by the relay's user") as info:
        ChannelReader(path, owner=owner).read()
    assert "BREAKGLASS_RELAY__OWNER" in str(info.value), "the error names the setting to fix it"


def test_the_relay_user_can_be_named(writer: ChannelWriter, path: Path) -> None:
    """Where the directory is not the relay user's (a shared volume root owns), owner names it."""
    writer.write(snap())
    if os.getuid() == 0:
        os.chown(path, 65534, 65534)
        assert ChannelReader(path, owner=65534).read().active is True
        with pytest.raises(ChannelError, match="BREAKGLASS_RELAY__OWNER"):
            ChannelReader(path, owner=65533).read()
    else:
        assert ChannelReader(path, owner=os.getuid()).read().active is True
        with pytest.raises(ChannelError, match="BREAKGLASS_RELAY__OWNER"):
            ChannelReader(path, owner=os.getuid() + 1).read()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ChannelError) as info:
        ChannelReader(tmp_path / "none").read()
    assert info.value.missing
    (tmp_path / "dir").mkdir(mode=0o755)
    with pytest.raises(ChannelError, match="not a regular file"):
        ChannelReader(tmp_path / "dir").read()


# ---------------------------------------------------------------- the worker's source


def source(path: Path, clock: ManualClock, **options: float) -> RelaySource:
    return RelaySource(
        ChannelReader(path),
        flag_key=KEY,
        max_staleness=options.get("max_staleness", 30.0),
        silent_after=options.get("silent_after", 2.0),
        clock=clock,
    )


def watched(
    path: Path,
    reader: ChannelReader | None = None,
    *,
    max_staleness: float = 30.0,
    silent_after: float = 2.0,
) -> RelaySource:
    """A worker's source as the plugin builds it: rung by inotify, on the real clocks."""
    return RelaySource(
        reader or ChannelReader(path),
        flag_key=KEY,
        max_staleness=max_staleness,
        silent_after=silent_after,
        watch=ChangeWatch(path, fallback=0.005),
    )


def feed(engine: StateEngine, src: RelaySource) -> None:
    obs = src.poll_once()
    assert obs is not None
    engine._on_observation(obs)


def test_only_a_write_seen_happening_is_trusted(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    writer.write(snap(remaining=10.0))
    src = source(path, clock)
    # A file left by a relay (maybe dead): not trusted, not even an answer yet.
    assert src.poll_once() is None
    assert src.current().value is NoValue.UNREAD
    clock.advance(1.0)
    assert src.poll_once() is None  # nothing new
    base = clock.monotonic()
    clock.advance(0.5)
    writer.write(snap(remaining=10.0))
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is True
    # Counted from the last poll that still saw the old write: deadline = base + remaining.
    assert obs.confirmed_at == pytest.approx(base + 10.0 - 30.0)


def test_the_relays_clock_never_enters(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    """Only durations travel: a relay in another time namespace gives the same deadline."""
    src = source(path, clock)
    writer.write(snap(written_wall=-1e9))
    src.poll_once()
    base = clock.monotonic()
    clock.advance(0.2)
    writer.write(snap(remaining=3.0, written_wall=1e12))
    obs = src.poll_once()
    assert obs is not None
    assert obs.confirmed_at is not None
    assert obs.confirmed_at + 30.0 == pytest.approx(base + 3.0)


def test_the_shorter_staleness_budget_wins(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    """A worker told 1 s behind a relay allowed 30 s halts 1 s after the vendor's last answer."""
    src = source(path, clock, max_staleness=1.0)
    engine = StateEngine(KEY, [src], max_staleness=1.0, clock=clock)
    writer.write(snap(remaining=29.6, max_staleness=30.0))  # the vendor answered 0.4 s before
    src.poll_once()
    base = clock.monotonic()
    clock.advance(0.1)
    writer.write(snap(remaining=29.6, max_staleness=30.0))
    feed(engine, src)
    assert engine.state.active
    assert engine.state.deadline == pytest.approx(base + 0.6)
    # The vendor went quiet: the relay still says active (28.5 s left), the worker does not.
    clock.advance(0.1)
    writer.write(snap(remaining=28.5, max_staleness=30.0))
    feed(engine, src)
    assert engine.state.active is False
    assert engine.state.cause is Cause.STALE


def test_silent_relay_halts_the_worker(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    engine = StateEngine(
        KEY, [src := source(path, clock, silent_after=2.0)], max_staleness=30.0, clock=clock
    )
    guard = Guard(engine)
    writer.write(snap())
    src.poll_once()
    clock.advance(0.05)
    writer.write(snap())
    feed(engine, src)
    assert guard.active
    clock.advance(1.9)
    assert src.poll_once() is None
    assert guard.active
    clock.advance(0.2)
    obs = src.poll_once()
    assert obs is not None
    engine._on_observation(obs)
    assert not guard.active
    assert engine.state.cause is Cause.ERROR
    assert "relay (pid 4242) silent for 2.1 s" in (engine.state.detail or "")
    # It comes back: trusted again at its next write.
    clock.advance(0.05)
    writer.write(snap())
    feed(engine, src)
    assert guard.active


MIRRORED = [
    (Cause.OFF, Cause.OFF),
    (Cause.STALE, Cause.STALE),
    (Cause.FLAG_MISSING, Cause.FLAG_MISSING),
    (Cause.WRONG_TYPE, Cause.WRONG_TYPE),
    (Cause.UNCONFIRMED, Cause.UNCONFIRMED),
    (Cause.ERROR, Cause.ERROR),
    (Cause.STORE_UNAVAILABLE, Cause.ERROR),
    (Cause.CLOSED, Cause.ERROR),
    (Cause.READER_STOPPED, Cause.ERROR),
]


@pytest.mark.parametrize(("relay_cause", "worker_cause"), MIRRORED)
def test_relay_unsure_worker_unsure(
    writer: ChannelWriter, path: Path, clock: ManualClock, relay_cause: Cause, worker_cause: Cause
) -> None:
    src = source(path, clock)
    engine = StateEngine(KEY, [src], max_staleness=30.0, clock=clock)
    writer.write(snap())
    src.poll_once()
    clock.advance(0.05)
    writer.write(snap(relay_cause, detail="as the relay saw it"))
    obs = src.poll_once()
    assert obs is not None
    engine._on_observation(obs)
    state = engine.state
    assert not state.active
    assert state.cause is worker_cause
    if worker_cause is not Cause.OFF:
        assert "as the relay saw it" in (state.detail or "")


def test_another_flag_is_refused(writer: ChannelWriter, path: Path, clock: ManualClock) -> None:
    src = source(path, clock)
    writer.write(snap(flag_key="other"))
    src.poll_once()
    writer.write(snap(flag_key="other"))
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is NoValue.UNREADABLE
    assert "serves 'other'" in (obs.error or "")


def test_corruption_halts_at_once_and_trust_starts_over(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    src = source(path, clock)
    writer.write(snap())
    src.poll_once()
    writer.write(snap())
    assert src.poll_once() is not None
    good = path.read_bytes()
    path.write_bytes(good[:100])
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is NoValue.UNREADABLE
    assert "truncated" in (obs.error or "")
    path.write_bytes(good)  # the same bytes again are not a new write
    assert src.poll_once() is None
    writer.write(snap())
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is True


def test_the_relay_provider_is_registered() -> None:
    assert "relay" in available_providers()


def test_the_relay_writes_the_lapse_it_discovers_itself(tmp_path: Path, clock: ManualClock) -> None:
    """The heartbeat finds the decision aged out: the engine recomputes and notifies the relay on
    the heartbeat's own thread, inside its write. It must write "stale", not deadlock."""
    src = ScriptedSource("scripted", clock)
    backend = Backend(name="scripted", source=src, admin=None, audit=None, poll_bound=0.0)
    settings = Settings(state_dir=tmp_path / "state", max_staleness=30.0)
    relay = Relay(
        Bridge(settings, backend, clock=clock), ChannelWriter(tmp_path / "ch"), heartbeat=60
    )
    relay.start()
    try:
        src.confirm(True)
        assert ChannelReader(tmp_path / "ch").read().cause is Cause.ACTIVE
        clock.advance(31.0)
        beat = threading.Thread(target=relay.publish, daemon=True)
        beat.start()
        beat.join(10.0)
        assert not beat.is_alive(), "the relay deadlocked on its own lock"
        snap = ChannelReader(tmp_path / "ch").read()
        assert (snap.active, snap.cause) == (False, Cause.STALE)
    finally:
        relay.close()


def test_a_write_wakes_the_watch(writer: ChannelWriter, path: Path) -> None:
    """inotify: a worker sleeps until the relay writes (no timed bound but a generous one)."""
    writer.write(snap())
    watch = ChangeWatch(path, fallback=0.005)
    try:
        assert watch.pushed, "inotify is available on Linux"
        for replaced in (False, True):
            if replaced:  # a new relay recreated the file: the watch follows the new inode
                path.unlink()
                writer.close()
                writer = ChannelWriter(path)
                writer.write(snap())
            watch.wait(0.0)  # arms the watch on the current file, drains what is pending
            timer = threading.Timer(0.2, writer.write, args=(snap(),))
            started = time.monotonic()
            timer.start()
            watch.wait(60.0)
            timer.join()
            assert time.monotonic() - started < 30.0
    finally:
        watch.close()
        writer.close()


def test_only_a_change_rings_and_the_ring_follows_the_whole_write(
    writer: ChannelWriter, path: Path
) -> None:
    """A heartbeat goes through the memory map (inotify does not see it); a change rings once,
    with its last store, so a worker woken by it reads the complete write."""
    writer.write(snap())
    reader = ChannelReader(path)
    watch = ChangeWatch(path, fallback=0.005)
    try:
        watch.wait(0.0)  # arm, drain
        before = reader.read().seq
        writer.write(snap(remaining=9.0), ring=False)
        assert not watch.wait(0.3), "a heartbeat woke the worker"
        beat = reader.read()
        assert (beat.seq, beat.remaining) == (before + 2, 9.0)  # yet it is there to read
        writer.write(snap(Cause.OFF, remaining=0.0), ring=True)
        assert watch.wait(30.0), "a change did not wake the worker"
        woken = reader.read()  # no retry, no torn read: the ring was the write's last store
        assert (woken.seq, woken.cause) == (before + 4, Cause.OFF)
        assert not watch.wait(0.0), "one change, more than one wake"
    finally:
        watch.close()


def test_the_relay_rings_only_for_a_new_decision(tmp_path: Path, clock: ManualClock) -> None:
    """Heartbeats of the same decision never wake the host; a change, or a lapse the heartbeat
    itself finds, always does."""
    src = ScriptedSource("scripted", clock)
    backend = Backend(name="scripted", source=src, admin=None, audit=None, poll_bound=0.0)
    settings = Settings(state_dir=tmp_path / "state", max_staleness=30.0)
    path = tmp_path / "ch"
    relay = Relay(Bridge(settings, backend, clock=clock), ChannelWriter(path), heartbeat=60)
    relay.start()
    watch = ChangeWatch(path, fallback=0.005)
    try:
        watch.wait(0.0)
        src.confirm(True)
        assert watch.wait(30.0), "active after unconfirmed: a new decision"
        for _ in range(3):
            clock.advance(1.0)
            src.confirm(True)
            relay.publish()  # a heartbeat
        assert not watch.wait(0.2), "a heartbeat of the same decision rang"
        assert ChannelReader(path).read().cause is Cause.ACTIVE
        src.confirm(False)
        assert watch.wait(30.0), "a halt did not ring"
        src.confirm(True)
        assert watch.wait(30.0)
        clock.advance(31.0)  # the relay's confirmation ages out; its heartbeat finds it
        relay.publish()
        assert watch.wait(30.0), "a lapse found by the heartbeat did not ring"
        assert ChannelReader(path).read().cause is Cause.STALE
    finally:
        watch.close()
        relay.close()


def test_a_worker_takes_heartbeats_without_being_rung(writer: ChannelWriter, path: Path) -> None:
    """Unrung heartbeats keep an active worker active (its own periodic read takes them), and
    when they stop the worker halts as silent: nothing but the heartbeats keeps it running."""
    writer.write(snap())
    src = watched(path, max_staleness=1.0, silent_after=0.6)
    engine = StateEngine(KEY, [src], max_staleness=1.0)
    guard = Guard(engine)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.05):
            writer.write(snap(remaining=1.0, max_staleness=1.0), ring=False)

    beats = threading.Thread(target=beat, daemon=True)
    beats.start()
    engine.start()
    try:
        assert engine.wait_for_confirmation(30.0).active
        running_since = time.monotonic()

        # Active on a confirmation made twice the staleness budget (3x silence) later: only
        # heartbeats the worker took on its own reads confirm that late. Not "active at every
        # look": a beat or a read kept off the CPU for silent_after on a loaded host rightly
        # halts meanwhile.
        def confirmed_late() -> bool:
            return guard.active and (engine.state.confirmed_mono or -1.0) > running_since + 2.0

        deadline = running_since + 30.0
        while not confirmed_late():
            assert time.monotonic() < deadline, engine.state
            time.sleep(0.02)
        stop.set()
        beats.join()
        deadline = time.monotonic() + 30.0
        while guard.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not guard.active
        assert "silent" in (engine.state.detail or "") or engine.state.cause is Cause.STALE
    finally:
        stop.set()
        engine.close()


def test_the_relay_restores_a_shortened_channel(path: Path) -> None:
    """The relay writes through a memory map: a store past the end of a file someone shortened
    would kill it with SIGBUS. It restores the size first (in a child, so a SIGBUS fails the test
    instead of the test run)."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from breakglass.relay.channel import ChannelReader, ChannelWriter\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_relay_channel import snap\n"
        "path = Path(sys.argv[1])\n"
        "writer = ChannelWriter(path)\n"
        "writer.write(snap())\n"
        "os.truncate(path, 10)\n"
        "writer.write(snap(), ring=False)\n"
        "print(ChannelReader(path).read().seq)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert int(done.stdout) > 0


def test_a_torn_read_waits_for_the_next_write_and_a_lasting_one_halts(
    writer: ChannelWriter, path: Path, clock: ManualClock
) -> None:
    src = source(path, clock, silent_after=2.0)
    writer.write(snap())
    src.poll_once()
    writer.write(snap())
    assert src.poll_once() is not None
    good_poll = clock.monotonic()
    clock.advance(0.1)
    _rewrite(
        path, lambda raw: raw.__setitem__(300, raw[300] ^ 0xFF)
    )  # looks like a write in progress
    assert src.poll_once() is None  # not a halt yet: a busy relay finishes its write
    clock.advance(0.1)
    writer.write(snap(remaining=5.0))
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is True
    # Counted from the last good read, not from the torn one: the write began before it.
    assert obs.confirmed_at == pytest.approx(good_poll + 5.0 - 30.0)
    _rewrite(path, lambda raw: raw.__setitem__(300, raw[300] ^ 0xFF))
    clock.advance(1.0)
    assert src.poll_once() is None
    clock.advance(1.5)
    obs = src.poll_once()
    assert obs is not None
    assert obs.value is NoValue.UNREADABLE
    assert "unreadable for 2.5 s: checksum mismatch" in (obs.error or "")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SILENT_AFTER",
            "0.1",
            "BREAKGLASS_RELAY__SILENT_AFTER: must be at least three heartbeats",
        ),
        ("OFREP", "nope", "BREAKGLASS_RELAY__OFREP: must be host:port"),
        ("OWNER", "no-such-user-here", "BREAKGLASS_RELAY__OWNER: .*no user 'no-such-user-here'"),
        ("HEARTBEAT", "0", "BREAKGLASS_RELAY__HEARTBEAT"),
        ("POLL_INTERVAL", "nan", "BREAKGLASS_RELAY__POLL_INTERVAL"),
    ],
)
def test_relay_settings_errors_name_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"BREAKGLASS_RELAY__{name}", value)
    with pytest.raises(ConfigurationError, match=message):
        load_relay_settings(Settings(state_dir=tmp_path))


def test_the_header_byte_halts_early_only_on_a_complete_halt(
    writer: ChannelWriter, path: Path
) -> None:
    """``halted_cause`` reads the active byte of a complete write; anything else leaves it to the
    checked read."""
    reader = ChannelReader(path)
    writer.write(snap(Cause.OFF))
    assert reader.halted_cause() is None, "nothing open yet: the checked read comes first"
    reader.read()
    assert reader.halted_cause() is Cause.OFF
    writer.write(snap(Cause.STALE))
    assert reader.halted_cause() is Cause.STALE
    writer.write(snap())
    assert reader.halted_cause() is None, "an active write never halts early"
    writer.write(snap(Cause.OFF))
    _rewrite(path, lambda raw: raw.__setitem__(8, raw[8] | 1))  # a write under way
    assert reader.halted_cause() is None
    reader.close()


class _Timed(ChannelReader):
    """Records whether the engine still admitted when each checked read began."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.engine: StateEngine | None = None
        self.admitting_at_read: list[tuple[bool, Cause | None]] = []

    def read(self) -> Snapshot:
        engine = self.engine
        active = engine is not None and (engine.active or engine.state.active)
        snapshot = super().read()
        self.admitting_at_read.append((active, snapshot.cause))
        return snapshot


def test_a_rung_halt_refuses_before_the_checked_read(writer: ChannelWriter, path: Path) -> None:
    """Woken by a halt, a worker's guard refuses before its full read of the channel runs: on a
    host of fifty workers sharing two CPUs that read is most of each one's time to halt. The
    decision's moment is the early one, and the checked read still decides the cause."""
    writer.write(snap())
    reader = _Timed(path)
    src = watched(path, reader)
    engine = StateEngine(KEY, [src], max_staleness=30.0)
    reader.engine = engine
    engine.start()
    try:
        deadline = time.monotonic() + 30.0
        while not engine.active:  # trusted after a write seen happening
            writer.write(snap())
            assert time.monotonic() < deadline, engine.state
            time.sleep(0.02)
        time.sleep(0.1)  # back to waiting on the ring, not on a first-trust poll
        before = time.monotonic()
        writer.write(snap(Cause.OFF, detail="halted by the test"))
        while engine.active or engine.state.active or engine.ahead_cause is not None:
            assert time.monotonic() < before + 30.0, engine.state
            time.sleep(0.002)
        assert engine.state.cause is Cause.OFF
        assert engine.state.detail is not None
        assert "halted by the test" in engine.state.detail, "the checked read did not decide"
        halting_reads = [active for active, cause in reader.admitting_at_read if cause is Cause.OFF]
        assert halting_reads, reader.admitting_at_read
        assert halting_reads[0] is False, "the checked read ran while the guard still admitted"
        state, at = engine.decided
        assert state.cause is Cause.OFF
        assert before <= at
    finally:
        engine.close()


@pytest.mark.parametrize(("relay_cause", "worker_cause"), MIRRORED)
def test_an_early_halt_names_the_cause_the_checked_read_will(
    writer: ChannelWriter, path: Path, relay_cause: Cause, worker_cause: Cause
) -> None:
    """In the moment between the early halt and the checked read, the worker's state names the cause
    the read will: never the relay's own "closed" as if this worker's bridge were closed."""
    src = watched(path)
    early: list[Cause] = []
    seen: list[bool | object] = []
    src.on_halt_ahead(early.append)
    writer.write(snap())
    src.start(lambda obs: seen.append(obs.value))
    try:
        deadline = time.monotonic() + 30.0
        while True not in seen:  # trusted after a write seen happening
            assert time.monotonic() < deadline, seen
            writer.write(snap())
            time.sleep(0.02)
        time.sleep(0.1)
        writer.write(snap(relay_cause, detail="as the relay saw it"))
        while not early:
            assert time.monotonic() < deadline, seen
            time.sleep(0.005)
        assert early == [worker_cause]
    finally:
        src.close()
