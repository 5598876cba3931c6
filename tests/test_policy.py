"""The policy file: every key checked, errors that name the key and never the value."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from breakglass.errors import ConfigurationError
from breakglass.policy import load_policy, parse_policy

if TYPE_CHECKING:
    from pathlib import Path

SLACK = {"type": "slack", "webhook_url": "https://hooks.slack.example/services/T/B/SECRETVALUE"}


def _group(**changes: object) -> dict[str, object]:
    return {"kind": "on-call", "timeframe": "immediate", "channels": [SLACK], **changes}


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigurationError) as info:
        parse_policy(data)
    return str(info.value)


def test_an_empty_policy_is_valid_and_tells_nobody() -> None:
    assert parse_policy({}).notify.groups == {}


def test_durations_and_channel_ids() -> None:
    policy = parse_policy(
        {
            "notify": {
                "groups": {
                    "gov": _group(
                        kind="governance-lead",
                        timeframe=None,
                        within="1h30m",
                        channels=[SLACK, SLACK],
                    )
                }
            }
        }
    )
    group = policy.notify.groups["gov"]
    assert group.deadline == timedelta(hours=1, minutes=30)
    assert [c.id for c in group.channels] == ["slack", "slack-2"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"notfiy": {}}, "notfiy: unknown key"),
        (
            {"notify": {"groups": {"on-call": _group(chanels=[])}}},
            "notify.groups.on-call.chanels: unknown key",
        ),
        (
            {"notify": {"groups": {"on-call": _group(channels=[{"type": "pagerduty"}])}}},
            "notify.groups.on-call.channels.0.pagerduty.routing_key: Field required",
        ),
        (
            {"notify": {"groups": {"on-call": _group(within="4h")}}},
            'give either timeframe = "immediate" or within',
        ),
        (
            {"notify": {"groups": {"on-call": _group(timeframe=None, within="soon")}}},
            "notify.groups.on-call.within: 'soon' is not a duration",
        ),
        (
            {"notify": {"groups": {"on-call": _group(kind="boss")}}},
            "notify.groups.on-call.kind: Input should be",
        ),
        (
            {"notify": {"groups": {"on-call": _group(escalate_to=["nobody"])}}},
            "escalate_to: no group named 'nobody'",
        ),
        (
            {"notify": {"groups": {"d": {"kind": "deployers", "within": "1h"}}}},
            "needs [notify.deployers.<id>]",
        ),
        ({"notify": {"groups": {"On Call": _group()}}}, "must be lower case"),
        (
            {
                "notify": {
                    "groups": {
                        "m": _group(
                            channels=[
                                {
                                    "type": "email",
                                    "to": ["x@example.org"],
                                    "from": "y@example.org",
                                    "host": "h",
                                    "security": "none",
                                    "username": "u",
                                    "password": "p",
                                }
                            ]
                        )
                    }
                }
            },
            "never sent without TLS",
        ),
        ({"notify": {"ack_secret": "short"}}, "ack_secret must be at least 32 characters"),
        ({"version": 2}, "version: Input should be less than or equal to 1"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], expected: str) -> None:
    assert expected in _error(data)


def test_errors_never_echo_a_secret() -> None:
    message = _error({"notify": {"groups": {"on-call": _group(channels=[{**SLACK, "bogus": 1}])}}})
    assert "SECRETVALUE" not in message


def test_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", "0123456789abcdef0123456789abcdef")
    channel = {"type": "pagerduty", "routing_key": "env:PD_KEY"}
    policy = parse_policy({"notify": {"groups": {"on-call": _group(channels=[channel])}}})
    key = policy.notify.groups["on-call"].channels[0].routing_key  # type: ignore[union-attr]
    assert key.get_secret_value() == "0123456789abcdef0123456789abcdef"
    assert "0123" not in repr(policy)
    monkeypatch.delenv("PD_KEY")
    assert "the environment variable PD_KEY is not set" in _error(
        {"notify": {"groups": {"on-call": _group(channels=[channel])}}}
    )


def test_load_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[notify\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_policy(bad)


def test_the_documented_policy_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/notifications.md's complete policy file parses, with every secret from the environment."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "notifications.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, re.DOTALL) if "[notify]" in b]
    for name in set(re.findall(r'"env:([A-Z_]+)"', block)):
        monkeypatch.setenv(name, f"{name.lower()}-value-" + "x" * 32)
    # Generic webhooks' signing secrets are Standard Webhooks secrets, checked as such.
    for name in set(re.findall(r'secret = "env:([A-Z_]+)"', block)):
        monkeypatch.setenv(name, "whsec_" + "QUJD" * 8)
    policy = parse_policy(tomllib.loads(block)).notify
    assert set(policy.groups) == {
        "on-call",
        "governance-lead",
        "dpo-liaison",
        "senior-management",
        "deployers",
    }
    assert policy.groups["dpo-liaison"].when.personal_data_affected is True
    assert policy.groups["senior-management"].when.business_continuity is True
    assert policy.groups["on-call"].immediate
    assert policy.groups["governance-lead"].deadline == timedelta(hours=1)
    assert list(policy.deployers) == ["acme-bank"]


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        # The URL-safe alphabet: the signer would silently drop '-' and '_' and sign with another key.
        ("whsec_" + "ab-_" * 8, "standard base64"),
        ("whsec_" + "QUJD" * 7 + "Q", "not valid base64"),  # one character too many
        ("whsec_QUJDRA==", "at least 16 bytes"),
    ],
)
def test_a_webhook_secret_the_signer_cannot_use_is_refused_at_load(
    secret: str, expected: str
) -> None:
    channel = {"type": "webhook", "url": "https://hooks.example/x", "secret": secret}
    message = _error({"notify": {"groups": {"on-call": _group(channels=[channel])}}})
    assert "notify.groups.on-call.channels.0.secret" in message or "secret" in message
    assert expected in message
    assert secret not in message


def test_a_standard_webhook_secret_loads_and_signs() -> None:
    from standardwebhooks import Webhook

    secret = "whsec_" + "QUJD" * 8
    channel = {"type": "webhook", "url": "https://hooks.example/x", "secret": secret}
    policy = parse_policy({"notify": {"groups": {"on-call": _group(channels=[channel])}}})
    loaded = policy.notify.groups["on-call"].channels[0].secret  # type: ignore[union-attr]
    Webhook(loaded.get_secret_value())  # the signer accepts what the policy accepted
