"""Exports: the hash chain by its definition, the manifest, CSV, filters, identical bytes on both stores."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit.chain import GENESIS, ChainError, chain_record, check_record_line
from breakglass.audit.export import CSV_COLUMNS, MANIFEST_SCHEMA, export_csv, export_jsonl
from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.pull import pull_history
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.audit.verify import verify_lines
from breakglass.audit_record import Action
from breakglass.testing import ManualClock
from breakglass.testing.audit import VENDORS, SampleVendor
from tests.audit_support import T0, make_record, reset_postgres, rows

# The store fixtures (SQLite, and a real PostgreSQL) live there.
pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.audit.store import AuditStore


def export(store: AuditStore, query: AuditQuery | None = None) -> bytes:
    out = io.BytesIO()
    export_jsonl(store, query or AuditQuery(), out, clock=ManualClock(T0))
    return out.getvalue()


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def check_by_the_definition(text: bytes) -> list[dict[str, Any]]:
    """An independent verifier written from docs/audit-record.md alone, with only json and hashlib."""
    prev = GENESIS
    objects = []
    for line in text.splitlines():
        data = json.loads(line)
        assert canonical(data) == line, "every line is canonical JSON"
        body = {k: v for k, v in data.items() if k != "hash"}
        assert hashlib.sha256(canonical(body)).hexdigest() == data["hash"]
        assert data["prev_hash"] == prev
        prev = data["hash"]
        objects.append(data)
    return objects


def fill(store: AuditStore) -> None:
    for vendor in VENDORS:
        pull_history(
            store,
            SampleVendor.generate(vendor, 40, page_size=16),
            provider=vendor,
            flag_key="system-active",
        )


def test_every_line_meets_the_definition_and_the_manifest_closes_it(store: AuditStore) -> None:
    fill(store)
    text = export(store)
    objects = check_by_the_definition(text)
    records, manifest = objects[:-1], objects[-1]
    assert len(records) == 160
    assert {r["schema"] for r in records} == {"breakglass.audit/v1"}
    assert records[0]["prev_hash"] == GENESIS
    # Unfiltered: the store's own chain, in the order the store received the records.
    assert [r["hash"] for r in records] == [h.decode() for _, _, h, _ in store.iter_chain()]
    assert (manifest["order"], manifest["first_seq"], manifest["last_seq"]) == ("store", 1, 160)
    assert manifest["store_head"] == {"seq": 160, "hash": records[-1]["hash"]}
    assert manifest["schema"] == MANIFEST_SCHEMA
    assert manifest["count"] == 160
    assert manifest["final_hash"] == records[-1]["hash"] == manifest["prev_hash"]
    times = sorted(r["occurred_at"] for r in records)
    assert manifest["first_occurred_at"] == times[0]
    assert manifest["last_occurred_at"] == times[-1]
    assert manifest["exported_at"] == "2026-08-21T10:00:00.000Z"
    assert manifest["filters"] == {
        "environment": [],
        "flag": [],
        "provider": [],
        "since": None,
        "until": None,
    }
    assert verify_lines(io.BytesIO(text)).ok


def test_the_export_is_deterministic_and_the_manifest_states_filters(store: AuditStore) -> None:
    fill(store)
    query = AuditQuery(
        providers=("unleash", "local"),
        since=T0 + timedelta(seconds=10),
        until=T0 + timedelta(seconds=20),
    )
    first, second = export(store, query), export(store, query)
    # The same records, chained the same; the manifests differ in which export came before.
    assert first.splitlines()[:-1] == second.splitlines()[:-1]
    assert (
        json.loads(second.splitlines()[-1])["previous_export"]
        == json.loads(first.splitlines()[-1])["hash"]
    )
    *records, manifest = check_by_the_definition(first)
    keys = [(r["occurred_at"], r["id"]) for r in records]
    assert keys == sorted(keys)
    assert manifest["order"] == "occurred_at,id"
    assert {r["provider"] for r in records} == {"unleash", "local"}
    assert all("2026-08-21T10:00:10" <= r["occurred_at"] < "2026-08-21T10:00:20" for r in records)
    assert manifest["filters"]["provider"] == ["local", "unleash"]
    assert manifest["filters"]["since"] == "2026-08-21T10:00:10.000Z"
    assert manifest["count"] == len(records) == 20


def test_an_empty_export_still_has_a_manifest(store: AuditStore) -> None:
    text = export(store)
    [manifest] = check_by_the_definition(text)
    assert (manifest["count"], manifest["final_hash"], manifest["first_occurred_at"]) == (
        0,
        GENESIS,
        None,
    )
    result = verify_lines(io.BytesIO(text))
    assert result.ok
    assert result.records == 0


@pytest.mark.live
def test_sqlite_and_postgres_export_the_same_bytes(tmp_path: Path, postgres_url: str) -> None:
    reset_postgres(postgres_url)
    lite = SqliteAuditStore(tmp_path / "audit.db")
    pg = PostgresAuditStore(SecretStr(postgres_url))
    try:
        for target in (lite, pg):
            fill(target)
            # The same pulled_at on both sides, so the records are the same.
            target.save(
                rows(
                    make_record(1, provider="breakglass"),
                    make_record(2, at=T0 + timedelta(seconds=3)),
                )
            )
        lite_text = _strip_pulled(export(lite))
        pg_text = _strip_pulled(export(pg))
        assert lite_text == pg_text
        assert [r.id for r in lite.iter_rows(AuditQuery())] == [
            r.id for r in pg.iter_rows(AuditQuery())
        ]
    finally:
        pg.close()


def _strip_pulled(text: bytes) -> list[tuple[str, str]]:
    # SampleVendor stamps pulled_at with the real clock, so compare the rest of each record.
    out = []
    for line in text.splitlines()[:-1]:
        data = json.loads(line)
        out.append(
            (
                data["id"],
                canonical(
                    {k: v for k, v in data.items() if k not in ("pulled_at", "hash", "prev_hash")}
                ).decode(),
            )
        )
    return out


def test_csv_is_flat_without_raw_and_safe_for_spreadsheets(store: AuditStore) -> None:
    store.save(
        rows(
            make_record(
                1,
                action=Action.ENABLED,
                comment='=HYPERLINK("http://evil")',
                raw={"secret-ish": "raw stays out"},
            ),
            make_record(2, comment='plain, with "quotes"\nand a newline', environment=None),
        )
    )
    out = io.StringIO(newline="")
    assert export_csv(store, AuditQuery(), out) == 2
    parsed = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert tuple(parsed[0]) == CSV_COLUMNS
    first, second = parsed
    assert first["comment"] == '\'=HYPERLINK("http://evil")'
    assert (first["value_before"], first["value_after"], first["action"]) == (
        "false",
        "true",
        "enabled",
    )
    assert (first["actor_kind"], first["actor_id"], first["actor_email"]) == (
        "user",
        "u1",
        "u1@example.com",
    )
    assert "raw stays out" not in out.getvalue()
    assert second["comment"] == 'plain, with "quotes"\nand a newline'
    assert second["environment"] == ""


def test_chain_record_matches_the_slow_definition() -> None:
    from breakglass.audit.codec import prepare

    record = prepare(make_record(5, raw={"hash": "f" * 64, "id": "x", "prev_hash": "0" * 64}))
    line, digest, occurred = chain_record(record.canonical.encode(), b"a" * 64)
    data = json.loads(line)
    assert json.loads(occurred) == data["occurred_at"]
    assert canonical(data) == line
    assert data["hash"] == digest.decode()
    assert data["raw"] == {"hash": "f" * 64, "id": "x", "prev_hash": "0" * 64}
    assert check_record_line(line, b"a" * 64) == (digest, b"a" * 64, occurred)
    assert check_record_line(line, None)[1] == b"a" * 64  # a first line names its predecessor
    with pytest.raises(ChainError, match="prev_hash"):
        check_record_line(line, b"b" * 64)


def test_moving_the_hash_field_inside_the_line_is_caught() -> None:
    from breakglass.audit.codec import prepare

    record = prepare(make_record(5))
    line, digest, _ = chain_record(record.canonical.encode(), GENESIS.encode())
    field = b'"hash":"' + digest + b'",'
    body = line.replace(field, b"")
    # Put the same hash field in front of the actor's "id" instead: same hashed bytes, other line.
    moved = body.replace(b'"email":"u5@example.com",', b'"email":"u5@example.com",' + field, 1)
    assert moved != line
    with pytest.raises(ChainError):
        check_record_line(moved, GENESIS.encode())
