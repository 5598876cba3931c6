"""What the ASGI and WSGI middleware are configured with: one set of options, one meaning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from breakglass.middleware._hold import parse_routes

if TYPE_CHECKING:
    from collections.abc import Iterable

    from breakglass.guard import Guard
    from breakglass.hold.queue import HoldQueue

AppT = TypeVar("AppT")


class GuardOptions(Generic[AppT]):
    """The wrapped app, its guard, the exempt paths and the holding options.

    Args:
        app: The application to protect.
        guard: The guard that admits or refuses each request.
        exempt_paths: Paths served even while halted, and not counted.
        hold: Where requests to ``hold_routes`` are kept while halted (none: refused).
        hold_routes: ``"METHOD /path"`` or ``"/path"`` (any method), a path covering what is below it.
        hold_max_body: The largest body kept; a larger one is refused.
    """

    def __init__(
        self,
        app: AppT,
        guard: Guard,
        *,
        exempt_paths: Iterable[str] = (),
        hold: HoldQueue | None = None,
        hold_routes: Iterable[str] = (),
        hold_max_body: int = 1 << 20,
    ) -> None:
        self.app = app
        self.guard = guard
        self.exempt_paths = frozenset(exempt_paths)
        self.hold = hold
        self.hold_routes = parse_routes(hold_routes)
        self.hold_max_body = hold_max_body
