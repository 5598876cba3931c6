"""The OpenFeature Remote Evaluation Protocol (OFREP) for ``system-active``, failing closed.

Any OpenFeature SDK with an OFREP provider (Go, Java, JavaScript, Python,
.NET...) reads the flag from a relay (or serve) with this. Framework-free:
:meth:`OfrepEndpoint.handle` takes the method, path, body and headers and
returns an :class:`Answer`; the relay's HTTP server (and serve) mount it.

Endpoints (OFREP v1):

- ``POST /ofrep/v1/evaluate/flags/{key}``: one flag. The served flag always
  answers **200 with a value**, ``false`` with a reason while unsure, never an
  error shape: an OFREP provider turns an error into the *caller's* default,
  and a caller passing ``true`` would then run. Other keys answer 404
  ``FLAG_NOT_FOUND``; a malformed body 400 ``PARSE_ERROR`` or ``INVALID_CONTEXT``.
- ``POST /ofrep/v1/evaluate/flags``: bulk, with an ``ETag`` over the decision
  (value, cause, source, detail; not its age) and ``304`` on ``If-None-Match``.

The evaluation context is accepted and ignored: the flag is one switch for
the whole system, the same for every caller.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.clock import isoformat_ms
from breakglass.provider import openfeature_reason

if TYPE_CHECKING:
    from breakglass.engine import StateEngine
    from breakglass.state import FlagState

PREFIX = "/ofrep/v1/evaluate/flags"
MAX_BODY = 64 * 1024
"""Bytes of request body accepted; the context is ignored anyway."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, JSON body (``None``: empty) and headers."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """The body as UTF-8 JSON (empty for ``None``)."""
        return b"" if self.body is None else json.dumps(self.body).encode()


def _failure(status: int, key: str | None, code: str, details: str) -> Answer:
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    if key is not None:
        body = {"key": key, **body}
    return Answer(status, body)


def _context_problem(body: bytes) -> Answer | None:
    """``None`` when ``body`` is an acceptable OFREP request, else the 400 answer."""
    if len(body) > MAX_BODY:
        return _failure(400, None, "PARSE_ERROR", f"request body over {MAX_BODY} bytes")
    if not body.strip():
        return None
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return _failure(400, None, "PARSE_ERROR", "the request body is not JSON")
    if not isinstance(request, dict):
        return _failure(400, None, "PARSE_ERROR", "the request body is not a JSON object")
    if "context" in request and not isinstance(request["context"], dict):
        return _failure(400, None, "INVALID_CONTEXT", "context must be a JSON object")
    return None


class OfrepEndpoint:
    """Answers OFREP requests from one engine's decision.

    Args:
        engine: The engine whose decision is served.
    """

    def __init__(self, engine: StateEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"OfrepEndpoint(flag_key={self._engine.flag_key!r})"

    def handle(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """Answer one request; ``headers`` keys are lower-case."""
        path = path.split("?", 1)[0].rstrip("/")
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return _failure(404, None, "GENERAL", "not an OFREP path")
        if method != "POST":
            return Answer(
                405, {"errorCode": "GENERAL", "errorDetails": "use POST"}, {"Allow": "POST"}
            )
        key = path[len(PREFIX) + 1 :] if path != PREFIX else None
        problem = _context_problem(body)
        if problem is not None:
            return problem if key is None else _failure(problem.status, key, *_code(problem))
        state = self._engine.state
        if key is None:
            return self._bulk(state, headers.get("if-none-match"))
        if key != self._engine.flag_key:
            return _failure(
                404, key, "FLAG_NOT_FOUND", f"this relay serves only {self._engine.flag_key!r}"
            )
        return Answer(200, self.evaluation(state, with_age=True))

    def evaluation(self, state: FlagState, *, with_age: bool) -> dict[str, Any]:
        """The OFREP success body for the served flag: always a value, ``false`` when unsure."""
        meta: dict[str, Any] = {"cause": state.cause.value}
        if state.source is not None:
            meta["source"] = state.source
        if state.detail:
            meta["detail"] = state.detail
        if with_age:
            if state.confirmed_at is not None:
                meta["confirmed_at"] = isoformat_ms(state.confirmed_at)
            age = state.age_ms(self._engine.clock.monotonic())
            if age is not None:
                meta["age_ms"] = round(age, 3)
        return {
            "key": self._engine.flag_key,
            "value": state.active,
            "reason": openfeature_reason(state.cause),
            "variant": "on" if state.active else "off",
            "metadata": meta,
        }

    def _bulk(self, state: FlagState, if_none_match: str | None) -> Answer:
        # Without the age, so the ETag changes with the decision only.
        body = {"flags": [self.evaluation(state, with_age=False)]}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        etag = f'"{digest}"'
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Answer(304, None, {"ETag": etag})
        return Answer(200, body, {"ETag": etag})


def _code(answer: Answer) -> tuple[str, str]:
    assert answer.body is not None  # noqa: S101 -- failures always carry a body
    return str(answer.body["errorCode"]), str(answer.body["errorDetails"])
