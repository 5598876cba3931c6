"""Hostile and mistaken config files: one clear line naming the key, never a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from breakglass_killswitch import ConfigError, load_config, parse_config
from breakglass_killswitch.authorisation import load_public_key
from killswitch_tests.support import cli

if TYPE_CHECKING:
    from pathlib import Path

TARGET = '\n[[targets]]\nkind = "deployment"\nnamespace = "inference"\nnames = ["m"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "name: Field required"),
        ('name = "x"', "targets: Field required"),
        ('name = "x"\ntargets = []', "name at least one target"),
        ('name = "Prod EU"' + TARGET, "use lower-case letters"),
        ('name = "x"\nhalt_bound = 0' + TARGET, "halt_bound"),
        ('name = "x"\nhalt_bound = -5' + TARGET, "halt_bound"),
        ('name = "x"\nhalt_bound = inf' + TARGET, "halt_bound"),
        ('name = "x"\nhalt_bound = nan' + TARGET, "halt_bound"),
        ('name = "x"\nhalt_bound = 1e12' + TARGET, "halt_bound"),
        ('name = "x"\nsurprise = 1' + TARGET, "surprise: Extra inputs are not permitted"),
        (
            'name = "x"\n[[targets]]\nkind = "deployment"\nnamespace = "inference"',
            "either names or selector",
        ),
        (
            'name = "x"\n[[targets]]\nkind = "deployment"\nnamespace = "inference"\nnames = ["m"]\nselector = "a=b"',
            "exactly one",
        ),
        (
            'name = "x"\n[[targets]]\nkind = "deployment"\nnamespace = "In Ference"\nnames = ["m"]',
            "not a Kubernetes namespace",
        ),
        (
            'name = "x"\n[[targets]]\nkind = "pod"\nnamespace = "inference"\nnames = ["m"]',
            "targets.0",
        ),
        (
            'name = "x"\n[[targets]]\nkind = "sagemaker-endpoint"\nregion = "eu-west-1"\nnames = ["bad_name!"]',
            "not a SageMaker endpoint name",
        ),
        ('name = "x"\n[resume]\napprovals_required = 0' + TARGET, "approvals_required"),
        ('name = "x"\n[serve]\ntls_cert = "a.pem"' + TARGET, "both tls_cert and tls_key"),
        ('name = "x" = y', "not TOML"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        parse_config(text, source="killswitch.toml")
    line = str(caught.value)
    assert message in line, line
    assert "\n" not in line.strip()
    assert line.startswith("killswitch.toml: ")


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'name = "\xff\xfe"')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


@pytest.mark.parametrize(
    "key", ["", "not base64!", "AAAA", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"]
)
def test_a_bad_control_plane_key_is_a_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match="control_plane_keys"):
        load_public_key(key)


def test_the_cli_says_one_line_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "killswitch.toml"
    config.write_text('name = "x"\nhalt_bound = nan' + TARGET)
    result = cli(config, "status")
    assert result.returncode == 1
    assert result.stderr.startswith("breakglass-killswitch: ")
    assert "Traceback" not in result.stderr
    halted = cli(config, "halt", "--reason", "x")
    assert halted.returncode == 3
    assert "NOT HALTED" in halted.stderr
