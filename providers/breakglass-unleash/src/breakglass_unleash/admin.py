"""Changing the flag through the Unleash Admin API (``breakglass halt`` / ``resume``, the probe).

Unleash records who toggled (the token's name or the user behind a personal
access token) but has no place for a reason on a toggle. The actor and the
reason therefore live in breakglass's own audit (the core records every change
it makes) and in this module's log line; see ``docs/providers/unleash.md``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
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
from breakglass_unleash._http import (
    describe_exception,
    json_or_none,
    new_session,
    request_with_retries,
    server_message,
)
from breakglass_unleash.served import ServedCheck

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from breakglass_unleash.settings import UnleashSettings

logger = logging.getLogger("breakglass.unleash")

TOKEN_SETTING = "BREAKGLASS_UNLEASH__ADMIN_TOKEN"  # noqa: S105 -- the name of a setting


class UnleashAdmin:
    """A :class:`breakglass.seams.FlagAdmin` on ``POST .../environments/{env}/on|off``.

    Args:
        settings: The ``unleash`` settings section; ``admin_token`` must be set.
        flag_key: The flag's name in Unleash.
        clock: Stamps the acknowledgement.
        policy: Retry budget for 5xx, 429, timeouts and refused connections.
        sleep: Waits between retries (tests pass a fake).

    Raises:
        ConfigurationError: ``admin_token`` is not set.
    """

    def __init__(
        self,
        settings: UnleashSettings,
        flag_key: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.admin_token is None:
            raise ConfigurationError(
                f"{TOKEN_SETTING} is needed to change the flag through Unleash"
            )
        self._settings = settings
        self._flag_key = flag_key
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._session = new_session(settings.admin_token)
        self._secret = settings.admin_token.get_secret_value()
        project = quote(settings.project, safe="")
        feature = quote(flag_key, safe="")
        environment = quote(settings.environment, safe="")
        self._feature_env_url = (
            f"{settings.admin_base}/admin/projects/{project}/features/{feature}"
            f"/environments/{environment}"
        )
        self._check = ServedCheck(settings, flag_key)

    @property
    def dashboard_url(self) -> str:
        """The flag's page in the Unleash admin UI."""
        base = safe_url(self._settings.admin_base).removesuffix("/api")
        project = quote(self._settings.project, safe="")
        return f"{base}/projects/{project}/features/{quote(self._flag_key, safe='')}"

    def halt_authority(self) -> str:
        """This process holds management credentials: it could change the flag."""
        return f"this process holds Unleash management credentials ({TOKEN_SETTING})"

    @property
    def target(self) -> str:
        """The vendor-side object this admin changes (compared by the probe to protect production)."""
        settings = self._settings
        return (
            f"unleash:{safe_url(settings.admin_base)}:{settings.project}"
            f":{settings.environment}:{self._flag_key}"
        )

    def __repr__(self) -> str:
        return (
            f"UnleashAdmin(url={safe_url(self._settings.admin_base)!r}, flag_key={self._flag_key!r}, "
            f"project={self._settings.project!r}, environment={self._settings.environment!r})"
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()
        self._check.close()

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the value is the point
        """Turn the flag on or off in the configured environment.

        Returns once Unleash answered 2xx. ``changed`` comes from a read just before
        the write (``True`` when that read failed). Unleash returns no change id.

        Raises:
            AdminAuthError: 401/403 (names the token setting, never the token).
            AdminNotFoundError: 404: no such project, flag or environment.
            AdminRejectedError: Another 4xx (e.g. the flag is archived).
            AdminUnavailableError: 5xx, 429, timeouts or refused connections past the retry budget.
        """
        before = self._read_quietly()
        url = f"{self._feature_env_url}/{'on' if active else 'off'}"
        timeout = self._settings.request_timeout
        outcome = request_with_retries(
            lambda t: self._session.post(url, timeout=(min(1.0, t), t)),
            url,
            self._policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        response = outcome.response
        if response is None:
            raise AdminUnavailableError(
                f"Unleash did not acknowledge {self._what(active)} after "
                f"{counted(outcome.attempts, 'attempt')}: {outcome.error}"
            )
        if not 200 <= response.status_code < 300:
            raise self._error(
                response, f"{self._what(active)} at {safe_url(url)}", outcome.attempts
            )
        acknowledged_at = self._clock.now()
        logger.info(
            "unleash: %s by %s (reason: %s); acknowledged by %s",
            self._what(active),
            actor,
            reason,
            safe_url(self._settings.admin_base),
        )
        # A 2xx moved the switch; what readers get is the SDK's evaluation of the client payload.
        served = self._check.served(active, self._settings.confirm_timeout)
        return Acknowledgement(
            flag_key=self._flag_key,
            active=active,
            acknowledged_at=acknowledged_at,
            change_id=None,
            changed=before is not active,
            served=served.value,
            served_detail=served.detail,
            target=(
                f"Unleash project {self._settings.project!r}, environment "
                f"{self._settings.environment!r}, flag {self._flag_key!r}"
            ),
        )

    def get_active(self) -> bool | None:
        """Whether the flag is on in the environment, per the Admin API; ``None`` when it does not exist.

        Raises:
            AdminError: The Admin API could not answer (see :meth:`set_active`).
        """
        url = self._feature_env_url
        timeout = self._settings.request_timeout
        outcome = request_with_retries(
            lambda t: self._session.get(url, timeout=(min(1.0, t), t)),
            url,
            self._policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        response = outcome.response
        if response is None:
            raise AdminUnavailableError(f"cannot read {safe_url(url)}: {outcome.error}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"reading {safe_url(url)}", outcome.attempts)
        body = json_or_none(response)
        enabled = body.get("enabled") if isinstance(body, dict) else None
        if type(enabled) is not bool:
            raise AdminUnavailableError(f"malformed answer from {safe_url(url)}")
        return enabled

    # ------------------------------------------------------------------ internals

    def _what(self, active: bool) -> str:  # noqa: FBT001
        settings = self._settings
        return (
            f"turning {self._flag_key!r} {'on' if active else 'off'} "
            f"(project {settings.project!r}, environment {settings.environment!r})"
        )

    def _read_quietly(self) -> bool | None:
        # One quick try, no retries: it only tells whether the write changes anything,
        # and must not hold up a halt.
        url = self._feature_env_url
        timeout = min(1.0, self._settings.request_timeout)
        try:
            response = self._session.get(url, timeout=(timeout, timeout))
        except Exception as exc:  # noqa: BLE001 -- best effort
            logger.debug("unleash: pre-read failed: %s", describe_exception(exc, url))
            return None
        body = json_or_none(response) if response.status_code == 200 else None
        enabled = body.get("enabled") if isinstance(body, dict) else None
        return enabled if type(enabled) is bool else None

    def _error(self, response: requests.Response, what: str, attempts: int) -> Exception:
        status = response.status_code
        message = server_message(response, (self._secret,))
        suffix = f": {message}" if message else ""
        if status == 401:
            return AdminAuthError(
                f"HTTP 401 {what}: Unleash rejected {TOKEN_SETTING} (unknown or expired){suffix}"
            )
        if status == 403:
            return AdminAuthError(
                f"HTTP 403 {what}: {TOKEN_SETTING} may not do this (a backend/client token cannot use "
                f"the Admin API; use an admin token or a personal access token){suffix}"
            )
        if status == 404:
            return AdminNotFoundError(
                f"HTTP 404 {what}: check BREAKGLASS_FLAG_KEY, BREAKGLASS_UNLEASH__PROJECT and "
                f"BREAKGLASS_UNLEASH__ENVIRONMENT{suffix}"
            )
        if status == 429 or status >= 500:
            return AdminUnavailableError(
                f"HTTP {status} {what} after {counted(attempts, 'attempt')}{suffix}"
            )
        return AdminRejectedError(f"HTTP {status} {what}{suffix}")
