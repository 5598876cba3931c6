"""Changing the local flag: ``breakglass halt`` and ``resume`` on the embedded provider."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from breakglass.authority import file_authority
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import StoreError
from breakglass.observation import NoValue
from breakglass.retry import RetryPolicy
from breakglass.seams import Acknowledgement

if TYPE_CHECKING:
    from breakglass.local.store import LocalChange, LocalStore


class LocalAdmin:
    """A :class:`breakglass.seams.FlagAdmin` on the local store; every change is logged."""

    def __init__(
        self,
        store: LocalStore,
        flag_key: str,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._policy = policy or RetryPolicy(attempts=6, budget=10.0)
        self._store = store
        self._flag_key = flag_key
        self._clock = clock

    @property
    def target(self) -> str:
        """The vendor-side object this admin changes (compared by the probe to protect production)."""
        return f"local:{self._store.path.resolve()}:{self._flag_key}"

    def halt_authority(self) -> str | None:
        """How this process could change the flag (``None``: it can only read the store)."""
        return file_authority(self._store.path)

    def __repr__(self) -> str:
        return f"LocalAdmin({self._store!r}, flag_key={self._flag_key!r})"

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001
        """Write the value, then read back what a reader of this store is served.

        ``created`` is set when the flag (or the store file) did not exist: then
        nothing reading this store was active before, so a halt that creates it
        stops nothing (a running service reads another store). A lock held too
        long by other writers (many halts at once) is waited out with backoff
        within the policy's budget; any other store error is raised.
        """
        path = self._store.path.resolve()
        existed = path.exists()
        change = self._write_waiting(active, actor=actor, reason=reason)
        served = self._store.read(self._flag_key)
        if type(served) is bool:
            detail = f"read back from {path}: {str(served).lower()}"
        else:
            detail = f"read back from {path}: not a boolean"
            served = None
        return Acknowledgement(
            flag_key=self._flag_key,
            active=active,
            acknowledged_at=self._clock.now(),
            change_id=f"local:{change.change_id}",
            changed=change.value_before is not active,
            served=served,
            served_detail=detail,
            created=change.action == "created" or not existed,
            target=f"store {path}" + ("" if existed else " (a new file)"),
        )

    def _write_waiting(self, active: bool, *, actor: str, reason: str) -> LocalChange:  # noqa: FBT001
        policy = self._policy
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._store.write(self._flag_key, active, actor=actor, reason=reason)
            except StoreError as exc:
                wait = policy.delay(attempt)
                spent = time.monotonic() - started
                if not exc.transient or attempt >= policy.attempts or spent + wait > policy.budget:
                    raise
            time.sleep(wait)

    def get_active(self) -> bool | None:
        """The stored value, ``None`` when the flag is missing or not a boolean."""
        value = self._store.read(self._flag_key)
        if value is NoValue.FLAG_MISSING or type(value) is not bool:
            return None
        return value
