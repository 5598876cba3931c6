"""Changing the flag through Flagsmith's management API (``breakglass halt`` / ``resume``, the probe).

The environment default of the feature is toggled with
``PATCH {admin}/environments/{environment_api_key}/featurestates/{id}/``
``{"enabled": …}``. The feature's id is looked up once by name
(``GET /projects/{project}/features/?search=…``); the feature state's id comes
from ``GET /environments/{key}/featurestates/?feature={id}``, read just before
each write (it also tells whether the write changes anything).

Environments with feature versioning v2 refuse that PATCH (400). The adapter
then publishes a new version instead
(``POST /environments/{environment_id}/features/{feature_id}/versions/`` with
``publish_immediately``), and returns the version's uuid as the change id.

Flagsmith records who made the change (the user behind a ``Token``; nobody
for an organisation ``Api-Key``) but has no place for a reason; the actor and
the reason therefore go to breakglass's own audit and to this module's log line.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import (
    AdminAuthError,
    AdminError,
    AdminNotFoundError,
    AdminRejectedError,
    AdminUnavailableError,
    ConfigurationError,
)
from breakglass.retry import RetryPolicy, safe_url
from breakglass.seams import Acknowledgement
from breakglass.wording import counted
from breakglass_flagsmith._http import (
    describe_exception,
    json_or_none,
    new_session,
    request_with_retries,
    server_message,
)
from breakglass_flagsmith.served import served
from breakglass_flagsmith.settings import ADMIN_TOKEN_SETTING, SAAS_ADMIN_API_URL

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from breakglass_flagsmith.settings import FlagsmithSettings

logger = logging.getLogger("breakglass.flagsmith")

V2_REFUSAL = "v2 feature versioning"
"""Part of the 400 ``detail`` Flagsmith returns for a v1 write on a v2-versioned environment."""

_MAX_PAGES = 1000


def require(settings: FlagsmithSettings, purpose: str, *names: str) -> None:
    """Raise a :class:`ConfigurationError` naming every setting in ``names`` that is unset."""
    missing = [
        f"BREAKGLASS_FLAGSMITH__{name.upper()}" for name in names if getattr(settings, name) is None
    ]
    if missing:
        raise ConfigurationError(f"{' and '.join(missing)} needed to {purpose}")


@dataclass(frozen=True, slots=True)
class FeatureState:
    """The environment default of the feature, as the management API shows it."""

    id: int
    feature: int
    environment: int | None
    enabled: object
    value: object


class FlagsmithAdmin:
    """A :class:`breakglass.seams.FlagAdmin` on Flagsmith's feature-state endpoints.

    Args:
        settings: The ``flagsmith`` section; ``admin_token``, ``project_id`` and
            ``environment_api_key`` must be set.
        flag_key: The flag; the feature is ``settings.feature_name`` or this.
        clock: Stamps the acknowledgement.
        policy: Retry budget for 5xx, 429, timeouts and refused connections.
        sleep: Waits between retries (tests pass a fake).

    Raises:
        ConfigurationError: A needed setting is missing (the message names it).
    """

    def __init__(
        self,
        settings: FlagsmithSettings,
        flag_key: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        require(
            settings,
            "change the flag through Flagsmith",
            "admin_token",
            "project_id",
            "environment_api_key",
        )
        assert settings.admin_token is not None  # noqa: S101 -- checked by require()
        self._settings = settings
        self._flag_key = flag_key
        self._feature = settings.feature(flag_key)
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._session = new_session(settings.admin_token)
        self._secrets = (settings.admin_token.get_secret_value(),)
        base = settings.admin_base
        env_key = quote(str(settings.environment_api_key), safe="")
        self._features_url = f"{base}projects/{settings.project_id}/features/"
        self._states_url = f"{base}environments/{env_key}/featurestates/"
        self._lock = threading.Lock()
        self._feature_id: int | None = None
        self._v2 = False
        self._last_state: FeatureState | None = None

    @property
    def dashboard_url(self) -> str | None:
        """The feature's page in the Flagsmith dashboard (``None`` without project and environment)."""
        settings = self._settings
        if settings.project_id is None or not settings.environment_api_key:
            return None
        base = safe_url(settings.admin_base).split("/api/", 1)[0]
        if base == SAAS_ADMIN_API_URL.split("/api/", 1)[0]:
            base = "https://app.flagsmith.com"
        environment = quote(settings.environment_api_key, safe="")
        return (
            f"{base}/project/{settings.project_id}/environment/{environment}/features"
            f"?feature={quote(self._feature, safe='')}"
        )

    def halt_authority(self) -> str:
        """This process holds management credentials: it could change the flag."""
        return f"this process holds Flagsmith management credentials ({ADMIN_TOKEN_SETTING})"

    @property
    def target(self) -> str:
        """The vendor-side object this admin changes (compared by the probe to protect production)."""
        base = safe_url(self._settings.admin_base)
        return f"flagsmith:{base}:project={self._settings.project_id}:feature={self._feature}"

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"FlagsmithAdmin(url={safe_url(settings.admin_base)!r}, feature={self._feature!r}, "
            f"project_id={settings.project_id!r}, environment={settings.environment_api_key!r}, "
            f"auth={settings.admin_scheme!r})"
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    # ------------------------------------------------------------------ FlagAdmin

    def set_active(self, active: bool, *, actor: str, reason: str) -> Acknowledgement:  # noqa: FBT001 -- the value is the point
        """Turn the feature's environment default on or off.

        Returns once Flagsmith answered 2xx. ``changed`` comes from a read just
        before the write (``True`` when that read failed).

        Raises:
            AdminAuthError: 401/403 (names the token setting, never the token).
            AdminNotFoundError: No such project, environment or feature.
            AdminRejectedError: Another 4xx (the server's own words included).
            AdminUnavailableError: 5xx, 429, timeouts or refused connections past the retry budget.
        """
        with self._lock:
            state = self._read_quietly()
            known = state is not None
            if state is None:
                # The quick read failed: use what the last write saw, or read with retries.
                state = self._last_state or self._environment_state()
            change_id: str | None = None
            if self._v2:
                change_id = self._publish_version(state, active)
            else:
                try:
                    self._patch(state, active)
                except _NeedsV2:
                    self._v2 = True
                    logger.info(
                        "flagsmith: environment %s uses feature versioning v2; publishing versions",
                        self._settings.environment_api_key,
                    )
                    change_id = self._publish_version(state, active)
            acknowledged_at = self._clock.now()
            self._last_state = replace(state, enabled=active)
        logger.info(
            "flagsmith: %s by %s (reason: %s); acknowledged by %s",
            self._what(active),
            actor,
            reason,
            safe_url(self._settings.admin_base),
        )
        # The 2xx moved the environment default; what readers get is what the SDK evaluates.
        check = served(self._settings, self._flag_key, active, self._settings.confirm_timeout)
        return Acknowledgement(
            flag_key=self._flag_key,
            active=active,
            acknowledged_at=acknowledged_at,
            change_id=change_id,
            changed=state.enabled is not active if known else True,
            served=check.value,
            served_detail=check.detail,
            target=(
                f"Flagsmith project {self._settings.project_id}, environment "
                f"{self._settings.environment_api_key!r}, feature {self._feature!r}"
            ),
        )

    def get_active(self) -> bool | None:
        """The environment default's ``enabled``; ``None`` when the feature does not exist.

        Raises:
            AdminError: The management API could not answer (see :meth:`set_active`).
        """
        with self._lock:
            try:
                state = self._environment_state()
            except _NoSuchFeatureError:
                return None
        if type(state.enabled) is not bool:
            raise AdminUnavailableError(
                f"malformed feature state from {safe_url(self._states_url)}"
            )
        return state.enabled

    # ------------------------------------------------------------------ look-ups

    def _resolve_feature_id(self) -> int:
        if self._feature_id is not None:
            return self._feature_id
        for page in range(1, _MAX_PAGES + 1):
            body = self._get_json(
                self._features_url,
                {"search": self._feature, "page": str(page), "page_size": "100"},
                f"looking up feature {self._feature!r}",
            )
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise AdminUnavailableError(
                    f"malformed feature list from {safe_url(self._features_url)}"
                )
            for item in results:
                if (
                    isinstance(item, dict)
                    and item.get("name") == self._feature
                    and type(item.get("id")) is int
                ):
                    self._feature_id = int(item["id"])
                    return self._feature_id
            if not isinstance(body, dict) or not body.get("next"):
                break
        raise _NoSuchFeatureError(
            f"no feature named {self._feature!r} in Flagsmith project "
            f"{self._settings.project_id}: check BREAKGLASS_FLAGSMITH__FEATURE_NAME "
            "(or BREAKGLASS_FLAG_KEY) and BREAKGLASS_FLAGSMITH__PROJECT_ID"
        )

    def _environment_state(self, *, quick: bool = False) -> FeatureState:
        feature_id = self._resolve_feature_id()
        what = f"reading the state of {self._feature!r}"
        params = {"feature": str(feature_id)}
        body = self._get_json(self._states_url, params, what, quick=quick)
        results = body.get("results") if isinstance(body, dict) else body
        if not isinstance(results, list):
            raise AdminUnavailableError(
                f"malformed feature states from {safe_url(self._states_url)}"
            )
        for item in results:
            if not isinstance(item, dict):
                continue
            # The environment default: no segment override, no identity override.
            if item.get("feature_segment") is not None or item.get("identity") is not None:
                continue
            if item.get("feature") != feature_id or type(item.get("id")) is not int:
                continue
            environment = item.get("environment")
            return FeatureState(
                id=int(item["id"]),
                feature=feature_id,
                environment=environment if type(environment) is int else None,
                enabled=item.get("enabled"),
                value=item.get("feature_state_value"),
            )
        # The feature was deleted (or re-created under a new id) since it was looked up.
        self._feature_id = None
        raise _NoSuchFeatureError(
            f"feature {self._feature!r} has no state in environment "
            f"{self._settings.environment_api_key!r}: check BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY"
        )

    def _read_quietly(self) -> FeatureState | None:
        # One quick try: it tells whether the write changes anything and must not hold up a halt.
        try:
            return self._environment_state(quick=True)
        except AdminError as exc:
            logger.debug("flagsmith: pre-read failed: %s", exc)
            return None

    # ------------------------------------------------------------------ writes

    def _patch(self, state: FeatureState, active: bool) -> None:  # noqa: FBT001
        url = f"{self._states_url}{state.id}/"
        response = self._send("PATCH", url, {"enabled": active}, self._what(active))
        if response.status_code == 404:
            # The feature state was replaced (feature re-created): look it up again, once.
            self._feature_id = None
            fresh = self._environment_state()
            url = f"{self._states_url}{fresh.id}/"
            response = self._send("PATCH", url, {"enabled": active}, self._what(active))
        if response.status_code == 400 and V2_REFUSAL in server_message(response):
            raise _NeedsV2
        if not 200 <= response.status_code < 300:
            raise self._error(response, f"{self._what(active)} at {safe_url(url)}")
        body = json_or_none(response)
        if isinstance(body, dict) and "enabled" in body and body["enabled"] is not active:
            raise AdminUnavailableError(
                f"Flagsmith answered {self._what(active)} with enabled={body['enabled']!r}"
            )

    def _publish_version(self, state: FeatureState, active: bool) -> str | None:  # noqa: FBT001
        if state.environment is None:
            raise AdminUnavailableError(
                f"cannot publish a version: {safe_url(self._states_url)} did not name the environment"
            )
        url = (
            f"{self._settings.admin_base}environments/{state.environment}"
            f"/features/{state.feature}/versions/"
        )
        body = {
            "publish_immediately": True,
            "feature_states_to_update": [
                {
                    "feature_segment": None,
                    "enabled": active,
                    # Keep the value the flag has; only its on/off changes.
                    "feature_state_value": _typed_value(state.value),
                }
            ],
        }
        response = self._send("POST", url, body, self._what(active))
        if not 200 <= response.status_code < 300:
            raise self._error(response, f"{self._what(active)} (v2 version) at {safe_url(url)}")
        answer = json_or_none(response)
        uuid = answer.get("uuid") if isinstance(answer, dict) else None
        return uuid if isinstance(uuid, str) else None

    # ------------------------------------------------------------------ HTTP

    def _send(self, method: str, url: str, body: Any, what: str) -> requests.Response:
        timeout = self._settings.request_timeout
        outcome = request_with_retries(
            lambda t: self._session.request(method, url, json=body, timeout=(min(1.0, t), t)),
            url,
            self._policy,
            timeout=timeout,
            sleep=self._sleep,
        )
        if outcome.response is None:
            raise AdminUnavailableError(
                f"Flagsmith did not acknowledge {what} after {counted(outcome.attempts, 'attempt')}: "
                f"{outcome.error}"
            )
        return outcome.response

    def _get_json(self, url: str, params: dict[str, str], what: str, *, quick: bool = False) -> Any:
        timeout = self._settings.request_timeout
        if quick:
            timeout = min(1.0, timeout)
            try:
                response = self._session.get(url, params=params, timeout=(timeout, timeout))
            except Exception as exc:  # noqa: BLE001 -- best effort; the caller falls back
                raise AdminUnavailableError(describe_exception(exc, url)) from None
        else:
            outcome = request_with_retries(
                lambda t: self._session.get(url, params=params, timeout=(min(1.0, t), t)),
                url,
                self._policy,
                timeout=timeout,
                sleep=self._sleep,
            )
            if outcome.response is None:
                raise AdminUnavailableError(
                    f"{what}: no answer from {safe_url(url)} after "
                    f"{counted(outcome.attempts, 'attempt')}: {outcome.error}"
                )
            response = outcome.response
        if response.status_code != 200:
            raise self._error(response, f"{what} at {safe_url(url)}")
        body = json_or_none(response)
        if body is None:
            raise AdminUnavailableError(f"{what}: malformed JSON from {safe_url(url)}")
        return body

    def _what(self, active: bool) -> str:  # noqa: FBT001
        return (
            f"turning {self._feature!r} {'on' if active else 'off'} "
            f"(environment {self._settings.environment_api_key!r})"
        )

    def _error(self, response: requests.Response, what: str) -> AdminError:
        status = response.status_code
        message = server_message(response, self._secrets)
        suffix = f": {message}" if message else ""
        scheme = self._settings.admin_scheme
        if status == 401:
            return AdminAuthError(
                f"HTTP 401 {what}: Flagsmith rejected {ADMIN_TOKEN_SETTING} "
                f"({scheme} …: unknown, revoked or expired){suffix}"
            )
        if status == 403:
            return AdminAuthError(
                f"HTTP 403 {what}: {ADMIN_TOKEN_SETTING} ({scheme} …) may not do this "
                f"(it needs admin rights on project {self._settings.project_id}){suffix}"
            )
        if status == 404:
            return AdminNotFoundError(
                f"HTTP 404 {what}: check BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY, "
                "BREAKGLASS_FLAGSMITH__PROJECT_ID and BREAKGLASS_FLAGSMITH__ADMIN_API_URL"
                f"{suffix}"
            )
        if status == 429 or status >= 500:
            return AdminUnavailableError(f"HTTP {status} {what}{suffix}")
        return AdminRejectedError(f"HTTP {status} {what}{suffix}")


class _NoSuchFeatureError(AdminNotFoundError):
    """Flagsmith answered, and the feature (or its environment default) is not there."""


class _NeedsV2(Exception):  # noqa: N818 -- a signal, not an error
    """The environment refused a v1 write because it uses feature versioning v2."""


def _typed_value(value: object) -> dict[str, Any]:
    """A feature-state value in the typed form the v2 versions endpoint takes."""
    if type(value) is bool:
        return {"type": "bool", "boolean_value": value}
    if type(value) is int:
        return {"type": "int", "integer_value": value}
    return {"type": "unicode", "string_value": None if value is None else str(value)}
