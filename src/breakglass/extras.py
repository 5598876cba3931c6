"""Optional parts of the core: a command that needs an extra says which, in one line."""

from __future__ import annotations

from importlib.util import find_spec

from breakglass.errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "demo": ("uvicorn", "httpx"),
    "serve": ("fastapi", "uvicorn", "multipart", "jinja2", "itsdangerous", "joserfc", "httpx"),
    "drill": ("httpx", "jinja2"),
    "notify": ("httpx", "standardwebhooks"),
}
"""The modules each extra brings that its commands import (a subset of pyproject's lists)."""


def require_extras(command: str, *extras: str) -> None:
    """Check that ``extras`` are installed before ``command`` starts.

    Raises:
        MissingExtraError: Naming the command, the missing modules and the install line.
    """
    missing = sorted({m for extra in extras for m in EXTRAS[extra] if find_spec(m) is None})
    if missing:
        wanted = ",".join(extras)
        raise MissingExtraError(
            f"`breakglass {command}` needs the {wanted!r} extra ({', '.join(missing)} not installed): "
            f"install 'breakglass[{wanted}]' (see Installing in the README)"
        )
