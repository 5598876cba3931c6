"""What readers are served: the flag evaluated by the Unleash SDK on the payload readers receive.

Unleash answers a toggle with 2xx, but a reader's value is the SDK's
evaluation of the client API's payload: the environment switch *and* the
strategies, their constraints, rollouts and segments, for the service's
context. A 2xx also proves nothing when a change request or another
environment is involved. So after each change the admin reads the client API
(``GET {url}/client/features`` with the client token, what the SDK polls)
until it shows the new switch state, and lets ``UnleashClient`` evaluate the
flag from that payload alone (bootstrapped, no polling of its own).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import requests
from UnleashClient.clients.unleash_client import UnleashClient
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from breakglass.retry import safe_url
from breakglass.seams import Served
from breakglass.served import served_once_shown
from breakglass.wording import counted
from breakglass_unleash._http import describe_exception, json_or_none, new_session
from breakglass_unleash.cache import MemoryCache

if TYPE_CHECKING:
    from breakglass_unleash.settings import UnleashSettings

logger = logging.getLogger("breakglass.unleash")


def service_context(settings: UnleashSettings) -> dict[str, Any]:
    """The context every reader evaluates the flag with (the SDK adds ``appName`` and ``environment``)."""
    return {"sessionId": f"breakglass:{settings.app_name}"}


class ServedCheck:
    """Evaluates the flag as a reader would, from the client API's payload.

    Args:
        settings: The ``unleash`` settings section (its client token reads the payload).
        flag_key: The flag's name.
    """

    def __init__(
        self,
        settings: UnleashSettings,
        flag_key: str,
    ) -> None:
        self._settings = settings
        self._flag_key = flag_key
        self._url = f"{settings.url}/client/features"
        self._session = new_session(settings.client_token)

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def served(self, switch: bool, timeout: float) -> Served:  # noqa: FBT001 -- the value is the point
        """The evaluation once the payload shows the environment switch at ``switch`` (or ``timeout`` passed).

        The client API is recomputed on a revision tick, so right after a change it may
        still carry the old state; when it never shows the new one, what it does carry
        is what readers are served.
        """

        def shown(payload: dict[str, Any]) -> str:
            feature = self._feature(payload)
            if feature is None:
                return "the client API has no such flag"
            if feature.get("enabled") is not switch:
                return f"the client API still shows the flag {_on_off(feature.get('enabled'))}"
            return ""

        def evaluate(payload: dict[str, Any]) -> Served | None:
            feature = self._feature(payload)
            return None if feature is None else self._evaluate(payload, feature)

        return served_once_shown(self._fetch, shown, evaluate, timeout)

    def _fetch(self) -> tuple[dict[str, Any] | None, str]:
        settings = self._settings
        try:
            response = self._session.get(
                self._url, timeout=(min(1.0, settings.request_timeout), settings.request_timeout)
            )
        except requests.RequestException as exc:
            return None, describe_exception(exc, self._url)
        where = safe_url(self._url)
        if response.status_code != 200:
            return None, f"HTTP {response.status_code} from {where}"
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("features"), list):
            return None, f"malformed answer from {where}"
        return body, ""

    def _feature(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        for feature in payload["features"]:
            if isinstance(feature, dict) and feature.get("name") == self._flag_key:
                return feature
        return None

    def _evaluate(self, payload: dict[str, Any], feature: dict[str, Any]) -> Served:
        settings = self._settings
        cache = MemoryCache()
        cache.set(FEATURES_URL, json.dumps(payload))
        cache.bootstrapped = True
        sdk = UnleashClient(
            url=settings.url,
            app_name=settings.app_name,
            environment=settings.environment,
            instance_id=f"breakglass-check-{uuid.uuid4().hex[:12]}",
            disable_metrics=True,
            disable_registration=True,
            cache=cache,
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )
        unknown: list[str] = []

        def fallback(name: str, _context: dict[str, Any]) -> bool:
            unknown.append(name)
            return False

        try:
            sdk.initialize_client(fetch_toggles=False)  # the payload above, nothing fetched
            value = sdk.is_enabled(
                self._flag_key, service_context(settings), fallback_function=fallback
            )
        finally:
            sdk.destroy()
        where = f"Unleash SDK evaluation for app {settings.app_name!r}"
        if unknown:
            return Served(None, f"{where}: the SDK does not know the flag")
        served = "true" if value else "false"
        if feature.get("enabled") is not True:
            why = f"the flag is off in the client payload; it serves {served}"
        else:
            count = len(feature.get("strategies") or [])
            why = (
                f"the flag is on and its {counted(count, 'strategy', 'strategies')} (constraints, rollout, "
                f"segments) give the service's context {served}"
            )
        return Served(bool(value), f"{where}: {why}")


def _on_off(enabled: object) -> str:
    return "on" if enabled is True else "off" if enabled is False else "without a switch state"
