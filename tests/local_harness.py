"""The conformance harness of the embedded local provider."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from breakglass.local.store import LocalStore
from breakglass.observation import NoValue
from breakglass.settings import LocalSettings, Settings
from breakglass.state import Cause
from breakglass.testing.conformance import NotExpressible

if TYPE_CHECKING:
    from pathlib import Path

KEY = "system-active"


class LocalHarness:
    """The 'vendor' is the SQLite file; the 'dashboard' writes it directly."""

    poll_bound = 0.02

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "vendor" / "local.db"
        self.store = LocalStore(self.db)
        self._runs = 0
        self._aside: Path | None = None
        self._garbage_backup: bytes | None = None
        self._locker: threading.Thread | None = None
        self._release = threading.Event()

    def settings(self, **overrides: Any) -> Settings:
        self._runs += 1
        overrides.setdefault("state_dir", self.root / f"state-{self._runs}")
        return Settings(
            provider="local",
            local=LocalSettings(path=self.db, poll_interval=self.poll_bound),
            **overrides,
        )

    def set_from_dashboard(self, active: bool) -> None:
        self.store.write(KEY, active, actor="dashboard", reason="conformance")

    def vendor_value(self) -> bool | None:
        value = self.store.read(KEY)
        return None if value is NoValue.FLAG_MISSING else bool(value)

    def delete_flag(self) -> None:
        self.store.delete(KEY, actor="dashboard", reason="conformance")

    def set_wrong_type(self) -> None:
        self.store.write(KEY, "false", actor="dashboard", reason="conformance")

    def serve_garbage(self) -> None:
        self._garbage_backup = self.db.read_bytes()
        # In place, without truncating first: a reader must not catch an empty file half-way
        # (which reads as another, correct, halt: flag_missing).
        with self.db.open("r+b") as f:
            f.write(b"\x00garbage, not a database" * 64)

    def stop(self) -> None:
        self._aside = self.db.with_suffix(".aside")
        self.db.rename(self._aside)
        self.db.mkdir()  # a directory where the file was: every open fails

    def stall(self) -> None:
        ready = threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(self.db, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            ready.set()
            self._release.wait(30)
            conn.execute("ROLLBACK")
            conn.close()

        self._release.clear()
        self._locker = threading.Thread(target=hold, daemon=True)
        self._locker.start()
        ready.wait(5)

    def serve_true_while_off(self) -> None:
        raise NotExpressible("the local store serves exactly the value stored: no targeting")

    def exclude_service_while_on(self) -> None:
        raise NotExpressible("the local store serves exactly the value stored: no targeting")

    def restore(self) -> None:
        if self._locker is not None:
            self._release.set()
            self._locker.join(5)
            self._locker = None
        if self._aside is not None:
            shutil.rmtree(self.db)
            self._aside.rename(self.db)
            self._aside = None
        if self._garbage_backup is not None:
            self.db.write_bytes(self._garbage_backup)
            self._garbage_backup = None
        if self.vendor_value() is not True:
            self.set_from_dashboard(True)

    def bad_credentials(self) -> Settings:
        raise NotExpressible("the local store has no credentials")

    def secrets(self) -> list[str]:
        return []

    def away_causes(self) -> frozenset[Cause]:
        # The local store is on this host: when it cannot be opened, the value is unknown at once.
        return frozenset({Cause.ERROR})
