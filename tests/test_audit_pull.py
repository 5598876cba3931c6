"""Pulling change logs into the audit store: cursors, malformed entries, rate limits, SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.audit.pull import pull_history
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.audit.verify import verify_lines
from breakglass.audit_record import Action
from breakglass.errors import AuditSourceError
from breakglass.local import LocalAdmin, LocalAudit, LocalStore
from breakglass.seams import AuditPage
from breakglass.testing.audit import EPOCH, VENDORS, SampleVendor, unleash_event
from tests.audit_support import make_record, reset_postgres

# The store fixtures (SQLite, and a real PostgreSQL) live there.
pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from breakglass.audit.store import AuditStore

KEY = "system-active"


def _pull(store: AuditStore, source: Any, provider: str, **options: Any) -> Any:
    return pull_history(store, source, provider=provider, flag_key=KEY, **options)


def test_a_halt_and_a_resume_through_the_local_provider_are_pulled(
    store: AuditStore, tmp_path: Path
) -> None:
    local = LocalStore(tmp_path / "local.db")
    admin = LocalAdmin(local, KEY)
    admin.set_active(True, actor="alice", reason="go live")
    admin.set_active(False, actor="bob", reason="incident 4711")
    admin.set_active(True, actor="carol", reason="fixed")
    report = _pull(store, LocalAudit(local, KEY), "local")
    sid = local.store_id()
    assert (report.stored, report.malformed, report.cursor_after) == (3, 0, f"{sid}-3")
    assert report.clean
    halt = next(r for r in store.iter_rows(AuditQuery()) if r.id == f"local:{sid}-2")
    assert (halt.action, halt.actor_id, halt.comment) == ("disabled", "bob", "incident 4711")
    assert (halt.value_before, halt.value_after) == (True, False)
    again = _pull(store, LocalAudit(local, KEY), "local")
    assert (again.stored, again.fetched, again.pages) == (0, 0, 0)
    admin.set_active(False, actor="dave", reason="again")
    third = _pull(store, LocalAudit(local, KEY), "local")
    assert (third.stored, third.cursor_before, third.cursor_after) == (1, f"{sid}-3", f"{sid}-4")


@pytest.mark.parametrize("vendor", VENDORS)
def test_re_pulling_an_unchanged_history_costs_one_request(store: AuditStore, vendor: str) -> None:
    source = SampleVendor.generate(vendor, 250, page_size=100)
    first = _pull(store, source, vendor)
    assert (first.stored, first.pages, source.requests) == (250, 3, 3)
    source.requests = 0
    again = _pull(store, source, vendor)
    assert (again.stored, again.fetched, source.requests) == (0, 0, 1)
    source.entries.append(SampleVendor.generate(vendor, 1, start=251).entries[0])
    source.requests = 0
    new = _pull(store, source, vendor)
    assert (new.stored, source.requests) == (1, 1)
    assert store.count(AuditQuery(providers=(vendor,))) == 251


def test_malformed_entries_are_counted_reported_and_kept_as_problems(store: AuditStore) -> None:
    source = SampleVendor.generate("launchdarkly", 10, page_size=4)
    del source.entries[2]["date"]
    source.entries[6]["member"] = "not an object"
    report = _pull(store, source, "launchdarkly")
    assert (report.fetched, report.stored, report.malformed) == (8, 8, 2)
    assert not report.clean
    assert len(report.problems) == 2
    assert "entry #3" in report.problems[0]
    assert "date" in report.problems[0]
    stored = store.problems("launchdarkly")
    assert [p.detail for p in stored] == report.problems
    assert store.get_cursor("launchdarkly", KEY) == "10"  # the pull went past them, on record


def test_records_that_fail_validation_are_malformed_not_fatal(store: AuditStore) -> None:
    class Source:
        def pull(self, cursor: str | None) -> Iterator[AuditPage]:
            good = make_record(1)
            naive = make_record(2, at=EPOCH.replace(tzinfo=None))
            stranger = make_record(3, provider="unleash")
            yield AuditPage([good, naive, stranger, "junk"], "3", malformed=1, problems=["x"])  # type: ignore[list-item]

    report = _pull(store, Source(), "local")
    assert (report.stored, report.malformed) == (1, 4)
    assert any("no time zone" in p for p in report.problems)
    assert any("says provider 'unleash'" in p for p in report.problems)
    assert any("not an AuditRecord" in p for p in report.problems)
    assert len(store.problems()) == 4


def test_an_adapter_that_counts_more_malformed_than_it_describes(store: AuditStore) -> None:
    class Source:
        def pull(self, cursor: str | None) -> Iterator[AuditPage]:
            yield AuditPage([], "1", malformed=3, problems=["one described"])

    report = _pull(store, Source(), "local")
    assert report.malformed == 3
    assert len(store.problems()) == 3


def test_unknown_event_types_are_kept_as_other_with_raw(store: AuditStore) -> None:
    source = SampleVendor(
        "unleash", [unleash_event(1), unleash_event(2, event_type="feature-tagged")]
    )
    report = _pull(store, source, "unleash")
    assert report.clean
    tagged = next(r for r in store.iter_rows(AuditQuery()) if r.id == "unleash:2")
    assert (tagged.action, tagged.vendor_event_type) == (Action.OTHER.value, "feature-tagged")
    [text] = [t for t in store.iter_canonical(AuditQuery()) if b'"id":"unleash:2"' in t]
    assert json.loads(text)["raw"]["type"] == "feature-tagged"


def test_since_keeps_only_newer_records_and_still_moves_the_cursor(store: AuditStore) -> None:
    source = SampleVendor.generate("unleash", 10, page_size=3)
    since = EPOCH + timedelta(seconds=6)
    report = _pull(store, source, "unleash", since=since)
    assert (report.stored, report.skipped, report.cursor_after) == (5, 5, "10")
    assert [r.vendor_event_id for r in store.iter_rows(AuditQuery())] == ["6", "7", "8", "9", "10"]


def test_from_start_refetches_and_recognises_what_is_stored(store: AuditStore) -> None:
    source = SampleVendor.generate("flagsmith", 7, page_size=5)
    _pull(store, source, "flagsmith")
    source.requests = 0
    again = _pull(store, source, "flagsmith", from_start=True)
    assert (again.stored, again.duplicates, source.requests) == (0, 7, 2)


def test_a_source_failing_part_way_keeps_the_pages_before(store: AuditStore) -> None:
    source = SampleVendor.generate("launchdarkly", 50, page_size=10)

    def fail_third(requests: int) -> None:
        if requests == 2:
            raise AuditSourceError("429 past the retry budget")

    source.on_request = fail_third
    report = _pull(store, source, "launchdarkly")
    assert report.error == "AuditSourceError: 429 past the retry budget"
    assert (report.stored, report.cursor_after) == (20, "20")
    assert store.get_cursor("launchdarkly", KEY) == "20"
    source.on_request = None
    source.requests = 0
    rest = _pull(store, source, "launchdarkly")
    assert (rest.stored, rest.duplicates, rest.cursor_before) == (30, 0, "20")


def test_an_adapter_bug_is_reported_not_raised(
    store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    source = SampleVendor.generate("local", 5, page_size=2)

    def bug(requests: int) -> None:
        if requests == 1:
            raise KeyError("oops")

    source.on_request = bug
    report = _pull(store, source, "local")
    assert report.error == "KeyError: 'oops'"
    assert report.stored == 2
    assert "the local audit source failed" in caplog.text


def test_page_pause_waits_between_pages(store: AuditStore) -> None:
    pauses: list[float] = []
    source = SampleVendor.generate("local", 25, page_size=10)
    _pull(store, source, "local", page_pause=0.25, sleep=pauses.append)
    assert pauses == [0.25, 0.25, 0.25]


def test_progress_is_reported_per_page(store: AuditStore) -> None:
    seen: list[int] = []
    _pull(
        store,
        SampleVendor.generate("local", 25, page_size=10),
        "local",
        on_page=lambda r: seen.append(r.fetched),
    )
    assert seen == [10, 20, 25]


# ---------------------------------------------------------------- killed half-way, for real

CHANGES = 20_000
_RNG = random.Random  # seeded: reproducible kill moments


def _many_changes(path: Path, count: int) -> None:
    """A local change log of ``count`` toggles (bulk-written: thousands of commits would take minutes)."""
    LocalStore(path).write(KEY, True, actor="setup", reason="change 1")
    rows = [
        (
            KEY,
            "disabled" if i % 2 == 0 else "enabled",
            "true" if i % 2 == 0 else "false",
            "false" if i % 2 == 0 else "true",
            f"operator-{i % 7}",
            f"change {i}",
            (EPOCH + timedelta(milliseconds=i))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "host-a",
            4242,
        )
        for i in range(2, count + 1)
    ]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO changes (flag_key, action, value_before, value_after, actor, reason,"
            " occurred_at, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _kill_until_done(
    env: dict[str, str], count_stored: Any, total: int, rng: random.Random
) -> tuple[int, int]:
    """Run the pull, SIGKILL it half-way through, until one run finishes; return (kills, mid-way kills).

    A run is killed once it has stored a random number of new records, not after a fixed time, so a
    slow machine still kills mid-way; after a few mid-way kills one run is left to finish.
    """
    kills = midway = 0
    for _attempt in range(60):
        before = count_stored()
        proc = subprocess.Popen(
            [sys.executable, "-m", "breakglass", "audit", "pull", "--page-pause", "0.02", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        target = before + rng.randint(200, 3000) if midway < 3 else total + 1
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if count_stored() >= target:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
            proc.communicate(timeout=10)
            pytest.fail("a pull made no progress for 240 s")
        out, err = proc.communicate(timeout=10)  # reaps it and closes the pipes
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            if 0 < count_stored() < total:
                midway += 1
            continue
        assert proc.returncode == 0, err.decode()
        [report] = json.loads(out)
        assert report["malformed"] == 0
        return kills, midway
    pytest.fail("the pull never finished in 60 runs")


def _check_complete(store: AuditStore, total: int) -> None:
    ids = [r.id for r in store.iter_rows(AuditQuery())]
    assert len(ids) == total
    sid = ids[0].split(":")[1].split("-")[0]
    assert sorted(ids) == sorted(f"local:{sid}-{i}" for i in range(1, total + 1))
    assert store.get_cursor("local", KEY) == f"{sid}-{total}"
    lines = []

    class Out:
        def write(self, data: bytes) -> None:
            lines.append(data)

        def flush(self) -> None:
            pass

    from breakglass.audit.export import export_jsonl

    export_jsonl(store, AuditQuery(), Out())  # type: ignore[arg-type]
    text = b"".join(lines)
    result = verify_lines(text.splitlines(keepends=True))
    assert result.ok, result.summary()
    assert result.records == total


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env.update(BREAKGLASS_STATE_DIR=str(tmp_path / "state"), BREAKGLASS_PROVIDER="local", **extra)
    return env


@pytest.mark.live
@pytest.mark.timeout(300)
def test_a_pull_killed_half_way_loses_and_duplicates_nothing_sqlite(tmp_path: Path) -> None:
    _many_changes(tmp_path / "state" / "local.db", CHANGES)
    audit_db = tmp_path / "state" / "audit.db"

    def count_stored() -> int:
        if not audit_db.exists():
            return 0
        try:
            return SqliteAuditStore(audit_db).count(AuditQuery())
        except Exception:  # noqa: BLE001 -- mid-creation
            return 0

    kills, midway = _kill_until_done(_env(tmp_path), count_stored, CHANGES, _RNG(7))
    assert midway >= 1, f"{kills} kills, none while the pull was half-way"
    _check_complete(SqliteAuditStore(audit_db), CHANGES)


@pytest.mark.live
@pytest.mark.timeout(300)
def test_a_pull_killed_half_way_loses_and_duplicates_nothing_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    from pydantic import SecretStr

    from breakglass.audit.postgres import PostgresAuditStore

    reset_postgres(postgres_url)
    _many_changes(tmp_path / "state" / "local.db", CHANGES)
    observer = PostgresAuditStore(SecretStr(postgres_url))
    try:

        def count_stored() -> int:
            try:
                return observer.count(AuditQuery())
            except Exception:  # noqa: BLE001 -- mid-creation
                return 0

        env = _env(tmp_path, BREAKGLASS_AUDIT__DATABASE_URL=postgres_url)
        kills, midway = _kill_until_done(env, count_stored, CHANGES, _RNG(11))
        assert midway >= 1, f"{kills} kills, none while the pull was half-way"
        _check_complete(observer, CHANGES)
    finally:
        observer.close()


def test_kill_helpers_build_the_log(tmp_path: Path) -> None:
    path = tmp_path / "local.db"
    _many_changes(path, 30)
    changes = LocalStore(path).changes(KEY, limit=100).changes
    assert [c.seq for c in changes] == list(range(1, 31))
    assert changes[5].occurred_at > changes[4].occurred_at
