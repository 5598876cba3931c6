"""The real ``breakglass`` command, end to end, against a real unleash-server on loopback.

Each step runs the installed console script in its own process, configured only
through ``BREAKGLASS_*`` environment variables, exactly as an operator would:
status, halt, the vendor's own API, resume, watch, and the audit trail
(pull, export, verify). No output of any step may contain a token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from breakglass.testing.cli import (
    ACTOR,
    EXIT_HALTED,
    HALT_REASON,
    RESUME_REASON,
    Cli,
    check_own_records,
    check_status,
    check_watch,
    describe,
    pull_export_verify,
    read_status,
)

if TYPE_CHECKING:
    # The harness lives in conftest.py, which test modules cannot import (importlib mode).
    UnleashServer = Any

pytestmark = pytest.mark.live


def _vendor_enabled(server: UnleashServer, flag: str) -> bool:
    """The flag's state in ``development`` as Unleash's own Admin API reports it."""
    response = server.admin("GET", f"/admin/projects/default/features/{flag}")
    assert response.status_code == 200, response.text[:300]
    environments = {env["name"]: env for env in response.json()["environments"]}
    return bool(environments["development"]["enabled"])


def _wait_for_bulk(server: UnleashServer, flag: str, *, enabled: bool, timeout: float) -> None:
    """Wait until the bulk client endpoint (what the Unleash SDK reads) shows ``enabled``.

    The server recomputes that endpoint on a one-second revision tick, so a
    process started right after a resume can still be handed the old state and
    (correctly, fail-closed) read halted.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(
            f"{server.api_url}/client/features",
            headers={"Authorization": server.client_token},
            timeout=5,
        )
        if response.status_code == 200:
            features = {f["name"]: f for f in response.json().get("features", [])}
            if flag in features and features[flag].get("enabled") is enabled:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the bulk endpoint did not show {flag} enabled={enabled}")
        time.sleep(0.1)


@pytest.fixture
def cli(unleash_server: UnleashServer, flag_name: str, tmp_path: Path) -> Cli:
    settings = {
        "BREAKGLASS_UNLEASH__URL": unleash_server.api_url,
        "BREAKGLASS_UNLEASH__CLIENT_TOKEN": unleash_server.client_token,
        "BREAKGLASS_UNLEASH__ADMIN_TOKEN": unleash_server.admin_token,
        "BREAKGLASS_UNLEASH__APP_NAME": "breakglass-cli-tests",
        # Short polls keep each command quick; the defaults are for services.
        "BREAKGLASS_UNLEASH__REFRESH_INTERVAL": "0.05",
        "BREAKGLASS_UNLEASH__SDK_REFRESH_INTERVAL": "0.5",
        "BREAKGLASS_UNLEASH__REQUEST_TIMEOUT": "2",
    }
    tokens = [unleash_server.admin_token, unleash_server.client_token]
    # The random part alone, too: a token cut at its prefix is still a leak.
    tokens += [token.split(".", 1)[1] for token in tokens]
    return Cli.for_provider(tmp_path, "unleash", flag_name, settings, tokens)


def test_cli_end_to_end_on_unleash(
    unleash_server: UnleashServer, flag_name: str, cli: Cli, tmp_path: Path
) -> None:
    unleash_server.create_flag(flag_name, enabled=True)
    _wait_for_bulk(unleash_server, flag_name, enabled=True, timeout=5)

    check_status(cli, flag_name, "unleash", active=True)

    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON)
    assert halted.returncode == 0, describe(halted)
    assert _vendor_enabled(unleash_server, flag_name) is False
    check_status(cli, flag_name, "unleash", active=False)

    # The bulk endpoint trails by a revision tick: let it show the halt first, or the wait below
    # could pass on its stale pre-halt "enabled" while the SDK then fetches the halt.
    _wait_for_bulk(unleash_server, flag_name, enabled=False, timeout=5)
    resumed = cli("resume", "--actor", ACTOR, "--reason", RESUME_REASON)
    assert resumed.returncode == 0, describe(resumed)
    assert _vendor_enabled(unleash_server, flag_name) is True
    _wait_for_bulk(unleash_server, flag_name, enabled=True, timeout=5)
    check_status(cli, flag_name, "unleash", active=True)

    check_watch(cli, flag_name, "unleash")

    records = pull_export_verify(cli, tmp_path)
    check_own_records(records, flag_name)
    # Unleash's own change log, pulled: the disable, then the enable after it.
    vendor = [
        (r["action"], r["value_after"])
        for r in records
        if r["provider"] == "unleash" and r["flag_key"] == flag_name
    ]
    assert ("disabled", False) in vendor, vendor
    assert ("enabled", True) in vendor[vendor.index(("disabled", False)) + 1 :], vendor


# ---------------------------------------------------------------- confirmed by what readers are served

EXIT_NOT_RESUMED = 5


def test_halt_and_resume_are_confirmed_by_the_served_value(
    unleash_server: UnleashServer, flag_name: str, cli: Cli
) -> None:
    """Not a 2xx alone: the SDK's evaluation of the client payload, and what was changed."""
    unleash_server.create_flag(flag_name, enabled=True)
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON, "--json")
    assert halted.returncode == 0, describe(halted)
    info = json.loads(halted.stdout)
    assert (info["ok"], info["served"], info["confirmed"]) == (True, False, True)
    assert "Unleash SDK evaluation" in info["served_detail"]
    assert (
        info["target"]
        == f"Unleash project 'default', environment 'development', flag '{flag_name}'"
    )
    resumed = cli("resume", "--actor", ACTOR, "--reason", RESUME_REASON)
    assert resumed.returncode == 0, describe(resumed)
    assert "readers are served true" in resumed.stdout


def test_resume_whose_strategies_exclude_the_service_is_not_resumed(
    unleash_server: UnleashServer, flag_name: str, cli: Cli
) -> None:
    """The switch is on, but a constraint leaves the service out: resume must not exit 0."""
    unleash_server.create_flag(flag_name, enabled=False)
    unleash_server.exclude_every_app(flag_name)
    resumed = cli("resume", "--actor", ACTOR, "--reason", RESUME_REASON)
    assert resumed.returncode == EXIT_NOT_RESUMED, describe(resumed)
    assert "NOT RESUMED" in resumed.stderr
    assert "its 1 strategy (constraints" in resumed.stderr
    assert _vendor_enabled(unleash_server, flag_name) is True  # the switch is not the truth
    _wait_for_bulk(unleash_server, flag_name, enabled=True, timeout=5)
    code, info = read_status(cli)
    assert (code, info["active"]) == (EXIT_HALTED, False)  # the readers agree with the verdict
