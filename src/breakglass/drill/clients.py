"""The drill's HTTP clients: serve's API and the kill switch's, used as any operator would.

The drill has no side door: it halts, reads the fleet, the notifications and
the resumption gate, and resumes through the same routes a person or a pager
integration uses, with the participants' own tokens. Every failure is a
:class:`DrillStepError` whose message names the route and the answer, never
a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from breakglass.errors import BreakglassError
from breakglass.safe_text import safe

if TYPE_CHECKING:
    import httpx
    from pydantic import SecretStr

TIMEOUT = 30.0


class DrillStepError(BreakglassError):
    """A call of the drill failed; the message says which and how."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return safe(response.text, limit=200)
    if isinstance(body, dict):
        text = body.get("detail") or body.get("title") or body
        missing = body.get("missing")
        if missing:
            text = f"{text} (missing: {'; '.join(str(m) for m in missing)})"
        return safe(text, limit=400)
    return safe(body, limit=200)


class Api:
    """One base URL, one bearer token; JSON in, JSON out."""

    def __init__(self, base_url: str, token: SecretStr | None, what: str) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT)
        self.what = what

    def __repr__(self) -> str:
        return f"Api({self.what!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> tuple[int, Any]:
        """Call ``path``; the status and the JSON body, or :class:`DrillStepError`."""
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DrillStepError(
                f"{self.what} {method} {path}: {type(exc).__name__} ({safe(exc, limit=200)})"
            ) from None
        if response.status_code not in ok:
            raise DrillStepError(
                f"{self.what} {method} {path}: {response.status_code} {_detail(response)}"
            )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def get(self, path: str, **kwargs: Any) -> Any:
        """``GET path`` (200 expected): the JSON body."""
        return self.call("GET", path, **kwargs)[1]

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        """``POST path`` with a JSON body (200 expected): the JSON body."""
        return self.call("POST", path, json=body, **kwargs)[1]
