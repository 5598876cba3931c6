"""Changing the flag through LaunchDarkly's REST API v2 (``breakglass halt`` / ``resume``, the probe).

The change is a semantic patch, ``turnFlagOn`` / ``turnFlagOff`` in the
configured environment, with a ``comment`` that carries the actor and the
reason: LaunchDarkly shows it in the flag's history and returns it in the audit
log, next to the token that made the change.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import (
    AdminAuthError,
    AdminNotFoundError,
    AdminRejectedError,
    AdminUnavailableError,
    ConfigurationError,
)
from breakglass.retry import RetryPolicy, safe_url
from breakglass.seams import Acknowledgement
from breakglass.wording import counted
from breakglass_launchdarkly._http import (
    describe_exception,
    json_or_none,
    new_session,
    request_with_retries,
    server_message,
)
from breakglass_launchdarkly.served import ServedCheck
from breakglass_launchdarkly.settings import API_TOKEN_SETTING, PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from breakglass_launchdarkly.settings import LaunchDarklySettings

logger = logging.getLogger("breakglass.launchdarkly")

SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
MAX_COMMENT = 1000


def comment_for(actor: str, reason: str) -> str:
    """The comment LaunchDarkly records with the change: the reason, then who asked for it."""
    text = (
        f"{reason.strip() or 'no reason given'} [breakglass; actor: {actor.strip() or 'unknown'}]"
    )
    return text[:MAX_COMMENT]


@dataclass(frozen=True, slots=True)
class _EnvState:
    on: bool
    version: int | None


class LaunchDarklyAdmin:
    """A :class:`breakglass.seams.FlagAdmin` on ``PATCH /api/v2/flags/{project}/{flag}`` (semantic patch).

    Args:
        settings: The ``launchdarkly`` settings section; ``api_token`` must be set.
        flag_key: The flag's key in LaunchDarkly.
        clock: Stamps the acknowledgement.
        policy: Retry budget for 5xx, 429 (``Retry-After`` / ``X-Ratelimit-Reset``), timeouts.
        sleep: Waits between retries (tests pass a fake).

    Raises:
        ConfigurationError: ``api_token`` is not set.
    """

    def __init__(
        self,
        settings: LaunchDarklySettings,
        flag_key: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.api_token is None:
            raise ConfigurationError(
                f"{API_TOKEN_SETTING} is needed to change the flag through LaunchDarkly"
            )
        self._settings = settings
        self._flag_key = flag_key
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._secret = settings.api_token.get_secret_value()
        self._session = new_session(settings.api_token, settings.api_base_url, settings.http_proxy)
        self._url = (
            f"{settings.api_base_url}/api/v2/flags/"
            f"{quote(settings.project_key, safe='')}/{quote(flag_key, safe='')}"
        )
        self._check = ServedCheck(settings, flag_key)

    @property
    def dashboard_url(self) -> str:
        """The flag's page in the LaunchDarkly dashboard (the REST API's ``_site`` link)."""
        settings = self._settings
        return (
            f"{safe_url(settings.api_base_url)}/{quote(settings.project_key, safe='')}/"
            f"{quote(settings.environment_key, safe='')}/features/{quote(self._flag_key, safe='')}"
        )

    def halt_authority(self) -> str:
        """This process holds management credentials: it could change the flag."""
        return f"this process holds LaunchDarkly management credentials ({API_TOKEN_SETTING})"

    @property
    def target(self) -> str:
        """The vendor-side object this admin changes (compared by the probe to protect production)."""
        settings = self._settings
        return (
            f"launchdarkly:{safe_url(settings.api_base_url)}:{settings.project_key}"
            f":{settings.environment_key}:{self._flag_key}"
        )

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"LaunchDarklyAdmin(url={safe_url(settings.api_base_url)!r}, flag_key={self._flag_key!r}, "
            f"project={settings.project_key!r}, environment={settings.environment_key!r})"
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()
        self._check.close()

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the value is the point
        """Turn the flag's targeting on or off in the configured environment.

        Returns once LaunchDarkly answered 2xx with the flag in the new state.
        ``change_id`` is the flag's environment version after the change (the
        version readers receive on the stream); ``changed`` is ``False`` when the
        flag already had this state (LaunchDarkly accepts the patch and changes
        nothing).

        Raises:
            AdminAuthError: 401/403 (names the token setting, never the token).
            AdminNotFoundError: 404: no such project or flag.
            AdminRejectedError: 400, 409 or another 4xx: LaunchDarkly refused the change.
            AdminUnavailableError: 5xx, 429, timeouts or refused connections past the retry budget.
        """
        before = self._read_quietly()
        settings = self._settings
        body = json.dumps(
            {
                "environmentKey": settings.environment_key,
                "comment": comment_for(actor, reason),
                "instructions": [{"kind": "turnFlagOn" if active else "turnFlagOff"}],
            }
        )
        outcome = request_with_retries(
            lambda t: self._session.patch(
                self._url,
                data=body,
                headers={"Content-Type": SEMANTIC_PATCH},
                timeout=(settings.connect_timeout, t),
            ),
            self._url,
            self._policy,
            timeout=settings.request_timeout,
            sleep=self._sleep,
        )
        response = outcome.response
        what = self._what(active)
        if response is None:
            raise AdminUnavailableError(
                f"LaunchDarkly did not acknowledge {what} after {counted(outcome.attempts, 'attempt')}: "
                f"{outcome.error}"
            )
        if not 200 <= response.status_code < 300:
            raise self._error(response, what, outcome.attempts)
        acknowledged_at = self._clock.now()
        after = self._env_state(json_or_none(response))
        if after is None:
            raise AdminUnavailableError(
                f"LaunchDarkly answered {what} with HTTP {response.status_code} but no readable "
                f"flag for environment {settings.environment_key!r}"
            )
        if after.on is not active:
            raise AdminRejectedError(
                f"LaunchDarkly accepted {what} but reports the flag "
                f"{'on' if after.on else 'off'} (an approval workflow or a scheduled change?)"
            )
        changed = before is None or before.on is not active
        if before is not None and before.version is not None and after.version is not None:
            changed = after.version != before.version
        logger.info(
            "launchdarkly: %s by %s (reason: %s); acknowledged by %s, version %s",
            what,
            actor,
            reason,
            safe_url(settings.api_base_url),
            after.version,
        )
        # The switch moved; what readers get is the SDK's evaluation (off variation,
        # prerequisites, targeting), on the data the stream will carry.
        served = self._check.served(after.version, settings.confirm_timeout)
        return Acknowledgement(
            flag_key=self._flag_key,
            active=active,
            acknowledged_at=acknowledged_at,
            change_id=None if after.version is None else str(after.version),
            changed=changed,
            served=served.value,
            served_detail=served.detail,
            target=(
                f"LaunchDarkly project {settings.project_key!r}, environment "
                f"{settings.environment_key!r}, flag {self._flag_key!r}"
            ),
        )

    def get_active(self) -> bool | None:
        """Whether the flag's targeting is on in the environment; ``None`` when the flag does not exist.

        Raises:
            AdminError: The REST API could not answer (see :meth:`set_active`).
        """
        response = self._get(retries=True)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"reading {self._flag_key!r}", 1)
        state = self._env_state(json_or_none(response))
        if state is None:
            raise AdminUnavailableError(f"malformed flag from {safe_url(self._url)}")
        return state.on

    # ------------------------------------------------------------------ internals

    def _get(self, *, retries: bool) -> requests.Response:
        settings = self._settings
        params = {"env": settings.environment_key}
        policy = self._policy if retries else RetryPolicy(attempts=1)
        timeout = settings.request_timeout if retries else min(1.0, settings.request_timeout)
        outcome = request_with_retries(
            lambda t: self._session.get(
                self._url, params=params, timeout=(min(settings.connect_timeout, t), t)
            ),
            self._url,
            policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        if outcome.response is None:
            raise AdminUnavailableError(f"cannot read {safe_url(self._url)}: {outcome.error}")
        return outcome.response

    def _read_quietly(self) -> _EnvState | None:
        # One quick try, no retries: it only tells whether the write changes anything,
        # and must not hold up a halt.
        try:
            response = self._get(retries=False)
        except Exception as exc:  # noqa: BLE001 -- best effort
            logger.debug("launchdarkly: pre-read failed: %s", describe_exception(exc, self._url))
            return None
        if response.status_code != 200:
            return None
        return self._env_state(json_or_none(response))

    def _env_state(self, body: Any) -> _EnvState | None:
        environments = body.get("environments") if isinstance(body, dict) else None
        env = (
            environments.get(self._settings.environment_key)
            if isinstance(environments, dict)
            else None
        )
        if not isinstance(env, dict) or type(env.get("on")) is not bool:
            return None
        version = env.get("version")
        return _EnvState(on=env["on"], version=version if type(version) is int else None)

    def _what(self, active: bool) -> str:  # noqa: FBT001
        settings = self._settings
        return (
            f"turning {self._flag_key!r} {'on' if active else 'off'} "
            f"(project {settings.project_key!r}, environment {settings.environment_key!r})"
        )

    def _error(self, response: requests.Response, what: str, attempts: int) -> Exception:
        status = response.status_code
        message = server_message(response, (self._secret,))
        suffix = f": {message}" if message else ""
        if status == 401:
            return AdminAuthError(
                f"HTTP 401 {what}: LaunchDarkly rejected {API_TOKEN_SETTING} "
                f"(unknown, expired or revoked){suffix}"
            )
        if status == 403:
            return AdminAuthError(
                f"HTTP 403 {what}: {API_TOKEN_SETTING} may not do this (its role needs "
                f"'updateOn' on the flag in this environment){suffix}"
            )
        if status == 404:
            return AdminNotFoundError(
                f"HTTP 404 {what}: check BREAKGLASS_FLAG_KEY and {PREFIX}PROJECT_KEY{suffix}"
            )
        if status == 400:
            return AdminRejectedError(
                f"HTTP 400 {what}: LaunchDarkly refused the request (check "
                f"{PREFIX}ENVIRONMENT_KEY){suffix}"
            )
        if status == 409:
            return AdminRejectedError(
                f"HTTP 409 {what}: a conflicting change is in progress; try again{suffix}"
            )
        if status == 429 or status >= 500:
            return AdminUnavailableError(
                f"HTTP {status} {what} after {counted(attempts, 'attempt')}{suffix}"
            )
        return AdminRejectedError(f"HTTP {status} {what}{suffix}")
