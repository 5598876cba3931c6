"""Nothing lost when the store is down: the bridge's own records wait in a durable spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit.codec import prepare
from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.recorder import PROVIDER, AuditRecorder
from breakglass.audit.spool import Spool
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.local import LocalAdmin, LocalStore
from tests.audit_support import FlakyStore, RefusingStore, make_record

pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from pathlib import Path


KEY = "system-active"


def _own(store: Any) -> list[dict[str, Any]]:
    return [json.loads(t) for t in store.iter_canonical(AuditQuery(providers=(PROVIDER,)))]


def test_spooled_records_reach_the_store_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    records = [prepare(make_record(n, provider=PROVIDER)) for n in range(1, 4)]
    spool.append(records[:2])
    spool.append(records[2:])
    assert spool.pending() == 3
    store = SqliteAuditStore(tmp_path / "audit.db")
    assert spool.drain(store) == 3
    assert spool.pending() == 0
    # A crash between storing and emptying: the same lines again are duplicates, not new records.
    spool.append(records)
    spool.drain(store)
    assert store.count(AuditQuery()) == 3


def test_an_unreadable_line_is_set_aside_and_the_rest_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([prepare(make_record(1, provider=PROVIDER))])
    with spool.path.open("ab") as handle:
        handle.write(b'{"half a record\n')
    spool.append([prepare(make_record(2, provider=PROVIDER))])
    store = SqliteAuditStore(tmp_path / "audit.db")
    assert spool.drain(store) == 2
    assert store.count(AuditQuery()) == 2
    rejected = spool.rejected_path.read_bytes().splitlines()
    assert json.loads(rejected[0])["reason"] == "cannot be read back: JSONDecodeError"
    assert rejected[1] == b'{"half a record'


def test_a_record_the_store_refuses_does_not_hold_up_the_others(tmp_path: Path) -> None:
    real = SqliteAuditStore(tmp_path / "audit.db")
    poison = prepare(make_record(2, provider=PROVIDER)).id
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([prepare(make_record(n, provider=PROVIDER)) for n in range(1, 21)])
    assert spool.drain(RefusingStore(real, poison)) == 19
    assert real.count(AuditQuery()) == 19
    assert b"value too long" in spool.rejected_path.read_bytes()
    assert spool.pending() == 0


def test_while_the_store_is_down_records_go_to_the_spool_then_to_the_store(
    tmp_path: Path,
) -> None:
    real = SqliteAuditStore(tmp_path / "audit.db")
    down = threading.Event()
    down.set()

    spool = Spool(tmp_path / "spool.jsonl")
    recorder = AuditRecorder(
        lambda: FlakyStore(real, down),  # type: ignore[arg-type,return-value]
        backend="local",
        flag_key=KEY,
        spool=spool,
    )
    admin = recorder.wrap_admin(LocalAdmin(LocalStore(tmp_path / "vendor.db"), KEY))
    admin.set_active(False, actor="t", reason="halt while the store is down")
    assert recorder.flush(10.0)  # out of memory: synced to the spool
    assert spool.pending() == 1
    assert recorder.spooled == 1
    down.clear()
    deadline = 200
    while spool.pending() and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    assert spool.pending() == 0
    assert [r["comment"] for r in _own(real)] == ["halt while the store is down"]
    recorder.close()


def _bg(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    base["BREAKGLASS_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "breakglass", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_cli_halt_with_a_broken_store_says_where_its_record_waits(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "audit.db").write_bytes(b"this is not a database" * 100)
    halted = _bg(tmp_path, "halt", "--actor", "alice", "--reason", "incident 4711")
    assert halted.returncode == 0, halted.stderr
    spool = state / "audit-spool.jsonl"
    assert f"wait in {spool}" in halted.stderr
    [line] = spool.read_text().splitlines()
    assert json.loads(line)["comment"] == "incident 4711"
    status = _bg(
        tmp_path, "audit", "status", "--json", BREAKGLASS_AUDIT__PATH=str(tmp_path / "x.db")
    )
    assert json.loads(status.stdout)["spooled"] == 1
    # The store is repaired (the corrupt file moved aside); the next export writes the record.
    (state / "audit.db").rename(state / "audit.db.corrupt")
    exported = _bg(tmp_path, "audit", "export", "--out", str(tmp_path / "e.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert "1 spooled records of the bridge written to the store" in exported.stderr
    records = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()[:-1]]
    assert [(r["vendor_event_type"], r["comment"]) for r in records] == [("halt", "incident 4711")]
    assert spool.read_text() == ""


def test_a_cli_halt_with_postgres_away_spools_its_record(tmp_path: Path) -> None:
    halted = _bg(
        tmp_path,
        "halt",
        "--actor",
        "bob",
        "--reason",
        "db away",
        BREAKGLASS_AUDIT__DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        BREAKGLASS_AUDIT__CONNECT_TIMEOUT="1",
    )
    assert halted.returncode == 0, halted.stderr
    assert "audit-spool.jsonl" in halted.stderr
    assert "127.0.0.1:1" in halted.stderr
    assert "nobody" not in halted.stderr  # the URL's user stays out, like a password would
    assert len((tmp_path / "state" / "audit-spool.jsonl").read_text().splitlines()) == 1


@pytest.mark.live
def test_nul_characters_no_longer_poison_postgres(
    tmp_path: Path, postgres_url: str, writer_url: str
) -> None:
    """Twenty halts whose reasons hold NUL: all twenty stored, exported, verified, unchanged."""
    from tests.audit_fixtures import fresh_writer_store

    fresh_writer_store(postgres_url, writer_url).close()
    recorder = AuditRecorder(
        lambda: PostgresAuditStore(SecretStr(writer_url)),
        backend="local",
        flag_key=KEY,
        spool=Spool(tmp_path / "spool.jsonl"),
    )
    admin = recorder.wrap_admin(LocalAdmin(LocalStore(tmp_path / "vendor.db"), KEY))
    for n in range(20):
        admin.set_active(n % 2 == 1, actor=f"op\x00{n}", reason=f"reason\x00{n}")
    assert recorder.flush(30.0)
    recorder.close()
    assert recorder.spooled == 0
    store = PostgresAuditStore(SecretStr(writer_url))
    try:
        own = _own(store)
        assert sorted(r["comment"] for r in own) == sorted(f"reason\x00{n}" for n in range(20))
        [row] = [r for r in store.iter_rows(AuditQuery()) if r.comment == "reason\\u00003"]
        assert row.actor_name == "op\\u00003"
    finally:
        store.close()
