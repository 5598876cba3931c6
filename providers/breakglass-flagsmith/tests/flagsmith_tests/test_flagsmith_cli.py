"""The real ``breakglass`` command, end to end, against the Flagsmith-protocol server on loopback.

Each step runs the installed console script in its own process (so the real
``flagsmith`` SDK fetches the environment document in that process),
configured only through ``BREAKGLASS_*`` environment variables, exactly as an
operator would: status, halt, Flagsmith's own management API, resume, watch,
and the audit trail (pull, export, verify). No output of any step may contain
a key or token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from breakglass.testing.cli import (
    ACTOR,
    EXIT_HALTED,
    HALT_REASON,
    Cli,
    check_halt_and_resume,
    check_own_records,
    check_watch,
    describe,
    pull_export_verify,
    read_status,
)
from flagsmith_tests.server import FEATURE, FlagsmithServer
from flagsmith_tests.support import wait_for

pytestmark = pytest.mark.live


def _vendor_enabled(server: FlagsmithServer) -> bool:
    """The feature's environment default as Flagsmith's own management API reports it."""
    response = requests.get(
        f"{server.api_url}environments/{server.client_key}/featurestates/",
        params={"feature": str(server.feature.id)},
        headers={"Authorization": f"Token {server.user_token}"},
        timeout=5,
    )
    assert response.status_code == 200, response.text[:300]
    (state,) = response.json()["results"]
    return bool(state["enabled"])


@pytest.fixture
def cli(fs_server: FlagsmithServer, tmp_path: Path) -> Cli:
    settings = {
        "BREAKGLASS_FLAGSMITH__API_URL": fs_server.api_url,
        "BREAKGLASS_FLAGSMITH__ENVIRONMENT_KEY": fs_server.server_key,
        "BREAKGLASS_FLAGSMITH__ADMIN_TOKEN": f"Api-Key {fs_server.master_key}",
        "BREAKGLASS_FLAGSMITH__PROJECT_ID": str(fs_server.project["id"]),
        "BREAKGLASS_FLAGSMITH__ENVIRONMENT_API_KEY": fs_server.client_key,
        # A short poll keeps each command quick; the default is for services.
        "BREAKGLASS_FLAGSMITH__REFRESH_INTERVAL": "0.05",
        "BREAKGLASS_FLAGSMITH__REQUEST_TIMEOUT": "2",
    }
    # The client-side key is public by design (browsers hold it); these three are secrets.
    secrets = [fs_server.server_key, fs_server.master_key, fs_server.user_token]
    return Cli.for_provider(tmp_path, "flagsmith", FEATURE, settings, secrets)


def _toggles_visible(server: FlagsmithServer) -> bool:
    """Both of this test's feature-state changes are in the audit log (it is written asynchronously)."""
    changes = [
        e
        for e in server.visible_audit()
        if e.detail["related_object_type"] == "FEATURE_STATE"
        and e.detail["related_object_id"] == server.feature.state_id
    ]
    return len(changes) >= 2


def test_cli_end_to_end_on_flagsmith(fs_server: FlagsmithServer, cli: Cli, tmp_path: Path) -> None:
    check_halt_and_resume(cli, FEATURE, "flagsmith", lambda: _vendor_enabled(fs_server))
    check_watch(cli, FEATURE, "flagsmith")

    assert wait_for(lambda: _toggles_visible(fs_server), 5) is not None
    records = pull_export_verify(cli, tmp_path)
    check_own_records(records, FEATURE)
    # Flagsmith's own audit log, pulled: the disable, then the enable.
    changes = [
        (r["action"], r["value_before"], r["value_after"])
        for r in records
        if r["provider"] == "flagsmith"
        and r["flag_key"] == FEATURE
        and r["action"] in ("disabled", "enabled")
    ]
    assert changes == [("disabled", True, False), ("enabled", False, True)], changes


# ---------------------------------------------------------------- confirmed by what readers are served

EXIT_NOT_HALTED = 4


def _overrides_serving_true(doc: dict[str, Any]) -> None:
    """A segment matching every identity and an identity override, both serving the feature on."""
    (state,) = [s for s in doc["feature_states"] if s["feature"]["name"] == FEATURE]
    on = {**state, "enabled": True, "django_id": state["django_id"] + 1000}
    doc["project"]["segments"] = [
        {
            "id": 901,
            "name": "everyone",
            "rules": [
                {
                    "type": "ALL",
                    "rules": [
                        {
                            "type": "ANY",
                            "rules": [],
                            "conditions": [
                                {"operator": "PERCENTAGE_SPLIT", "property_": None, "value": "100"}
                            ],
                        }
                    ],
                    "conditions": [],
                }
            ],
            "feature_states": [{**on, "feature_segment": {"priority": 0}}],
        }
    ]
    doc["identity_overrides"] = [
        {
            "identifier": "someone",
            "identity_uuid": "0b6e7b5c-8e7e-4a5c-9c53-5a7d3b1f0e01",
            "created_date": "2026-01-01T00:00:00+00:00",
            "environment_api_key": doc["api_key"],
            "identity_features": [on],
            "identity_traits": [],
        }
    ]
    doc["use_identity_overrides_in_local_eval"] = True


def test_halt_is_confirmed_with_overrides_serving_true(
    fs_server: FlagsmithServer, cli: Cli
) -> None:
    """Segment and identity overrides do not reach the service (it reads no identity): halted."""
    fs_server.document_hook = _overrides_serving_true
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON, "--json")
    assert halted.returncode == 0, describe(halted)
    info = json.loads(halted.stdout)
    assert (info["ok"], info["served"]) == (True, False), info
    assert "segment and identity overrides do not apply" in info["served_detail"]
    assert info["target"].startswith(f"Flagsmith project {fs_server.project['id']}")
    code, status = read_status(cli)
    assert (code, status["active"]) == (EXIT_HALTED, False)


def test_halt_acknowledged_but_still_served_true_is_not_halted(
    fs_server: FlagsmithServer, cli: Cli
) -> None:
    """A 2xx whose change never reaches readers (here the SDK document keeps the feature on)."""

    def stuck_on(doc: dict[str, Any]) -> None:
        for state in doc["feature_states"]:
            state["enabled"] = True

    fs_server.document_hook = stuck_on
    cli.env["BREAKGLASS_FLAGSMITH__CONFIRM_TIMEOUT"] = "1"
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON)
    assert halted.returncode == EXIT_NOT_HALTED, describe(halted)
    assert "NOT HALTED" in halted.stderr
    assert "still enabled=true" in halted.stderr
    assert "fallback: turn the flag off by hand in flagsmith's dashboard" in halted.stderr
    assert _vendor_enabled(fs_server) is False  # the management API says off: not the truth
