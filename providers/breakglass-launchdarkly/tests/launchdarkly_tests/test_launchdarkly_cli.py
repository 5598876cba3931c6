"""The real ``breakglass`` command, end to end, against the LaunchDarkly-protocol server on loopback.

Each step runs the installed console script in its own process (so the real
``ldclient`` SDK streams from the server in that process), configured only
through ``BREAKGLASS_*`` environment variables, exactly as an operator would:
status, halt, LaunchDarkly's own REST API, resume, watch, and the audit trail
(pull, export, verify). No output of any step may contain a key or token.
"""

from __future__ import annotations

import json
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
    check_halt_and_resume,
    check_own_records,
    check_watch,
    describe,
    pull_export_verify,
    read_status,
)
from launchdarkly_tests.fake_ld import FakeLaunchDarkly

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.live

FLAG = "system-active"


def _vendor_on(fake: FakeLaunchDarkly) -> bool:
    """The flag's ``on`` in the environment as LaunchDarkly's own REST API reports it."""
    response = requests.get(
        f"{fake.url}/api/v2/flags/{fake.project}/{FLAG}",
        headers={"Authorization": fake.reader_token},
        timeout=5,
    )
    assert response.status_code == 200, response.text[:300]
    return bool(response.json()["environments"][fake.environment]["on"])


@pytest.fixture
def cli(fake: FakeLaunchDarkly, ld_env: Callable[..., None], tmp_path: Path) -> Cli:
    ld_env(fake)  # BREAKGLASS_LAUNCHDARKLY__* into os.environ, as the other live tests configure it
    secrets = [fake.sdk_key, fake.api_token, fake.reader_token]
    return Cli.for_provider(
        tmp_path, "launchdarkly", FLAG, {}, secrets, keep="BREAKGLASS_LAUNCHDARKLY__"
    )


def test_cli_end_to_end_on_launchdarkly(fake: FakeLaunchDarkly, cli: Cli, tmp_path: Path) -> None:
    check_halt_and_resume(cli, FLAG, "launchdarkly", lambda: _vendor_on(fake))
    check_watch(cli, FLAG, "launchdarkly")

    records = pull_export_verify(cli, tmp_path)
    check_own_records(records, FLAG)
    # LaunchDarkly's own audit log, pulled: the comment carries the reason and the actor.
    vendor = [
        r
        for r in records
        if r["provider"] == "launchdarkly"
        and r["flag_key"] == FLAG
        and r["action"] in ("disabled", "enabled")
    ]
    changes = [(r["action"], r["value_after"]) for r in vendor]
    assert changes == [("disabled", False), ("enabled", True)], changes
    assert HALT_REASON in vendor[0]["comment"], vendor[0]["comment"]
    assert ACTOR in vendor[0]["comment"], vendor[0]["comment"]
    assert RESUME_REASON in vendor[1]["comment"], vendor[1]["comment"]


# ---------------------------------------------------------------- confirmed by what readers are served

EXIT_NOT_HALTED = 4
EXIT_NOT_RESUMED = 5
SERVICE = {"contextKind": "service", "values": ["breakglass-system-active"]}


def test_halt_is_confirmed_by_the_served_value(fake: FakeLaunchDarkly, cli: Cli) -> None:
    """A plain halt: exit 0, readers served false, and it says which project/environment/flag."""
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON)
    assert halted.returncode == 0, describe(halted)
    assert "readers are served false" in halted.stdout
    assert "the flag is off; its off variation serves false" in halted.stdout
    assert f"project '{fake.project}', environment '{fake.environment}', flag '{FLAG}'" in (
        halted.stdout
    )


def test_halt_with_an_off_variation_serving_true_is_not_halted(
    fake: FakeLaunchDarkly, cli: Cli
) -> None:
    """One dashboard click (off variation = true) made every halt a no-op that exited 0."""
    fake.set_targeting(FLAG, off_variation=0)
    halted = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON)
    assert halted.returncode == EXIT_NOT_HALTED, describe(halted)
    assert "NOT HALTED" in halted.stderr
    assert "off variation serves true" in halted.stderr
    assert f"/{fake.project}/{fake.environment}/features/{FLAG}" in halted.stderr  # the fallback
    assert fake.flag_on(FLAG) is False  # the switch did move: the switch is not the truth
    as_json = cli("halt", "--actor", ACTOR, "--reason", HALT_REASON, "--json")
    assert as_json.returncode == EXIT_NOT_HALTED, describe(as_json)
    info = json.loads(as_json.stdout)
    assert (info["ok"], info["served"], info["verdict"]) == (False, True, "NOT HALTED")
    assert info["error"]["message"]
    assert any("dashboard" in step for step in info["fallback"])


@pytest.mark.parametrize(
    ("targeting", "words"),
    [
        ({"context_targets": [{**SERVICE, "variation": 1}]}, "individual targeting"),
        (
            {
                "rules": [
                    {
                        "id": "rule-0",
                        "variation": 1,
                        "clauses": [
                            {
                                "contextKind": "service",
                                "attribute": "key",
                                "op": "in",
                                "values": SERVICE["values"],
                                "negate": False,
                            }
                        ],
                        "trackEvents": False,
                    }
                ]
            },
            "rule 0 serves false",
        ),
        ({"prerequisites": [{"key": "gate", "variation": 0}]}, "prerequisite flag 'gate'"),
        ({"fallthrough_variation": 1}, "default rule serves false"),
    ],
)
def test_resume_that_leaves_readers_halted_is_not_resumed(
    fake: FakeLaunchDarkly, cli: Cli, targeting: dict[str, Any], words: str
) -> None:
    """The flag is on, but targeting serves the service false: resume must not exit 0."""
    fake.add_flag("gate", on=False)
    fake.set_on(FLAG, on=False)
    fake.set_targeting(FLAG, **targeting)
    resumed = cli("resume", "--actor", ACTOR, "--reason", RESUME_REASON)
    assert resumed.returncode == EXIT_NOT_RESUMED, describe(resumed)
    assert "NOT RESUMED" in resumed.stderr
    assert words in resumed.stderr
    assert fake.flag_on(FLAG) is True
    code, info = read_status(cli)
    assert (code, info["active"]) == (EXIT_HALTED, False)  # the readers agree with the verdict
