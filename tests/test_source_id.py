"""Source identities: stable per source, different per source, never a secret."""

from __future__ import annotations

import hashlib
import socket
from typing import TYPE_CHECKING

from breakglass.local.plugin import PLUGIN as LOCAL
from breakglass.relay.plugin import PLUGIN as RELAY
from breakglass.relay.source import channel_source_id
from breakglass.settings import LocalSettings, Settings
from breakglass.source_id import MAX_LENGTH, secret_digest, source_id

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.testing import ManualClock

SECRET = "sdk-0b6f3c1e-5d2a-4e8f-9a7b-c4d3e2f1a0b9"  # noqa: S105 -- a fake key for the tests


def test_a_secret_enters_only_as_a_short_labelled_digest() -> None:
    sid = source_id("vendor", "https://vendor.test", secret=SECRET)
    assert sid == source_id("vendor", "https://vendor.test", secret=SECRET)
    assert SECRET not in sid
    assert SECRET[4:12] not in sid
    digest = sid.rsplit(":", 1)[1]
    assert digest == secret_digest(SECRET)
    assert len(digest) == 1 + 12
    # Labelled: not the plain SHA-256 of the key that another system may keep or show.
    assert digest[1:] not in hashlib.sha256(SECRET.encode()).hexdigest()
    assert source_id("vendor", "https://vendor.test", secret=SECRET + "x") != sid


def test_a_long_identity_keeps_its_head_and_stays_distinct() -> None:
    deep = "/" + "d" * 300
    one = source_id("local", deep + "/a.db")
    other = source_id("local", deep + "/b.db")
    assert len(one) == MAX_LENGTH
    assert one.startswith("local:/ddd")
    assert one != other
    assert one == source_id("local", deep + "/a.db")
    assert source_id("local", "/bad\nname").isprintable()


def test_local_names_the_host_and_the_resolved_store(tmp_path: Path, clock: ManualClock) -> None:
    def sid(path: Path) -> str | None:
        settings = Settings(state_dir=tmp_path, local=LocalSettings(path=path))
        return LOCAL.create(settings, clock).source_id

    store = tmp_path / "local.db"
    (tmp_path / "link").symlink_to(tmp_path)
    same = sid(store)
    assert same == f"local:{socket.gethostname()}:{store.resolve()}"
    assert sid(tmp_path / "link" / "local.db") == same  # the same file by another name
    assert sid(tmp_path / "other.db") != same


def test_a_worker_names_its_relay_channel_as_the_relay_reports_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    channel = tmp_path / "relay.channel"
    settings = Settings(
        state_dir=tmp_path, provider="relay", sections={"relay": {"path": str(channel)}}
    )
    worker = RELAY.create(settings, clock)
    assert worker.source_id == channel_source_id(channel) == f"relay:{channel.resolve()}"
