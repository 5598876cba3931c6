"""Failed-token limits per client address: past the limit, a wrong token answers 429.

Only failures are limited. A valid token is accepted whatever its address did
before: the halt must not be blockable by anyone who can send garbage from the
same address (a shared NAT, a neighbouring pod). The tokens carry 256 random
bits, so the limit is not what keeps them from being guessed; it bounds the
log lines and store look-ups a flood costs, and tells a misconfigured client to
back off.

The switch keeps its own limiter rather than the control plane's: it imports
nothing of the flag path (see the README), so that it works when that is down.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque

MAX_CLIENTS = 10_000
"""Addresses remembered at most; past it the oldest are forgotten (a flood never grows memory)."""


def counted_as(address: str) -> str:
    """An IPv4 address as it is, an IPv6 address as its /64 (one subscriber's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped else str(ipaddress.IPv6Network((ip, 64), strict=False))


class FailedTokenLimit:
    """At most ``limit`` failures per address are answered 401 in any ``window`` seconds.

    Counted on the monotonic clock: a wall-clock step neither lifts nor extends a limit.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def fail(self, client: str) -> float | None:
        """Count a failure by ``client``.

        Returns ``None`` when it is answered as a plain failure (401), or the
        seconds until ``client`` may try again when it is past the limit (429;
        not counted, so a flood does not extend its own wait).
        """
        now = time.monotonic()
        client = counted_as(client)
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            self._seen[client] = times  # re-inserted: the dict's order is oldest use first
            if len(times) >= self.limit:
                return max(1.0, self.window - (now - times[0]))
            times.append(now)
            while len(self._seen) > MAX_CLIENTS:
                del self._seen[next(iter(self._seen))]
            return None
