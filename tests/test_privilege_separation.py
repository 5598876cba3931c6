"""The service reads the flag but cannot change it: real file modes, a real second account.

The operator's account owns the flag store (and its directory); the guarded
service runs as another account with its own state directory. As root the
test forks a child that drops to ``nobody`` (the interpreter and every module
are loaded before the fork, so nothing needs reading from root's home); as an
ordinary user it makes the store read-only to itself instead.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from breakglass.bridge import Bridge
from breakglass.cli import main
from breakglass.errors import StoreError
from breakglass.local.store import LocalStore
from breakglass.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FLAG = "system-active"
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def layout() -> Iterator[tuple[Path, Path]]:
    """``(flag_store, service_state_dir)`` in a world-traversable temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="breakglass-privsep-"))
    root.chmod(0o755)
    operator = root / "flag"
    operator.mkdir(mode=0o755)
    service = root / "service"
    service.mkdir(mode=0o700)
    if IS_ROOT:
        nobody = pwd.getpwnam("nobody")
        os.chown(service, nobody.pw_uid, nobody.pw_gid)
    yield operator / "local.db", service
    shutil.rmtree(root, ignore_errors=True)


def _settings(store: Path, state: Path) -> Settings:
    return Settings(provider="local", state_dir=state, local=LocalSettings(path=store))


def _as_service(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` as the service's account (``nobody`` when root) and return its report."""
    if not IS_ROOT:
        return work()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, do the work, report, leave without cleanup
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            report = work()
        except BaseException as exc:  # noqa: BLE001 -- reported to the parent, never raised in the fork
            report = {"crashed": f"{type(exc).__name__}: {exc}"}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer


def _service_view(store: Path, state: Path) -> dict[str, Any]:
    """What the service's account can do with the flag: read it, change it, replace it."""
    bridge = Bridge.from_settings(_settings(store, state)).start()
    try:
        seen = bridge.engine.wait_for_confirmation(5.0)
        report: dict[str, Any] = {
            "active": seen.active,
            "cause": seen.cause.value,
            "authority": bridge.halt_authority(),
        }
    finally:
        bridge.close()
    try:
        LocalStore(store).write(FLAG, True, actor="service", reason="un-halt myself")
        report["write"] = "succeeded"
    except StoreError as exc:
        report["write"] = f"refused: {exc}"
    forged = state / "forged.db"
    shutil.copyfile(store, forged)
    try:
        os.replace(forged, store)
        report["replace"] = "succeeded"
    except OSError as exc:
        report["replace"] = f"refused: {exc.strerror}"
    return report


def _lock_for_ordinary_user(store: Path) -> None:
    # Without a second account, the same process is "the service" once the store is read-only to it.
    if not IS_ROOT:
        store.chmod(0o444)
        store.parent.chmod(0o555)


def test_the_service_reads_the_flag_but_cannot_change_it(layout: tuple[Path, Path]) -> None:
    """Operator-owned store, service-owned state: the service follows halts and cannot undo them."""
    store, state = layout
    # Warm up every module the child will need (it cannot read root's home after the drop).
    warm = store.parent.parent / "warm"
    warm.mkdir()
    LocalStore(warm / "local.db").write(FLAG, True, actor="op", reason="warm up")
    _service_view(warm / "local.db", warm)

    old_umask = os.umask(0o002)  # an operator whose group could write by default
    try:
        LocalStore(store).write(FLAG, True, actor="operator", reason="go live")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(store.stat().st_mode) & 0o022 == 0, oct(store.stat().st_mode)
    _lock_for_ordinary_user(store)

    running = _as_service(lambda: _service_view(store, state))
    assert "crashed" not in running, running
    assert (running["active"], running["cause"]) == (True, "active"), running
    assert running["authority"] == [], running
    assert running["write"].startswith("refused"), running
    assert running["replace"].startswith("refused"), running
    assert LocalStore(store).read(FLAG) is True  # nothing the service tried changed it

    if not IS_ROOT:
        store.parent.chmod(0o755)
        store.chmod(0o644)
    LocalStore(store).write(FLAG, False, actor="operator", reason="incident")
    _lock_for_ordinary_user(store)
    halted = _as_service(lambda: _service_view(store, state))
    assert (halted["active"], halted["cause"]) == (False, "off"), halted
    assert halted["write"].startswith("refused"), halted
    assert LocalStore(store).read(FLAG) is False
    if not IS_ROOT:
        store.parent.chmod(0o755)


def test_status_and_the_bridge_warn_when_this_process_can_change_the_flag(
    layout: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The usual single-account layout: the serving process could un-halt itself, and is told so."""
    store, state = layout
    LocalStore(store).write(FLAG, True, actor="operator", reason="go live")
    caplog.set_level("WARNING", logger="breakglass")
    bridge = Bridge.from_settings(_settings(state / "local.db", state))
    LocalStore(state / "local.db").write(FLAG, True, actor="operator", reason="go live")
    if not IS_ROOT:
        state.chmod(0o700)
    bridge.start()
    bridge.close()
    assert "can un-halt itself" in caplog.text
    assert "flag store" in caplog.text
    caplog.clear()
    control_plane = Bridge.from_settings(_settings(state / "local.db", state))
    control_plane.start(halt_authority=True)  # breakglass serve: meant to change the flag
    control_plane.close()
    assert "can un-halt itself" not in caplog.text
    env = {"BREAKGLASS_STATE_DIR": str(state)}
    result = CliRunner().invoke(main, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.splitlines()[-1])
    assert info["can_change_flag"], info
    text = CliRunner().invoke(main, ["status"], env=env)
    assert "breakglass: warning: local: this process can write the flag store" in text.output
    assert "docs/deployment.md" in text.output
