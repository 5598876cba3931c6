"""Reading the flag from LaunchDarkly: the SDK's stream evaluates, a bounded second opinion proves freshness.

How a value becomes *confirmed* (details in ``docs/providers/launchdarkly.md``):

* The LaunchDarkly SDK (``ldclient``) keeps a streaming connection and
  evaluates the flag with ``variation_detail`` for a fixed service context.
  Data that arrives on the stream confirms the value at that moment: the data
  source status turning ``VALID`` (a full ``put``) and a flag-tracker change
  of the flag (a ``patch`` or ``delete``).
* The status alone cannot prove freshness afterwards: it stays ``VALID`` on a
  stream that has silently stalled until the SDK's read timeout (300 s), and
  heartbeats are not visible through the SDK. So every ``verify_interval``
  seconds the source asks the polling endpoint (``GET {base_uri}/sdk/latest-all``,
  conditional with ``If-None-Match``) for the flag's version. When the SDK's
  store holds that version (or a newer one), the SDK's value was current when
  the request was sent, and it is confirmed at that moment. When the vendor
  has a newer version than the stream delivered, the stream is behind (stalled
  or lagging): nothing is confirmed and the value ages, so the engine halts
  within ``max_staleness``.
* ``INTERRUPTED`` / ``OFF`` (and a failed start) are failed contacts: the value
  keeps its last confirmation and ages, with the reason as the error.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from ldclient import LDClient
from ldclient.config import Config, HTTPConfig
from ldclient.feature_store import InMemoryFeatureStore
from ldclient.interfaces import (
    DataSourceErrorKind,
    DataSourceState,
    DataSourceStatus,
    FlagChange,
)
from ldclient.versioned_data_kind import FEATURES

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.observation import NoValue, Observation
from breakglass.reading import ReadingLoop, stall_allowance
from breakglass.retry import safe_url
from breakglass_launchdarkly._http import (
    describe_exception,
    json_or_none,
    new_session,
    rate_limit_wait,
    scrub,
)
from breakglass_launchdarkly.served import service_context
from breakglass_launchdarkly.settings import PREFIX, SDK_KEY_SETTING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from breakglass_launchdarkly.settings import LaunchDarklySettings

logger = logging.getLogger("breakglass.launchdarkly")

SOURCE_NAME = "launchdarkly"
POLL_PATH = "/sdk/latest-all"
WRAPPER_NAME = "breakglass"
_CLOSE_WAIT = 0.9
_TRUST_STATUS_TICK = 0.25
_MAX_RATE_LIMIT_PAUSE = 60.0
_VERSION_NUMBER = re.compile(r"version \d+")


@dataclass(frozen=True, slots=True)
class _Contact:
    mono: float
    wall: datetime


@dataclass(frozen=True, slots=True)
class _Polled:
    """What the polling endpoint said about the flag: its version, or ``None`` when it has no such flag."""

    version: int | None


class LaunchDarklySource:
    """A :class:`breakglass.seams.FlagSource` on LaunchDarkly (or the Relay Proxy).

    Args:
        settings: The ``launchdarkly`` settings section.
        flag_key: The flag's key in LaunchDarkly.
        clock: The clocks to stamp confirmations with.
        verify_interval: Seconds between second-opinion polls (``None``: from
            the settings; 0: off, and a ``VALID`` status counts as a
            confirmation, with the 300 s stall caveat).
    """

    def __init__(
        self,
        settings: LaunchDarklySettings,
        flag_key: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        verify_interval: float | None = None,
    ) -> None:
        self._settings = settings
        self._flag_key = flag_key
        self._clock = clock
        self._verify_interval = (
            settings.verify_interval if verify_interval is None else verify_interval
        )
        self._secret = settings.sdk_key.get_secret_value()
        self._context = service_context(settings)
        self._poll_url = settings.base_uri + POLL_PATH
        # One lock around "evaluate, then report": two threads report (the SDK's stream thread
        # and the verifier), and an older evaluation must never be reported after a newer one.
        self._lock = threading.RLock()
        self._current = Observation.unread(SOURCE_NAME)
        self._listener: Callable[[Observation], None] | None = None
        # Our own store instance: the verifier reads the flag's version from it (public FeatureStore API).
        self._store = InMemoryFeatureStore()  # type: ignore[no-untyped-call]
        self._client: LDClient | None = None
        self._session: requests.Session | None = None
        self._stop = threading.Event()
        step = self._verify_interval if self._verify_interval > 0 else _TRUST_STATUS_TICK
        self._loop = ReadingLoop(
            "breakglass-launchdarkly-verify",
            self._check,
            interval=step,
            crashed=self._crashed,
            stall_after=stall_allowance(
                step, max(settings.connect_timeout, settings.request_timeout)
            ),
            not_before=lambda: self._pause_until,
            stop=self._stop,
        )
        self._denied = False
        self._stream_problem: str | None = None
        self._verify_problem: str | None = None
        self._logged_problem: str | None = "not started"
        self._etag: str | None = None
        self._polled: _Polled | None = None
        self._pause_until = 0.0
        self._started_at = 0.0

    @property
    def name(self) -> str:
        """Always ``"launchdarkly"``."""
        return SOURCE_NAME

    @property
    def verify_interval(self) -> float:
        """Seconds between second-opinion polls (0: off)."""
        return self._verify_interval

    @property
    def confirm_interval(self) -> float:
        """Seconds between two confirmations of a healthy stream (the verifier's period)."""
        return self._verify_interval if self._verify_interval > 0 else _TRUST_STATUS_TICK

    def __repr__(self) -> str:
        return (
            f"LaunchDarklySource(stream_uri={safe_url(self._settings.stream_uri)!r}, "
            f"base_uri={safe_url(self._settings.base_uri)!r}, flag_key={self._flag_key!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start the SDK (it connects on its own thread) and the verifier; returns at once."""
        self._listener = listener
        self._started_at = time.monotonic()
        settings = self._settings
        config = Config(
            settings.sdk_key.get_secret_value(),
            base_uri=settings.base_uri,
            stream_uri=settings.stream_uri,
            events_uri=settings.events_uri,
            stream=settings.stream,
            poll_interval=settings.poll_interval,
            initial_reconnect_delay=settings.initial_reconnect_delay,
            send_events=settings.send_events,
            diagnostic_opt_out=True,
            feature_store=self._store,
            wrapper_name=WRAPPER_NAME,
            http=HTTPConfig(
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.request_timeout,
                http_proxy=settings.http_proxy,
            ),
        )
        # start_wait=0: the constructor starts the SDK's thread and returns at once; the SDK
        # logs that it is not initialised yet, which is true and harmless.
        client = LDClient(config, start_wait=0)
        self._client = client
        client.data_source_status_provider.add_listener(self._on_status)
        client.flag_tracker.add_listener(self._on_flag_change)
        # The stream may have become VALID before the listener was in place.
        self._on_status(client.data_source_status_provider.status)
        self._session = new_session(settings.sdk_key, settings.base_uri, settings.http_proxy)
        self._loop.start(listener)

    def current(self) -> Observation:
        """The latest observation."""
        return self._current

    def readers(self) -> Sequence[ReadingLoop]:
        """The verifier (the SDK's stream is watched through the verifier's second opinion)."""
        return (self._loop,)

    def close(self) -> None:
        """Stop the SDK and the verifier; returns within about a second."""
        self._stop.set()
        deadline = time.monotonic() + _CLOSE_WAIT
        client = self._client
        closer: threading.Thread | None = None
        if client is not None:
            client.data_source_status_provider.remove_listener(self._on_status)
            client.flag_tracker.remove_listener(self._on_flag_change)
            # close() stops the stream thread (it interrupts a blocked read); never let it hold us up.
            closer = threading.Thread(
                target=_close_quietly, args=(client,), name="breakglass-launchdarkly-close"
            )
            closer.daemon = True
            closer.start()
        self._loop.close(timeout=max(0.0, deadline - time.monotonic()))
        if closer is not None:
            closer.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._session is not None:
            self._session.close()
        self._listener = None

    # ------------------------------------------------------------------ SDK callbacks (SDK threads)

    def _on_status(self, status: DataSourceStatus) -> None:
        """Data source status listener; never raises (it runs inside the SDK)."""
        try:
            if self._stop.is_set():
                return
            with self._lock:
                if status.state == DataSourceState.VALID:
                    # A full data set (`put`) just arrived on a working stream (or a poll succeeded).
                    self._stream_problem = None
                    self._confirm_now()
                    return
                problem = self._describe_status(status)
                if problem is None:
                    return  # INITIALIZING without an error yet: nothing to say
                self._stream_problem = problem
                if _denied(status):
                    self._report(self._current.unreadable(self._problems() or problem))
                else:
                    self._report(self._current.failed(self._problems() or problem))
        except Exception:
            logger.exception("launchdarkly: status listener failed")

    def _on_flag_change(self, change: FlagChange) -> None:
        """Flag tracker listener: the flag's data just arrived from the vendor (``patch``, ``delete``, ``put``)."""
        try:
            if change.key != self._flag_key or self._stop.is_set():
                return
            client = self._client
            # A full `put` announces its changes just before the status turns VALID, which
            # confirms anyway; only patches on a working stream are worth a confirmation here.
            if (
                client is None
                or client.data_source_status_provider.status.state != DataSourceState.VALID
            ):
                return
            with self._lock:
                self._confirm_now()
        except Exception:
            logger.exception("launchdarkly: flag listener failed")

    # ------------------------------------------------------------------ the verifier (own thread)

    def _check(self) -> None:
        # One step of the reading loop; the observation is reported inside, under the lock.
        if self._verify_interval > 0:
            self.verify_once()
        else:
            self._trust_status()

    def _crashed(self, problem: str) -> None:
        with self._lock:
            self._report(self._current.unreadable(problem))

    def verify_once(self) -> Observation:
        """Ask the polling endpoint once and confirm the SDK's value if it is current; returns the observation."""
        contact = _Contact(self._clock.monotonic(), self._clock.now())
        polled, problem = self._poll()
        if self._stop.is_set():
            return self._current
        with self._lock:
            if polled is None:
                self._verify_problem = problem
                if self._denied:
                    # LaunchDarkly answered "you may not read this": not a blip, halt at once.
                    return self._report(self._current.unreadable(self._problems() or "denied"))
                return self._report(self._current.failed(self._problems() or "unknown"))
            client = self._client
            stored = self._store.get(FEATURES, self._flag_key, lambda item: item)
            stored_version = getattr(stored, "version", None) if stored is not None else None
            if not self._store.initialized:
                if self._starting():
                    return self._current  # the stream is still connecting: nothing to say yet
                self._verify_problem = "the SDK has received no data from the stream yet"
            elif polled.version is None and stored_version is None:
                # Both the vendor and the stream say there is no such flag.
                self._verify_problem = None
                obs = Observation(SOURCE_NAME, NoValue.FLAG_MISSING, contact.mono, contact.wall)
                return self._report(self._with_problems(obs))
            elif polled.version is None:
                self._verify_problem = (
                    "LaunchDarkly's polling endpoint has no such flag, but the stream still has it"
                )
            elif not isinstance(stored_version, int) or polled.version > stored_version:
                self._verify_problem = (
                    f"the stream is behind LaunchDarkly (it delivered version {stored_version}, "
                    f"the polling endpoint has version {polled.version}); not confirming until it "
                    "catches up"
                )
            else:
                # The SDK holds what the vendor had when this request left: confirmed then.
                self._verify_problem = None
                evaluated = self._evaluate(client, contact)
                return self._report(evaluated) if evaluated is not None else self._current
            return self._report(self._current.failed(self._problems() or "unknown"))

    def _poll(self) -> tuple[_Polled | None, str | None]:
        session = self._session
        self._denied = False
        if session is None:
            return None, "not started"
        settings = self._settings
        headers = {"If-None-Match": self._etag} if self._etag and self._polled else {}
        try:
            response = session.get(
                self._poll_url,
                headers=headers,
                timeout=(settings.connect_timeout, settings.request_timeout),
            )
        except requests.RequestException as exc:
            return None, describe_exception(exc, self._poll_url)
        where = safe_url(self._poll_url)
        status = response.status_code
        if status == 304 and self._polled is not None:
            return self._polled, None
        if status in (401, 403):
            self._denied = True
            return None, (
                f"HTTP {status} from {where}: LaunchDarkly rejected {SDK_KEY_SETTING} "
                "(use the server-side SDK key of the environment)"
            )
        if status == 404:
            return None, f"HTTP 404 from {where}: check {PREFIX}BASE_URI"
        if status == 429:
            pause = min(_MAX_RATE_LIMIT_PAUSE, rate_limit_wait(response, 1.0))
            self._pause_until = time.monotonic() + pause
            return (
                None,
                f"HTTP 429 from {where}: rate limited; raise {PREFIX}VERIFY_INTERVAL or read through the Relay Proxy",
            )
        if status != 200:
            return None, f"HTTP {status} from {where}"
        polled = _parse_poll(json_or_none(response), self._flag_key)
        if polled is None:
            return None, f"malformed answer from {where}"
        self._polled = polled
        self._etag = response.headers.get("ETag")
        return polled, None

    def _starting(self) -> bool:
        """Whether the stream may still be connecting for the first time (no error, within the connect timeout)."""
        client = self._client
        if client is None:
            return True
        status = client.data_source_status_provider.status
        return (
            status.state == DataSourceState.INITIALIZING
            and status.error is None
            and time.monotonic() - self._started_at < self._settings.connect_timeout
        )

    def _trust_status(self) -> None:
        # Second opinion off: a VALID status counts as a confirmation (stalls go unseen up to 300 s).
        client = self._client
        if client is None or self._stop.is_set():
            return
        if client.data_source_status_provider.status.state == DataSourceState.VALID:
            with self._lock:
                self._confirm_now()

    # ------------------------------------------------------------------ evaluation and reporting (lock held)

    def _confirm_now(self) -> None:
        obs = self._evaluate(self._client, _Contact(self._clock.monotonic(), self._clock.now()))
        if obs is not None:
            self._report(obs)

    def _evaluate(self, client: LDClient | None, contact: _Contact) -> Observation | None:
        """The SDK's value as an observation confirmed at ``contact``; ``None`` when the SDK has no data yet."""
        if client is None:
            return None
        detail = client.variation_detail(self._flag_key, self._context, None)
        reason: dict[str, Any] = detail.reason or {}
        if reason.get("kind") == "ERROR":
            error_kind = reason.get("errorKind")
            if error_kind == "FLAG_NOT_FOUND":
                obs = Observation(SOURCE_NAME, NoValue.FLAG_MISSING, contact.mono, contact.wall)
                return self._with_problems(obs)
            if error_kind == "CLIENT_NOT_READY":
                return None
            # MALFORMED_FLAG, EXCEPTION, ...: the value cannot be told at all.
            return self._current.unreadable(
                f"LaunchDarkly could not evaluate the flag: {error_kind}"
            )
        # The raw value: a non-boolean (or None, when the flag has no off variation) is a wrong type.
        obs = Observation(SOURCE_NAME, detail.value, contact.mono, contact.wall)
        return self._with_problems(obs)

    def _problems(self) -> str | None:
        problems = [p for p in (self._stream_problem, self._verify_problem) if p]
        return "; ".join(problems) if problems else None

    def _with_problems(self, obs: Observation) -> Observation:
        # A confirmation still carries what is wrong elsewhere (e.g. the stream is down but the
        # polling endpoint agrees), so a later halt explains itself.
        problems = self._problems()
        return obs.failed(problems) if problems else obs

    def _report(self, obs: Observation) -> Observation:
        current = self._current
        if (
            obs.confirmed_at is not None
            and current.confirmed_at is not None
            and obs.confirmed_at < current.confirmed_at
            and type(obs.value) is type(current.value)
            and obs.value == current.value
        ):
            # The same value, confirmed earlier than we already know: keep the later confirmation.
            obs = Observation(
                obs.source, obs.value, current.confirmed_at, current.confirmed_wall, obs.error
            )
        self._current = obs
        self._log_health(obs.error)
        listener = self._listener
        if listener is not None and not self._stop.is_set():
            try:
                listener(obs)
            except Exception:
                logger.exception("listener failed on a launchdarkly observation")
        return obs

    def _log_health(self, problem: str | None) -> None:
        # One line per change of health, never one per check.
        key = _problem_key(problem)
        if key == _problem_key(self._logged_problem):
            return
        self._logged_problem = problem
        if problem is None:
            logger.info(
                "launchdarkly: reading %r from %s",
                self._flag_key,
                safe_url(self._settings.stream_uri),
            )
        else:
            logger.warning("launchdarkly: %s", problem)

    def _describe_status(self, status: DataSourceStatus) -> str | None:
        where = safe_url(self._settings.stream_uri if self._settings.stream else self._poll_url)
        error = status.error
        text: str | None = None
        if error is not None:
            if error.kind == DataSourceErrorKind.ERROR_RESPONSE:
                code = error.status_code
                if code in (401, 403):
                    text = (
                        f"HTTP {code} from {where}: LaunchDarkly rejected {SDK_KEY_SETTING} "
                        "(use the server-side SDK key of the environment); the SDK retries only "
                        "every few minutes"
                    )
                elif code == 404:
                    text = f"HTTP 404 from {where}: check {PREFIX}STREAM_URI and {PREFIX}BASE_URI"
                else:
                    text = f"HTTP {code} from {where}"
            elif error.kind == DataSourceErrorKind.INVALID_DATA:
                text = f"malformed data from {where}"
            elif error.kind == DataSourceErrorKind.STORE_ERROR:
                text = "the SDK's flag store failed"
            else:
                text = f"the connection to {where} failed or was closed"
        if status.state == DataSourceState.OFF:
            text = text or "the LaunchDarkly SDK's data source is off"
        elif status.state == DataSourceState.INTERRUPTED:
            text = text or f"the connection to {where} is interrupted"
        return scrub(text, (self._secret,)) if text else None


def _denied(status: DataSourceStatus) -> bool:
    """Whether LaunchDarkly refused the SDK key (401/403): a definite answer, not an outage."""
    error = status.error
    return (
        error is not None
        and error.kind == DataSourceErrorKind.ERROR_RESPONSE
        and error.status_code in (401, 403)
    )


def _parse_poll(body: Any, flag_key: str) -> _Polled | None:
    """The flag's version from a ``/sdk/latest-all`` body; ``None`` when the body is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("flags"), dict):
        return None
    flag = body["flags"].get(flag_key)
    if flag is None:
        return _Polled(None)
    if not isinstance(flag, dict):
        return None
    if flag.get("deleted") is True:
        return _Polled(None)
    version = flag.get("version")
    if type(version) is not int:
        return None
    return _Polled(version)


def _problem_key(problem: str | None) -> str | None:
    # Version numbers change with every flip; the kind of problem is what is worth a line.
    if problem is None:
        return None
    return _VERSION_NUMBER.sub("version N", problem)


def _close_quietly(client: LDClient) -> None:
    try:
        client.close()  # type: ignore[no-untyped-call]
    except Exception:
        logger.debug("launchdarkly: SDK close failed", exc_info=True)
