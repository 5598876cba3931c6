"""What readers are served: the flag evaluated by the LaunchDarkly SDK on the data readers receive.

A halt turns the flag's targeting off, but what a reader gets is the SDK's
evaluation: a flag that is off serves its *off variation* (which a dashboard
click can set to ``true``), a prerequisite that is not met serves the off
variation too, and a flag that is on serves what targeting and rules give the
service's context. So after each change the admin fetches the SDK's own data
(``GET {base_uri}/sdk/latest-all`` with the SDK key, what the stream carries)
and lets ``ldclient`` evaluate the flag for the service context, from that
data only (daemon mode: no connection of its own), as every reader will.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
from ldclient import Context, LDClient
from ldclient.config import Config
from ldclient.feature_store import InMemoryFeatureStore
from ldclient.versioned_data_kind import FEATURES, SEGMENTS

from breakglass.retry import safe_url
from breakglass.seams import Served
from breakglass.served import served_once_shown
from breakglass_launchdarkly._http import describe_exception, json_or_none, new_session

if TYPE_CHECKING:
    from breakglass_launchdarkly.settings import LaunchDarklySettings

logger = logging.getLogger("breakglass.launchdarkly")

POLL_PATH = "/sdk/latest-all"
CONTEXT_KIND = "service"


def service_context(settings: LaunchDarklySettings) -> Context:
    """The one context every reader evaluates the flag for."""
    return Context.create(settings.context_key, CONTEXT_KIND)


class ServedCheck:
    """Evaluates the flag as a reader would, from the SDK polling endpoint's data.

    Args:
        settings: The ``launchdarkly`` settings section (its SDK key reads the data).
        flag_key: The flag's key.
    """

    def __init__(
        self,
        settings: LaunchDarklySettings,
        flag_key: str,
    ) -> None:
        self._settings = settings
        self._flag_key = flag_key
        self._url = settings.base_uri + POLL_PATH
        self._session = new_session(settings.sdk_key, settings.base_uri, settings.http_proxy)

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def served(self, min_version: int | None, timeout: float) -> Served:
        """The evaluation once the SDK data holds ``min_version`` of the flag (or ``timeout`` passed).

        When the data never shows that version, what it does hold is what readers
        are served: it is evaluated all the same, with the reason appended.
        """

        def shown(data: dict[Any, dict[str, Any]]) -> str:
            version = _version(data, self._flag_key)
            if min_version is None or (type(version) is int and version >= min_version):
                return ""
            return (
                f"the SDK data has version {version} of the flag, not the changed "
                f"version {min_version}"
            )

        def evaluate(data: dict[Any, dict[str, Any]]) -> Served:
            return self._evaluate(data, _version(data, self._flag_key))

        return served_once_shown(self._fetch, shown, evaluate, timeout)

    def _fetch(self) -> tuple[dict[Any, dict[str, Any]] | None, str]:
        settings = self._settings
        try:
            response = self._session.get(
                self._url, timeout=(settings.connect_timeout, settings.request_timeout)
            )
        except requests.RequestException as exc:
            return None, describe_exception(exc, self._url)
        where = safe_url(self._url)
        if response.status_code != 200:
            return None, f"HTTP {response.status_code} from {where}"
        body = json_or_none(response)
        flags = body.get("flags") if isinstance(body, dict) else None
        segments = body.get("segments", {}) if isinstance(body, dict) else None
        if not isinstance(flags, dict) or not isinstance(segments, dict):
            return None, f"malformed answer from {where}"
        return {FEATURES: flags, SEGMENTS: segments}, ""

    def _evaluate(self, data: dict[Any, dict[str, Any]], version: object) -> Served:
        store = InMemoryFeatureStore()  # type: ignore[no-untyped-call]
        store.init(data)  # type: ignore[no-untyped-call]
        config = Config(
            self._settings.sdk_key.get_secret_value(),
            feature_store=store,
            use_ldd=True,  # evaluate from this store only: no connection, no events
            send_events=False,
            diagnostic_opt_out=True,
        )
        client = LDClient(config=config)
        try:
            detail = client.variation_detail(self._flag_key, service_context(self._settings), None)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        value = detail.value if type(detail.value) is bool else None
        why = _explain(detail.reason or {}, detail.value)
        context = f"{CONTEXT_KIND} context {self._settings.context_key!r}"
        return Served(value, f"LaunchDarkly SDK evaluation for {context}, version {version}: {why}")


def _version(data: dict[Any, dict[str, Any]], flag_key: str) -> object:
    flag = data[FEATURES].get(flag_key)
    return flag.get("version") if isinstance(flag, dict) else None


def _explain(reason: dict[str, Any], value: object) -> str:
    kind = reason.get("kind")
    serves = f"serves {value!r}" if type(value) is not bool else f"serves {str(value).lower()}"
    if kind == "OFF":
        return f"the flag is off; its off variation {serves}"
    if kind == "PREREQUISITE_FAILED":
        return (
            f"prerequisite flag {reason.get('prerequisiteKey')!r} is not met; "
            f"the off variation {serves}"
        )
    if kind == "TARGET_MATCH":
        return f"the flag is on; individual targeting of the context {serves}"
    if kind == "RULE_MATCH":
        return f"the flag is on; rule {reason.get('ruleIndex')} {serves}"
    if kind == "FALLTHROUGH":
        return f"the flag is on; its default rule {serves}"
    if kind == "ERROR":
        return f"the SDK could not evaluate the flag ({reason.get('errorKind')})"
    return f"{kind}: {serves}"
