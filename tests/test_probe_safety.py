"""The probe protects the production flag by key and by what the provider would write."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from breakglass.errors import ProbeError
from breakglass.local.plugin import PLUGIN as LOCAL
from breakglass.probe import runner
from breakglass.probe.runner import ProbeOptions, admin_target, check_flag_key
from breakglass.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.clock import Clock
    from breakglass.seams import Backend


class _Admin:
    """An admin that, like a provider mapping every key onto one vendor object, ignores the key."""

    target = "vendor:project=1:feature=system-active"


class _MappingPlugin:
    name = "local"

    def create(self, settings: Settings, clock: Clock) -> Backend:
        return replace(LOCAL.create(settings, clock), admin=_Admin())  # type: ignore[arg-type]


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        provider="local", state_dir=tmp_path, local=LocalSettings(path=tmp_path / "l.db")
    )


def test_the_production_key_is_refused(tmp_path: Path) -> None:
    """Probing the configured flag key needs --allow-production-flag."""
    settings = _settings(tmp_path)
    with pytest.raises(ProbeError, match="production flag"):
        check_flag_key(settings, ProbeOptions(flag_key=settings.flag_key))
    check_flag_key(settings, ProbeOptions(flag_key=settings.flag_key, allow_production_flag=True))


def test_a_probe_key_mapped_onto_the_production_object_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A different key that the provider writes to the same vendor object is refused too."""
    monkeypatch.setattr(runner, "load_plugin", lambda name: _MappingPlugin())
    with pytest.raises(ProbeError, match="maps it onto"):
        check_flag_key(_settings(tmp_path), ProbeOptions())


def test_local_targets_differ_by_key(tmp_path: Path) -> None:
    """The local provider's probe flag is a different object from the production flag."""
    settings = _settings(tmp_path)
    production = admin_target(settings)
    probe = admin_target(settings.model_copy(update={"flag_key": "system-active-probe"}))
    assert production is not None
    assert probe is not None
    assert production != probe
    check_flag_key(settings, ProbeOptions())
