"""Reading the flag from Flagsmith through the ``flagsmith`` SDK, with freshness the SDK does not give.

The SDK (``flagsmith`` >= 6) evaluates the flag: in local evaluation it holds
the environment document and evaluates in-process; in remote evaluation every
``get_environment_flags()`` asks ``GET /flags/``. Its own refresh loop has two
flaws for a stop button (details in ``docs/providers/flagsmith.md``):

* **No freshness.** A failed refresh is logged and the old document is kept
  forever; nothing tells the caller how old it is.
* **No lifecycle.** Its constructor fetches the document synchronously, and
  its polling thread has no ``close()``.

So the source drives the refresh itself, on its own thread, through the SDK's
own pieces: the SDK's ``requests`` session (its headers, its URL, its retry
adapter) fetches the document, the SDK's mapper turns it into the SDK's
evaluation context, and the SDK evaluates the flag. Each fetch that returns a
document the SDK accepts is a confirmation (``confirmed_at`` = when the request
left: the document was current then, and an answer read late on a busy host
must not count as fresher); any other outcome is a failed contact, and the value
just ages.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import requests
from flagsmith import Flagsmith
from flagsmith.exceptions import FlagsmithAPIError, FlagsmithFeatureDoesNotExistError
from flagsmith.mappers import (
    map_environment_document_to_context,
    map_environment_document_to_environment_updated_at,
)
from urllib3 import Retry

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.observation import NoValue, Observation
from breakglass.reading import ReadingLoop, stall_allowance
from breakglass.retry import safe_url
from breakglass_flagsmith._http import describe_exception, retry_after_seconds
from breakglass_flagsmith.settings import ENVIRONMENT_KEY_SETTING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from breakglass_flagsmith.settings import FlagsmithSettings

logger = logging.getLogger("breakglass.flagsmith")

SOURCE_NAME = "flagsmith"
_MAX_RATE_LIMIT_PAUSE = 10.0
_CLOSE_WAIT = 0.9


class _Failed(Exception):  # noqa: N818 -- a failed contact, not an error of this program
    """A refresh that brought nothing new; the message is secret-free and names what to fix."""


class SourceFlagsmith(Flagsmith):
    """The SDK client, with the document refresh run (and observed) by :class:`FlagsmithSource`.

    The only SDK internals touched are the ones the SDK has no public way to
    reach: ``_initialise_local_evaluation`` (the synchronous first fetch and
    the unjoinable polling thread, replaced by the source's own loop) and the
    ``_evaluation_context`` / ``_environment_updated_at`` setters the SDK's own
    ``update_environment`` uses. The adapter's tests pin this down against the
    installed SDK.
    """

    def _initialise_local_evaluation(self) -> None:
        # Deliberately empty: no network I/O in the constructor and no SDK thread.
        # The source calls fetch_document() on its own schedule instead.
        return

    def update_environment(self) -> None:
        """The SDK's refresh entry point, kept working (errors are logged once, by the source)."""
        try:
            self.fetch_document(float(self.request_timeout_seconds or 10))
        except _Failed as exc:
            logger.debug("flagsmith: refresh failed: %s", exc)

    def fetch_document(self, timeout: float) -> None:
        """Fetch the environment document and install it, as the SDK's ``update_environment`` does.

        Raises:
            _Failed: The fetch or the document failed; the old document stays, unconfirmed.
        """
        url = self.environment_url
        try:
            response = self.session.get(url, timeout=(min(1.0, timeout), timeout))
        except requests.RequestException as exc:
            raise _Failed(describe_exception(exc, url)) from None
        if response.status_code != 200:
            raise _HttpFailed(response.status_code, url, response)
        try:
            document = response.json()
        except ValueError:
            raise _Failed(f"malformed JSON from {safe_url(url)}") from None
        try:
            context = map_environment_document_to_context(document)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise _Failed(f"not an environment document from {safe_url(url)}") from None
        self._evaluation_context = context
        try:
            self._environment_updated_at = map_environment_document_to_environment_updated_at(
                document
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            # Only the SDK's real-time mode reads it; the flags are installed all the same.
            self._environment_updated_at = None


class _HttpFailed(_Failed):
    def __init__(self, status: int, url: str, response: requests.Response | None) -> None:
        super().__init__(status_problem(status, url))
        self.status = status
        self.response = response


def status_problem(status: int, url: str) -> str:
    """A secret-free sentence for an SDK endpoint's HTTP error, naming the setting to fix."""
    where = safe_url(url)
    if status in (401, 403):
        return (
            f"HTTP {status} from {where}: Flagsmith rejected {ENVIRONMENT_KEY_SETTING} "
            "(local evaluation needs the environment's server-side key, ser.…)"
        )
    if status == 404:
        return (
            f"HTTP 404 from {where}: check BREAKGLASS_FLAGSMITH__API_URL "
            "(the SDK API base, ending in /api/v1/)"
        )
    if status == 429:
        return (
            f"HTTP 429 from {where}: rate limited; raise BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL "
            "or read through a Flagsmith Edge Proxy"
        )
    return f"HTTP {status} from {where}"


class FlagsmithSource:
    """A :class:`breakglass.seams.FlagSource` on Flagsmith (API, Edge API or Edge Proxy).

    Args:
        settings: The ``flagsmith`` settings section.
        flag_key: The flag served; the Flagsmith feature is ``settings.feature_name`` or this.
        clock: The clocks to stamp confirmations with.
    """

    def __init__(
        self, settings: FlagsmithSettings, flag_key: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._settings = settings
        self._feature = settings.feature(flag_key)
        self._clock = clock
        self._current = Observation.unread(SOURCE_NAME)
        self._sdk: SourceFlagsmith | None = None
        self._problem: str | None = "not started"
        self._pause_until = 0.0
        self._loop = ReadingLoop(
            "breakglass-flagsmith",
            self.poll_once,
            interval=settings.refresh_interval,
            crashed=self._unreadable,
            stall_after=stall_allowance(settings.refresh_interval, settings.request_timeout),
            not_before=lambda: self._pause_until,
        )

    @property
    def name(self) -> str:
        """Always ``"flagsmith"``."""
        return SOURCE_NAME

    @property
    def sdk(self) -> SourceFlagsmith | None:
        """The SDK client once the source has started (for diagnostics and tests)."""
        return self._sdk

    def __repr__(self) -> str:
        return (
            f"FlagsmithSource(url={safe_url(self._settings.api_url)!r}, "
            f"feature={self._feature!r}, mode={self._settings.mode!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, listener: Callable[[Observation], None]) -> None:
        """Start reading on a daemon thread; returns at once (no network I/O here)."""
        self._loop.start(listener)

    def current(self) -> Observation:
        """The latest observation."""
        return self._current

    def readers(self) -> Sequence[ReadingLoop]:
        """The refresh loop."""
        return (self._loop,)

    def close(self) -> None:
        """Stop reading and release the SDK's connections; returns within about a second.

        A request already in flight to a frozen server cannot be interrupted: it
        ends on the daemon thread within ``request_timeout`` and its result is dropped.
        """
        self._loop.close(timeout=_CLOSE_WAIT)
        sdk = self._sdk
        if sdk is not None:
            # The SDK has no close(); its session holds the keep-alive connections.
            sdk.session.close()

    # ------------------------------------------------------------------ reading

    def poll_once(self) -> Observation:
        """Refresh once (document or flags) and return the new observation."""
        sdk = self._sdk
        if sdk is None:
            sdk = self._sdk = self._build_sdk()
        # Stamped before the request: what it returns was current no earlier than this. When the
        # answer is read (after a descheduled thread, a slow network) would claim more freshness.
        mono, wall = self._clock.monotonic(), self._clock.now()
        try:
            if self._settings.mode == "local":
                sdk.fetch_document(self._settings.request_timeout)
                flags = sdk.get_environment_flags()  # evaluated in-process from the new document
            else:
                flags = self._remote_flags(sdk)
        except _HttpFailed as exc:
            if exc.status in (401, 403):
                # Flagsmith answered "you may not read this": not a blip, halt at once.
                return self._unreadable(str(exc))
            if exc.status == 429 and exc.response is not None:
                pause = min(_MAX_RATE_LIMIT_PAUSE, retry_after_seconds(exc.response, 1.0))
                self._pause_until = time.monotonic() + pause
            return self._failed(str(exc))
        except _Failed as exc:
            return self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 -- whatever the SDK raises is a failed contact, never a crash
            return self._failed(
                f"the Flagsmith SDK could not evaluate the flag: {type(exc).__name__}"
            )
        # The fetch succeeded: the moment it left is the confirmation, whatever the flag says.
        try:
            value: object = flags.get_flag(self._feature).enabled
        except FlagsmithFeatureDoesNotExistError:
            value = NoValue.FLAG_MISSING
        except Exception as exc:  # noqa: BLE001 -- an evaluation error is a failed contact
            return self._failed(
                f"the Flagsmith SDK could not evaluate the flag: {type(exc).__name__}"
            )
        return self._set(Observation(SOURCE_NAME, value, mono, wall), None)

    # ------------------------------------------------------------------ internals

    def _build_sdk(self) -> SourceFlagsmith:
        settings = self._settings
        sdk = SourceFlagsmith(
            environment_key=settings.environment_key.get_secret_value(),
            api_url=settings.api_url,
            enable_local_evaluation=settings.mode == "local",
            environment_refresh_interval_seconds=settings.refresh_interval,
            # requests takes a float although the SDK annotates an int.
            request_timeout_seconds=settings.request_timeout,  # type: ignore[arg-type]
            # Retries inside one refresh would hide a failing server behind several timeouts;
            # the next refresh is the retry.
            retries=Retry(total=0, raise_on_status=False),
            enable_analytics=False,
        )
        # Proxies from the environment would route loopback or private traffic elsewhere.
        sdk.session.trust_env = False
        return sdk

    def _remote_flags(self, sdk: SourceFlagsmith) -> Any:
        url = sdk.environment_flags_url
        try:
            return sdk.get_environment_flags()
        except FlagsmithAPIError as exc:
            cause = exc.__cause__
            if isinstance(cause, requests.HTTPError) and cause.response is not None:
                raise _HttpFailed(cause.response.status_code, url, cause.response) from None
            if isinstance(cause, BaseException):
                raise _Failed(describe_exception(cause, url)) from None
            raise _Failed(f"no valid answer from {safe_url(url)}") from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _Failed(f"malformed flags from {safe_url(url)}") from None

    def _failed(self, problem: str) -> Observation:
        return self._set(self._current.failed(problem), problem)

    def _unreadable(self, problem: str) -> Observation:
        return self._set(self._current.unreadable(problem), problem)

    def _set(self, obs: Observation, problem: str | None) -> Observation:
        self._current = obs
        self._log_health(problem)
        return obs

    def _log_health(self, problem: str | None) -> None:
        # One line when reading starts failing and one when it recovers, never one per
        # refresh: a server answering 500, garbage and truncated bodies in turn is one outage.
        previous, self._problem = self._problem, problem
        if problem == previous:
            return
        if problem is not None and previous is not None and previous != "not started":
            logger.debug("flagsmith: still failing: %s", problem)
            return
        if problem is None:
            logger.info(
                "flagsmith: reading %r from %s (%s evaluation)",
                self._feature,
                safe_url(self._settings.api_url),
                self._settings.mode,
            )
        else:
            logger.warning("flagsmith: %s", problem)
