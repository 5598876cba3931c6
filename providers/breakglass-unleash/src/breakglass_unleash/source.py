"""Reading the flag from Unleash: the SDK evaluates, a light single-flag poll proves freshness.

Why two readers (details in ``docs/providers/unleash.md``):

* The Unleash SDK (``UnleashClient``) evaluates the flag with ``is_enabled`` and
  a fixed service context, so strategies and constraints mean what they mean in
  every other Unleash client. But it gives no freshness: no callback on a 304,
  nothing on a failed poll, and its bulk endpoint only changes on the server's
  one-second revision tick, so a halt takes 1-2 s to reach it.
* The single-flag client endpoint ``GET {url}/client/features/{flag}`` answers
  from the database at once. The source asks it every ``refresh_interval``
  seconds; every 200 is a contact that *confirms*, a 404 confirms that the flag
  is missing, anything else is a failed contact (the value ages).

Combination, fail-closed: the single-flag read decides ``false`` on its own
(stop wins, within one ``refresh_interval``). ``true`` needs both: the single
flag enabled *and* the SDK's ``is_enabled`` true; it is confirmed at the older
of the two contacts, so a stalled SDK poll makes ``true`` go stale too. The SDK's
contacts are seen through a ``requests`` response hook on its own poll (200 or
304 of ``/client/features``).

The SDK gets an in-memory cache: its default on-disk cache would hand a new
process the last run's flags (a stale ``true``) while the server is away.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from UnleashClient.clients.unleash_client import UnleashClient
from UnleashClient.utils import InstanceAllowType

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.logs import tame_vendor_loggers
from breakglass.observation import Observation
from breakglass.reading import ReadingLoop, stall_allowance
from breakglass.retry import safe_url
from breakglass_unleash._http import describe_exception, new_session, retry_after_seconds
from breakglass_unleash.cache import MemoryCache
from breakglass_unleash.served import service_context

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from breakglass_unleash.settings import UnleashSettings

logger = logging.getLogger("breakglass.unleash")
# UnleashClient logs a traceback per failed poll and, at debug, whole server bodies; its
# scheduler logs every poll at INFO. breakglass reports the flag's health itself, once per change.
tame_vendor_loggers("UnleashClient", "apscheduler.scheduler", "apscheduler.executors.default")

SOURCE_NAME = "unleash"
_REVISION_TICK = 1.25
"""Seconds: Unleash recomputes its bulk revision once a second; the rest is margin."""
_MAX_RATE_LIMIT_PAUSE = 10.0
_CLOSE_WAIT = 0.9


@dataclass(frozen=True, slots=True)
class _Contact:
    mono: float
    wall: datetime


class UnleashSource:
    """A :class:`breakglass.seams.FlagSource` on Unleash (server or Edge).

    Args:
        settings: The ``unleash`` settings section.
        flag_key: The flag's name in Unleash.
        clock: The clocks to stamp confirmations with.
    """

    def __init__(
        self, settings: UnleashSettings, flag_key: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._settings = settings
        self._flag_key = flag_key
        self._clock = clock
        self._flag_url = f"{settings.url}/client/features/{quote(flag_key, safe='')}"
        self._context = service_context(settings)
        self._lock = threading.Lock()
        self._current = Observation.unread(SOURCE_NAME)
        self._stop = threading.Event()
        self._session: requests.Session | None = None
        self._sdk: UnleashClient | None = None
        self._sdk_contact: _Contact | None = None
        # After a "disabled", the monotonic time from which an SDK contact may speak for a resume.
        self._halted_seen = False
        self._resume_gate: float | None = None
        self._sdk_problem: str | None = None
        self._threads: list[threading.Thread] = []
        self._problem: str | None = "not started"
        self._pause_until = 0.0
        self._loop = ReadingLoop(
            "breakglass-unleash-poll",
            self.poll_once,
            interval=settings.refresh_interval,
            crashed=self._crashed,
            stall_after=stall_allowance(settings.refresh_interval, settings.request_timeout),
            not_before=lambda: self._pause_until,
            stop=self._stop,
        )

    @property
    def name(self) -> str:
        """Always ``"unleash"``."""
        return SOURCE_NAME

    def __repr__(self) -> str:
        return f"UnleashSource(url={safe_url(self._settings.url)!r}, flag_key={self._flag_key!r})"

    # ------------------------------------------------------------------ lifecycle

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the SDK and the single-flag poll in the background; returns at once."""
        self._session = new_session(self._settings.client_token)
        self._sdk = self._build_sdk()
        sdk_thread = threading.Thread(
            target=self._start_sdk, args=(self._sdk,), name="breakglass-unleash-sdk", daemon=True
        )
        self._threads = [sdk_thread]
        sdk_thread.start()
        self._loop.start(listener)

    def current(self) -> Observation:
        """The latest observation."""
        return self._current

    def readers(self) -> Sequence[ReadingLoop]:
        """The single-flag poll (the SDK's own poll is watched through its contacts' age)."""
        return (self._loop,)

    def close(self) -> None:
        """Stop both readers; returns within about a second."""
        self._stop.set()
        deadline = time.monotonic() + _CLOSE_WAIT
        sdk = self._sdk
        closer: threading.Thread | None = None
        if sdk is not None:
            # destroy() waits for an SDK poll in flight; never let that hold close() up.
            closer = threading.Thread(target=_destroy_quietly, args=(sdk,), daemon=True)
            closer.start()
        self._loop.close(timeout=max(0.0, deadline - time.monotonic()))
        for thread in [*self._threads, *([closer] if closer else [])]:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._session is not None:
            self._session.close()

    # ------------------------------------------------------------------ reading

    def poll_once(self) -> Observation:
        """Read the single-flag endpoint once and fold the SDK's view in; returns the new observation."""
        session = self._session
        if session is None:
            return self._current
        timeout = self._settings.request_timeout
        # Stamped before the request: its answer was current no earlier than this. When the
        # answer is read (after a descheduled thread, a slow network) would claim more freshness.
        contact = _Contact(self._clock.monotonic(), self._clock.now())
        try:
            response = session.get(self._flag_url, timeout=(min(1.0, timeout), timeout))
        except requests.RequestException as exc:
            return self._failed(describe_exception(exc, self._flag_url))
        status = response.status_code
        if status == 404:
            return self._confirm(Observation.missing(SOURCE_NAME, self._clock))
        if status in (401, 403):
            # Unleash answered, and its answer is "you may not read this": not a blip, halt at once.
            return self._unreadable(self._status_problem(status))
        if status != 200:
            if status == 429:
                pause = min(_MAX_RATE_LIMIT_PAUSE, retry_after_seconds(response, 1.0))
                self._pause_until = time.monotonic() + pause
            return self._failed(self._status_problem(status))
        try:
            body = response.json()
        except ValueError:
            return self._failed(f"malformed JSON from {safe_url(self._flag_url)}")
        if (
            not isinstance(body, dict)
            or body.get("name") != self._flag_key
            or "enabled" not in body
        ):
            return self._failed(f"unexpected answer from {safe_url(self._flag_url)}")
        return self._combine(body["enabled"], contact)

    # ------------------------------------------------------------------ internals

    def _combine(self, enabled: object, contact: _Contact) -> Observation:
        if enabled is not True:
            # False (stop wins at once) or a wrong type (the engine reads it as halted).
            with self._lock:
                self._halted_seen, self._resume_gate = True, None
            return self._confirm(Observation(SOURCE_NAME, enabled, contact.mono, contact.wall))
        with self._lock:
            if self._halted_seen and self._resume_gate is None:
                # The SDK's bulk endpoint lags by up to one revision tick: a payload fetched
                # before the tick after this resume may still predate the halt, and serving
                # it would flap (on now, off again at the SDK's next poll).
                self._resume_gate = contact.mono + _REVISION_TICK
            gate = self._resume_gate
            sdk_contact = self._sdk_contact
            sdk_problem = self._sdk_problem
        if gate is not None and (sdk_contact is None or sdk_contact.mono < gate):
            return self._set(self._current, None)  # still halted: the last "false" just ages
        with self._lock:
            self._halted_seen, self._resume_gate = False, None
        sdk = self._sdk
        unknown: list[str] = []

        def fallback(name: str, _context: dict[str, Any]) -> bool:
            unknown.append(name)
            return False

        value = False
        if sdk is not None and sdk_contact is not None:
            value = sdk.is_enabled(self._flag_key, self._context, fallback_function=fallback)
        if sdk is None or sdk_contact is None or unknown:
            # The SDK has not loaded the flag yet (cold start, or a flag created a moment
            # ago): nothing new is confirmed, the last observation just ages.
            if sdk_problem is not None:
                return self._failed(sdk_problem)
            return self._set(self._current, None)
        older = sdk_contact if sdk_contact.mono < contact.mono else contact
        # A failing SDK poll rides along as the error: `true` then goes stale with that reason.
        obs = Observation(SOURCE_NAME, bool(value), older.mono, older.wall, error=sdk_problem)
        return self._set(obs, sdk_problem)

    def _status_problem(self, status: int) -> str:
        where = safe_url(self._flag_url)
        if status == 401:
            return f"HTTP 401 from {where}: Unleash rejected BREAKGLASS_UNLEASH__CLIENT_TOKEN (unknown or expired)"
        if status == 403:
            return (
                f"HTTP 403 from {where}: BREAKGLASS_UNLEASH__CLIENT_TOKEN may not read client features "
                "(use a backend token scoped to the project and environment)"
            )
        if status == 429:
            return f"HTTP 429 from {where}: rate limited; lower the poll rate or read through Unleash Edge"
        return f"HTTP {status} from {where}"

    def _confirm(self, obs: Observation) -> Observation:
        return self._set(obs, None)

    def _failed(self, problem: str) -> Observation:
        return self._set(self._current.failed(problem), problem)

    def _unreadable(self, problem: str) -> Observation:
        return self._set(self._current.unreadable(problem), problem)

    def _crashed(self, problem: str) -> Observation:
        return self._unreadable(problem)

    def _set(self, obs: Observation, problem: str | None) -> Observation:
        if problem is None and obs.error is not None:
            obs = Observation(obs.source, obs.value, obs.confirmed_at, obs.confirmed_wall)
        self._current = obs
        self._log_health(problem)
        return obs

    def _log_health(self, problem: str | None) -> None:
        # One line per change of health, never one per poll.
        previous = self._problem
        if problem == previous:
            return
        self._problem = problem
        if problem is None:
            logger.info("unleash: reading %r from %s", self._flag_key, safe_url(self._settings.url))
        else:
            logger.warning("unleash: %s", problem)

    # ------------------------------------------------------------------ the SDK

    def _build_sdk(self) -> UnleashClient:
        settings = self._settings
        return UnleashClient(
            url=settings.url,
            app_name=settings.app_name,
            environment=settings.environment,
            # A fresh id per source: the SDK's duplicate-instance warning would print part of the token.
            instance_id=f"breakglass-{uuid.uuid4().hex[:12]}",
            # The SDK accepts a float here although it is annotated int.
            refresh_interval=settings.sdk_refresh_interval,  # type: ignore[arg-type]
            request_timeout=settings.request_timeout,  # type: ignore[arg-type]
            # Retries inside one poll would hide a failing server behind 4x the timeout.
            request_retries=0,
            disable_metrics=True,
            disable_registration=True,
            custom_headers={"Authorization": settings.client_token.get_secret_value()},
            # requests' response hook: the only place the SDK shows a 304 (= still fresh).
            custom_options={"hooks": {"response": [self._on_sdk_response]}},
            cache=MemoryCache(),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )

    def _start_sdk(self, sdk: UnleashClient) -> None:
        try:
            # Runs the SDK's first poll synchronously (bounded by request_timeout), then schedules it.
            sdk.initialize_client()
        except Exception as exc:  # noqa: BLE001 -- a broken SDK start must read as halted, not crash
            with self._lock:
                self._sdk_problem = f"the Unleash SDK failed to start: {type(exc).__name__}"
            logger.warning("unleash: %s", self._sdk_problem)
        if self._stop.is_set():
            _destroy_quietly(sdk)

    def _on_sdk_response(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        """Hook on every response of the SDK's own poll; never raises (it runs inside the SDK)."""
        try:
            if not urlsplit(response.url).path.endswith("/client/features"):
                return
            status = response.status_code
            ok = status == 304 or (status == 200 and _looks_like_features(response))
            with self._lock:
                if ok:
                    # The SDK's request left ``elapsed`` before its answer came: that moment.
                    took = response.elapsed.total_seconds()
                    self._sdk_contact = _Contact(
                        self._clock.monotonic() - took,
                        self._clock.now() - timedelta(seconds=took),
                    )
                    self._sdk_problem = None
                else:
                    self._sdk_problem = f"the Unleash SDK's poll answered HTTP {status}"
        except Exception:
            logger.debug("unleash: response hook failed", exc_info=True)


def _looks_like_features(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("features"), list)


def _destroy_quietly(sdk: UnleashClient) -> None:
    try:
        sdk.destroy()
    except Exception:
        logger.debug("unleash: SDK destroy failed", exc_info=True)
