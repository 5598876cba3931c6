"""Log lines: vendor loggers tamed, halt and recovery at one level, JSON lines on request."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from breakglass.bridge import Bridge
from breakglass.local import LocalStore
from breakglass.logs import VendorLogFilter
from breakglass.settings import LocalSettings, Settings
from breakglass.testing.conformance import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = "system-active"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vendor(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[logging.Logger, _Clock]]:
    clock = _Clock()
    log = logging.getLogger("test.vendor.sdk")
    flt = VendorLogFilter(repeat_after=60.0, clock=clock)
    log.addFilter(flt)
    yield log, clock
    log.removeFilter(flt)


def _fail(log: logging.Logger, port: int) -> None:
    """What an SDK logs on a failed poll: an error with a chained exception's traceback."""
    outer = OSError(f"Max retries exceeded with url: /api (port {port})")
    outer.__cause__ = ConnectionRefusedError(111, "Connection refused")
    log.error("feature fetch failed due to exception", exc_info=outer)


def test_vendor_traceback_is_one_line_once(
    vendor: tuple[logging.Logger, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """Ten failed polls: one WARNING line, no traceback; again only after repeat_after."""
    log, clock = vendor
    caplog.set_level(logging.WARNING)
    for port in range(10):
        _fail(log, port)
    lines = [r for r in caplog.records if r.name == log.name]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None
    assert "Traceback" not in caplog.text
    clock.now = 61.0
    _fail(log, 99)
    assert len([r for r in caplog.records if r.name == log.name]) == 2


def test_vendor_detail_with_info_and_never_bodies(
    vendor: tuple[logging.Logger, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """With -v the cause chain is on the same line; debug records (bodies) never pass."""
    log, _ = vendor
    caplog.set_level(logging.DEBUG)
    log.debug('response body: {"features": [{"name": "system-active"}]}')
    _fail(log, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert len(messages) == 1
    assert "OSError: Max retries" in messages[0]
    assert "ConnectionRefusedError" in messages[0]
    assert "\n" not in messages[0]
    assert "response body" not in caplog.text


def test_silent_below_warning_when_the_command_is_quiet(
    vendor: tuple[logging.Logger, _Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """At the command's default level (ERROR) a demoted vendor error prints nothing."""
    log, _ = vendor
    caplog.set_level(logging.ERROR)
    _fail(log, 1)
    assert [r for r in caplog.records if r.name == log.name] == []


def test_halt_and_recovery_are_logged_at_the_same_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "local.db"
    store = LocalStore(path)
    store.write(KEY, True, actor="t", reason="on")
    settings = Settings(
        provider="local", state_dir=tmp_path / "state", local=LocalSettings(path=path)
    )
    caplog.set_level(logging.INFO, logger="breakglass")
    with Bridge.from_settings(settings) as bridge:
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
        store.write(KEY, False, actor="t", reason="incident")
        assert wait_for(lambda: not bridge.engine.active, 5.0) is not None
        store.write(KEY, True, actor="t", reason="fixed")
        assert wait_for(lambda: bridge.engine.active, 5.0) is not None
    changes = [
        r for r in caplog.records if "HALTED" in r.getMessage() or "ACTIVE" in r.getMessage()
    ]
    first, halted, recovered = changes[:3]
    assert first.levelno == logging.INFO  # the start is not news
    assert "HALTED, cause off" in halted.getMessage()
    assert "ACTIVE again" in recovered.getMessage()
    assert "after HALTED, cause off" in recovered.getMessage()
    assert halted.levelno == recovered.levelno == logging.WARNING


def test_json_log_lines(tmp_path: Path) -> None:
    """--log-format json (or BREAKGLASS_LOG_FORMAT=json): every stderr line is a JSON object."""
    env = {**os.environ, "BREAKGLASS_STATE_DIR": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "breakglass"]
    subprocess.run([*cmd, "resume", "--reason", "go"], env=env, check=True, capture_output=True)
    for args, extra in (
        (["--log-format", "json", "-v", "status"], {}),
        (["-v", "status"], {"BREAKGLASS_LOG_FORMAT": "json"}),
    ):
        done = subprocess.run(
            [*cmd, *args], env={**env, **extra}, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        # Log records are JSON; the command's own warnings to people stay text.
        lines = [
            json.loads(line)
            for line in done.stderr.splitlines()
            if line and not line.startswith("breakglass: warning:")
        ]
        assert lines, done.stderr
        assert all(set(line) >= {"ts", "level", "logger", "message"} for line in lines)
        assert any("ACTIVE" in line["message"] for line in lines)
