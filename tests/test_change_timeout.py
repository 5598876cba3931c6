"""A change with a timeout: a target that did not answer in time is a failure, never left out."""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest

from breakglass import cli
from breakglass.bridge import Bridge
from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import AdminError
from breakglass.local.plugin import PLUGIN
from breakglass.local.store import LocalStore
from breakglass.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = "system-active"
SLOW = "local-slow"
# Far below the store's 1 s SQLite busy timeout: the locked target cannot answer, even with an
# error, before the change gives up on it.
TIMEOUT = 0.1


def _settings(tmp_path: Path, db: str) -> Settings:
    return Settings(
        provider="local",
        state_dir=tmp_path / "state",
        local=LocalSettings(path=tmp_path / db, poll_interval=0.05),
    )


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    for name in ("BREAKGLASS_KILLSWITCH__URL", "BREAKGLASS_AUDIT__DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    for path in (fast, slow):
        LocalStore(path).write(KEY, value=False, actor="ops", reason="setup")
    yield fast, slow
    # The slow target's call outlives the change: let it finish before the next test.
    for thread in threading.enumerate():
        if thread.name == f"breakglass-{SLOW}":
            thread.join(10)


@pytest.fixture
def held(stores: tuple[Path, Path]) -> Iterator[None]:
    """The slow store under an exclusive lock: its writes wait, then fail after the busy timeout."""
    lock = sqlite3.connect(stores[1], isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def _bridge(tmp_path: Path, *, timeout: float | None = None, both_slow: bool = False) -> Bridge:
    """Two local stores as two providers: the second one (or both) is the locked one."""
    first = PLUGIN.create(_settings(tmp_path, "slow.db" if both_slow else "fast.db"), SYSTEM_CLOCK)
    second = PLUGIN.create(_settings(tmp_path, "slow.db"), SYSTEM_CLOCK)
    backends = [dataclasses.replace(first, name="local-a"), dataclasses.replace(second, name=SLOW)]
    bridge = Bridge(_settings(tmp_path, "fast.db"), backends)
    if timeout is not None:
        # What a caller passing a timeout gets: halt, resume and the CLI all change through here.
        bridge.change = functools.partial(  # type: ignore[method-assign]
            Bridge.change, bridge, timeout=timeout
        )
    return bridge


@pytest.mark.parametrize("active", [True, False], ids=["resume", "halt"])
def test_a_target_that_does_not_answer_in_time_is_a_named_failure(
    tmp_path: Path, held: None, active: bool
) -> None:
    bridge = _bridge(tmp_path)
    try:
        results = bridge.change(active=active, actor="alice", reason="drill", timeout=TIMEOUT)
    finally:
        bridge.close()
    assert [r.target for r in results] == ["local-a", SLOW]
    fast, slow = results
    assert fast.ok
    assert fast.ack is not None
    assert fast.ack.active is active
    assert not slow.ok
    assert slow.ack is None
    assert slow.error is not None
    assert SLOW in slow.error
    assert f"within {TIMEOUT:g} s" in slow.error
    assert slow.to_dict()["ok"] is False


def test_resume_with_a_silent_target_is_not_resumed_everywhere(tmp_path: Path, held: None) -> None:
    bridge = _bridge(tmp_path, timeout=TIMEOUT)
    try:
        with pytest.raises(AdminError, match="not resumed everywhere") as caught:
            bridge.resume(actor="alice", reason="drill")
    finally:
        bridge.close()
    assert SLOW in str(caught.value)


def test_halt_with_every_target_silent_is_not_halted_and_names_them(
    tmp_path: Path, held: None
) -> None:
    bridge = _bridge(tmp_path, timeout=TIMEOUT, both_slow=True)
    try:
        with pytest.raises(AdminError, match="NOT HALTED") as caught:
            bridge.halt(actor="alice", reason="drill")
    finally:
        bridge.close()
    assert "local-a" in str(caught.value)
    assert SLOW in str(caught.value)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_the_cli_resume_with_a_silent_target_exits_not_resumed(
    tmp_path: Path, held: None, as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = _bridge(tmp_path, timeout=TIMEOUT)
    with pytest.raises(SystemExit) as exited:
        cli._change_all(bridge, active=True, actor="alice", reason="drill", as_json=as_json)
    assert exited.value.code == cli.EXIT_NOT_RESUMED
    out, err = capsys.readouterr()
    if as_json:
        answer = json.loads(out)
        assert answer["done"] is False
        assert [(t["target"], t["ok"]) for t in answer["targets"]] == [
            ("local-a", True),
            (SLOW, False),
        ]
    else:
        assert f"{SLOW}: NOT changed: no answer from {SLOW}" in err
        assert "NOT RESUMED everywhere" in err


def test_the_cli_halt_with_one_silent_target_is_halted_and_lists_it(
    tmp_path: Path, held: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stop wins: one acknowledged halt holds; the silent target is still reported, not dropped."""
    bridge = _bridge(tmp_path, timeout=TIMEOUT)
    with pytest.raises(SystemExit) as exited:
        cli._change_all(bridge, active=False, actor="alice", reason="drill", as_json=False)
    assert exited.value.code == 0
    assert f"{SLOW}: NOT changed: no answer from {SLOW}" in capsys.readouterr().err
