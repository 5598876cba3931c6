"""Failed-credential limits per client: past the limit, a failure answers 429 instead of 401.

Only failures are limited. A valid credential is accepted whatever its
address did before: authority to halt must not be blockable by anyone who can
send garbage from the same address (a shared NAT, a neighbouring pod). API
tokens carry 256 random bits, so the limit is not what keeps them from being
guessed; it bounds what a flood costs (log lines, audit records, look-ups) and
tells a misconfigured client to back off.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from typing import Protocol

from breakglass.clock import SYSTEM_CLOCK, Clock

MAX_CLIENTS = 10_000
"""Clients remembered at most; past it the least recently seen are forgotten."""


def client_key(address: str) -> str:
    """What failures are counted by: an IPv4 address, or an IPv6 address's /64.

    One IPv6 subscriber is commonly given a whole /64: counted per address,
    its holder could take a fresh address for every attempt.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a Unix socket, "unknown"): counted as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimit(Protocol):
    """**Protocol**: counts failed credentials per client."""

    def fail(self, client: str) -> float | None:
        """Count a failure by ``client``.

        Returns ``None`` when it is answered as a plain failure (401), or the
        seconds until ``client`` may try again when it is past the limit (429).
        """
        ...


class FailureWindow:
    """At most ``limit`` failures per client are answered 401 in any ``window`` seconds.

    Kept in memory and counted on the monotonic clock, so a wall-clock step
    neither lifts nor extends a limit. Failures past the limit are not counted:
    a flood does not extend its own wait.
    """

    def __init__(self, limit: int, window: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def fail(self, client: str) -> float | None:
        """Count a failure by ``client`` (see :meth:`FailureLimit.fail`)."""
        now = self._clock.monotonic()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            self._seen[client] = times  # re-inserted: the dict's order is least recently seen first
            if len(times) >= self.limit:
                return max(1.0, self.window - (now - times[0]))
            times.append(now)
            while len(self._seen) > MAX_CLIENTS:
                del self._seen[next(iter(self._seen))]
            return None
