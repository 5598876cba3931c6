"""Attacks on the audit trail: each one fails, and the genuine trail still passes.

A forger who rewrites an export and recomputes every hash, an editor of the
store (changed, deleted, re-chained rows, edited query columns), a replayed
old export, a deleted export-log entry, and hostile files given to `verify`.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from breakglass.audit.chain import chain_object, chain_record, genesis
from breakglass.audit.codec import canonical_json, prepare
from breakglass.audit.export import export_jsonl
from breakglass.audit.integrity import check_store
from breakglass.audit.signing import generate, load_public_key, load_signer
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery, link
from breakglass.audit.verify import read_lines, verify_export, verify_lines
from breakglass.audit_record import Action
from breakglass.errors import AuditChainError
from breakglass.testing import ManualClock
from tests.audit_support import T0, make_record, rows

pytest_plugins = ["tests.audit_fixtures"]

if TYPE_CHECKING:
    from pathlib import Path

    from breakglass.audit.signing import PublicKey, Signer
    from breakglass.audit.store import AuditStore


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Signer, PublicKey]:
    generate(tmp_path / "k.pem", tmp_path / "k.pub")
    return load_signer(tmp_path / "k.pem"), load_public_key(tmp_path / "k.pub")


def _trail(path: Path) -> SqliteAuditStore:
    """Five records; the third is the halt a forger wants gone."""
    store = SqliteAuditStore(path)
    store.save(
        rows(
            make_record(1, action=Action.ENABLED),
            make_record(2, action=Action.ENABLED),
            make_record(3, action=Action.DISABLED, comment="HALT: harmful outputs"),
            make_record(4, action=Action.ENABLED),
        )
    )
    store.save(rows(make_record(5, action=Action.ENABLED)))
    return store


def _export(store: AuditStore, signer: Signer | None = None, **kw: Any) -> bytes:
    out = io.BytesIO()
    export_jsonl(store, AuditQuery(), out, clock=ManualClock(T0), signer=signer, **kw)
    return out.getvalue()


def _forge(export: bytes, drop_comment: str) -> bytes:
    """Drop a record and recompute every hash and the manifest, as a forger would."""
    lines = export.splitlines()
    records = [json.loads(x) for x in lines if x.startswith(b'{"action":')]
    manifest = next(json.loads(x) for x in lines if b'"kind":"manifest"' in x)
    signature = next((json.loads(x) for x in lines if b'"kind":"signature"' in x), None)
    kept = [r for r in records if r["comment"] != drop_comment]
    prev = genesis()
    out = []
    for record in kept:
        body = {k: v for k, v in record.items() if k not in ("hash", "prev_hash")}
        line, prev, _ = chain_record(canonical_json(body).encode(), prev)
        out.append(line)
    manifest.update(count=len(kept), final_hash=prev.decode())
    line, digest = chain_object(manifest, prev)
    out.append(line)
    if signature is not None:
        signature["export_hash"] = digest.decode()  # the forger cannot make a new signature
        out.append(canonical_json(signature).encode())
    return b"\n".join(out) + b"\n"


def _verify(data: bytes, **kw: Any) -> Any:
    return verify_lines(io.BytesIO(data), **kw)


def _raw(store: SqliteAuditStore, *statements: str) -> None:
    """Edit the file directly, as someone with write access to it would."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


_UNGUARD = (
    "DROP TRIGGER audit_records_no_update",
    "DROP TRIGGER audit_records_no_delete",
)


# ---------------------------------------------------------------- the genuine trail


def test_the_genuine_trail_passes_every_check(
    tmp_path: Path, keys: tuple[Signer, PublicKey]
) -> None:
    signer, public = keys
    store = _trail(tmp_path / "audit.db")
    text = _export(store, signer)
    result = _verify(text, public_key=public, strict=True)
    assert result.ok, result.summary()
    assert result.signature_checked
    assert "signature valid" in result.summary()
    assert check_store(store).records == 5


# ---------------------------------------------------------------- forgery


def test_a_forgery_with_recomputed_hashes_fails_the_signature(
    tmp_path: Path, keys: tuple[Signer, PublicKey]
) -> None:
    signer, public = keys
    store = _trail(tmp_path / "audit.db")
    forged = _forge(_export(store, signer), "HALT: harmful outputs")
    # Self-consistent, as any hash chain a forger recomputes (docs/compliance.md says so)...
    assert _verify(forged).ok
    # ...but the signature does not cover it, and the store never made it.
    result = _verify(forged, public_key=public)
    assert not result.ok
    assert "signature does not verify" in (result.problem or "")


def test_a_forgery_without_its_signature_or_signed_by_another_key_fails(
    tmp_path: Path, keys: tuple[Signer, PublicKey]
) -> None:
    _, public = keys
    store = _trail(tmp_path / "audit.db")
    unsigned = _forge(_export(store), "HALT: harmful outputs")
    assert "not signed" in (_verify(unsigned, public_key=public).problem or "")
    generate(tmp_path / "other.pem", tmp_path / "other.pub")
    other = load_signer(tmp_path / "other.pem")
    resigned = _export(_trail(tmp_path / "forged.db"), other)
    result = _verify(resigned, public_key=public)
    assert not result.ok
    assert other.key_id in (result.problem or "")


def test_a_forged_export_is_unknown_to_the_store(
    tmp_path: Path, keys: tuple[Signer, PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, _ = keys
    state = tmp_path / "state"
    store = _trail(state / "audit.db")
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(_forge(_export(store, signer), "HALT: harmful outputs"))
    store.close()
    result = _cli(tmp_path, "audit", "verify", str(forged), "--store")
    assert result.returncode == 1
    assert "unknown to this store" in result.stdout


# ---------------------------------------------------------------- editing the store


def test_update_and_delete_are_refused_by_the_store(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    for statement in (
        "UPDATE audit_records SET comment = 'nothing' WHERE seq = 3",
        "DELETE FROM audit_records WHERE seq = 3",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            _raw(store, statement)
    assert check_store(store).records == 5


def test_an_edited_record_is_found_by_verify_store_and_refused_by_export(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    _raw(
        store,
        *_UNGUARD,
        "UPDATE audit_records SET canonical = replace(canonical, 'HALT', 'noop') WHERE seq = 3",
    )
    with pytest.raises(AuditChainError, match=r"record 3 .*changed after it was stored"):
        check_store(store)
    with pytest.raises(AuditChainError, match="record 3"):
        _export(store)


def test_an_edit_with_its_own_hash_recomputed_breaks_the_next_link(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    conn = sqlite3.connect(store.path, isolation_level=None)
    for statement in _UNGUARD:
        conn.execute(statement)
    prev, canonical = conn.execute(
        "SELECT prev_hash, canonical FROM audit_records WHERE seq = 3"
    ).fetchone()
    edited = canonical.replace("HALT", "noop")
    [(_, _, digest)] = link([edited], (2, prev.encode()))
    conn.execute("UPDATE audit_records SET canonical = ?, hash = ? WHERE seq = 3", (edited, digest))
    conn.close()
    with pytest.raises(AuditChainError, match=r"record 4 .*does not follow record 3"):
        check_store(store)


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    _raw(store, *_UNGUARD, "DELETE FROM audit_records WHERE seq = 3")
    with pytest.raises(AuditChainError, match="record 3 missing: deleted"):
        check_store(store)


def test_deleting_the_newest_records_is_caught_by_the_export_log(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    _export(store)  # the log now says: the store reached record 5
    _raw(store, *_UNGUARD, "DELETE FROM audit_records WHERE seq >= 4")
    with pytest.raises(AuditChainError, match="up to record 5; the store now ends at record 3"):
        check_store(store)


def test_rewriting_the_whole_chain_is_caught_by_the_export_log(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    _export(store)
    conn = sqlite3.connect(store.path, isolation_level=None)
    for statement in _UNGUARD:
        conn.execute(statement)
    old = conn.execute("SELECT seq, canonical FROM audit_records ORDER BY seq").fetchall()
    edited = [c.replace("HALT", "noop") for _, c in old]
    for (seq, _), (_, prev, digest), text in zip(old, link(edited, None), edited, strict=True):
        conn.execute(
            "UPDATE audit_records SET canonical = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (text, prev, digest, seq),
        )
    conn.close()
    with pytest.raises(AuditChainError, match="saw record 5 with another hash"):
        check_store(store)


def test_an_edited_query_column_is_caught(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    # Moving the halt's time column would hide it from a time-filtered export.
    _raw(
        store,
        *_UNGUARD,
        "UPDATE audit_records SET occurred_at = '2020-01-01T00:00:00.000Z' WHERE seq = 3",
    )
    with pytest.raises(AuditChainError, match="occurred_at column"):
        check_store(store)
    out = io.BytesIO()
    with pytest.raises(AuditChainError):
        export_jsonl(store, AuditQuery(since=T0), out)


def test_a_deleted_export_log_entry_is_caught(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    for _ in range(3):
        _export(store)
    _raw(store, "DROP TRIGGER audit_exports_no_delete", "DELETE FROM audit_exports WHERE seq = 2")
    with pytest.raises(AuditChainError, match="entry 3 does not follow"):
        check_store(store)


# ---------------------------------------------------------------- linking and replay


def test_consecutive_exports_link_up(tmp_path: Path, keys: tuple[Signer, PublicKey]) -> None:
    signer, public = keys
    store = _trail(tmp_path / "audit.db")
    first = _export(store, signer, new_only=True)
    store.save(rows(make_record(6), make_record(7)))
    second = _export(store, signer, new_only=True)
    one, two = (_verify(t, public_key=public) for t in (first, second))
    assert one.ok
    assert two.ok
    assert two.records == 2
    assert two.manifest is not None
    assert one.manifest is not None
    assert two.manifest["genesis"] == one.manifest["final_hash"]
    assert two.manifest["previous_export"] == one.export_hash
    # Both together are the whole store's chain: one export of everything says the same.
    whole = _export(store)
    assert whole.splitlines()[:7] == first.splitlines()[:5] + second.splitlines()[:2]


def test_a_replayed_old_export_is_not_the_latest(tmp_path: Path) -> None:
    store = _trail(tmp_path / "state" / "audit.db")
    old = tmp_path / "old.jsonl"
    old.write_bytes(_export(store))
    store.save(rows(make_record(6, action=Action.DISABLED, comment="the later halt")))
    _export(store)
    store.close()
    replay = _cli(tmp_path, "audit", "verify", str(old), "--store", "--latest")
    assert replay.returncode == 1
    assert "not the latest: 1 exports made since" in replay.stdout
    assert "1 records stored after it" in replay.stdout
    # Without --latest it is still what it is: a genuine export of its day.
    assert _cli(tmp_path, "audit", "verify", str(old), "--store").returncode == 0


# ---------------------------------------------------------------- hostile files


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["BREAKGLASS_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "breakglass", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _record_line(canonical: bytes) -> bytes:
    line, _, _ = chain_record(canonical, genesis())
    return line


HOSTILE = {
    "deep nesting": b"[" * 200_000 + b"]" * 200_000 + b"\n",
    "deep nesting in an object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n",
    "invalid UTF-8": b'{"kind":"manifest","x":"\xff\xfe"}\n',
    "binary": bytes(range(256)) + b"\n",
    "NUL bytes": b"\x00" * 1000 + b"\n",
    "a number with a million digits": b'{"hash":' + b"9" * 1_000_000 + b"}\n",
    "no newline": b'{"action":"x"',
    "empty": b"",
    "only newlines": b"\n\n\n",
    "escape sequences": b"\x1b[2J\x1b[1;1Hintact: 999 records\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_one_line_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(HOSTILE[name])
    for strict in (False, True):
        result = verify_export(str(path), strict=strict)
        assert not result.ok
        assert result.problem is not None
        assert "\n" not in result.summary()
    shown = _cli(tmp_path, "audit", "verify", str(path))
    assert shown.returncode == 1
    assert "Traceback" not in shown.stderr
    assert shown.stdout.startswith("BROKEN at line ")
    assert "\x1b" not in shown.stdout
    assert len(shown.stdout.splitlines()) == 1


def test_an_endless_line_is_read_only_up_to_the_cap() -> None:
    # /dev/zero never ends a line: one error after the cap, not a memory exhaustion.
    result = verify_export("/dev/zero", max_line_bytes=1 << 20)
    assert not result.ok
    assert result.problem == f"longer than {1 << 20} bytes: not an export line"


def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as handle:
        handle.write(b'{"action":"' + b"x" * (40 << 20) + b'"}\n')
    with path.open("rb") as handle:
        lines = read_lines(handle, 1 << 20)
        with pytest.raises(ValueError, match="longer than"):
            next(lines)
        assert handle.tell() <= (1 << 20) + (1 << 20)  # the cap plus one block read
    assert verify_export(str(path)).problem == f"longer than {16 << 20} bytes: not an export line"


def test_invalid_utf8_inside_a_hashed_record_line_is_refused(tmp_path: Path) -> None:
    canonical = prepare(make_record(1, comment="PLACEHOLDER")).canonical.encode()
    line = _record_line(canonical.replace(b"PLACEHOLDER", b"\xff\xfe"))
    result = _verify(line + b"\n")
    where = line.index(b"\xff")
    assert (result.line, result.problem) == (1, f"not valid UTF-8 (byte {where})")


def test_non_canonical_record_lines_with_matching_hashes(
    tmp_path: Path, keys: tuple[Signer, PublicKey]
) -> None:
    """A duplicate key or invalid JSON after the fixed fields, hash recomputed: what --strict adds."""
    _, public = keys
    canonical = prepare(make_record(1)).canonical.encode()
    duplicate = canonical.replace(b'"project":', b'"project":"x","project":', 1)
    broken_tail = canonical[:-1] + b",]"
    for bad in (duplicate, broken_tail):
        line, digest, _ = chain_record(bad, genesis())
        manifest = {
            "schema": "breakglass.audit-export/v1",
            "kind": "manifest",
            "record_schema": "breakglass.audit/v1",
            "count": 1,
            "genesis": genesis().decode(),
            "final_hash": digest.decode(),
            "first_occurred_at": "2026-08-21T10:00:01.000Z",
            "last_occurred_at": "2026-08-21T10:00:01.000Z",
        }
        closing, _ = chain_object(manifest, digest)
        text = line + b"\n" + closing + b"\n"
        assert _verify(text).ok  # the default checks bytes and chain: the help says so
        assert not _verify(text, strict=True).ok
        assert not _verify(text, public_key=public).ok  # never signed by the exporter


def test_lines_after_the_signature_are_refused(
    tmp_path: Path, keys: tuple[Signer, PublicKey]
) -> None:
    signer, public = keys
    text = _export(_trail(tmp_path / "audit.db"), signer)
    result = _verify(text + text.splitlines(keepends=True)[0], public_key=public)
    assert result.problem == (
        "a line after the manifest that is neither its signature nor its time stamp"
    )


def test_a_time_span_that_lies_is_refused(tmp_path: Path) -> None:
    store = _trail(tmp_path / "audit.db")
    lines = _export(store).splitlines()
    manifest = json.loads(lines[-1])
    manifest["last_occurred_at"] = (T0 + timedelta(days=999)).isoformat()
    prev = json.loads(lines[-2])["hash"].encode()
    closing, _ = chain_object(manifest, prev)
    result = _verify(b"\n".join([*lines[:-1], closing]) + b"\n")
    assert result.problem == "the manifest's first and last times do not match the records"


# ---------------------------------------------------------------- PostgreSQL: least privilege


@pytest.mark.live
def test_the_postgres_writer_writes_but_cannot_change_or_create(
    postgres_url: str, writer_url: str
) -> None:
    import psycopg

    from tests.audit_fixtures import fresh_writer_store

    store = fresh_writer_store(postgres_url, writer_url)
    try:
        store.save(rows(make_record(1), make_record(2)))
        _export(store)  # reads, checks, logs the export: all allowed
        assert check_store(store).records == 2
    finally:
        store.close()
    with psycopg.connect(writer_url, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_records SET comment = 'x'",
            "DELETE FROM audit_records",
            "DELETE FROM audit_exports",
            "TRUNCATE audit_records",
            "CREATE TABLE audit_shadow (x int)",
            "DROP TRIGGER audit_records_append_only ON audit_records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    # Even the owner's changes are refused by the trigger.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in ("UPDATE audit_records SET comment = 'x'", "TRUNCATE audit_exports"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


@pytest.mark.live
def test_a_writer_on_an_unmigrated_database_is_told_to_migrate(
    postgres_url: str, writer_url: str
) -> None:
    from pydantic import SecretStr

    from breakglass.audit.postgres import PostgresAuditStore
    from breakglass.errors import AuditStoreError
    from tests.audit_support import reset_postgres

    reset_postgres(postgres_url)
    store = PostgresAuditStore(SecretStr(writer_url))
    try:
        with pytest.raises(AuditStoreError, match="run `breakglass audit migrate` once as the"):
            store.save(rows(make_record(1)))
    finally:
        store.close()


@pytest.mark.live
def test_a_poisoned_page_does_not_stick_the_pull(postgres_url: str, writer_url: str) -> None:
    """A NUL in one entry's id: that entry is a problem, its page-mates are stored, the cursor moves."""
    from breakglass.audit.pull import pull_history
    from breakglass.seams import AuditPage
    from tests.audit_fixtures import fresh_writer_store

    class Source:
        def pull(self, cursor: str | None) -> Any:
            if cursor is None:
                bad = make_record(2, comment="comment with \x00 inside")
                worse = make_record(3)
                object.__setattr__(worse, "vendor_event_id", "3\x00")
                # A hostile vendor's cursor may hold a NUL too: kept escaped, never a stuck pull.
                yield AuditPage([make_record(1), bad, worse, make_record(4)], cursor="page\x00-1")

    store = fresh_writer_store(postgres_url, writer_url)
    try:
        report = pull_history(store, Source(), provider="local", flag_key="system-active")
        assert (report.stored, report.malformed) == (3, 1)
        assert "NUL" in report.problems[0]
        again = pull_history(store, Source(), provider="local", flag_key="system-active")
        assert again.error is None
        assert store.get_cursor("local", "system-active") == "page\\u0000-1"
        comments = [json.loads(t)["comment"] for t in store.iter_canonical(AuditQuery())]
        assert "comment with \x00 inside" in comments
        assert _verify(_export(store)).ok
    finally:
        store.close()


def test_a_bridge_that_can_write_its_audit_store_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breakglass.audit.recorder import AuditRecorder
    from breakglass.settings import Settings

    monkeypatch.delenv("BREAKGLASS_AUDIT__DATABASE_URL", raising=False)
    monkeypatch.delenv("BREAKGLASS_AUDIT__PATH", raising=False)
    (tmp_path / "state").mkdir()
    with caplog.at_level("WARNING", logger="breakglass.audit"):
        AuditRecorder.for_bridge(Settings(provider="local", state_dir=tmp_path / "state"), "local")
    assert "writable by this process" in caplog.text


def test_a_record_the_store_refuses_does_not_stick_the_pull(tmp_path: Path) -> None:
    """Any page-mate the store refuses (not only a NUL): a problem; the rest stored; the cursor moves."""
    from breakglass.audit.pull import pull_history
    from breakglass.seams import AuditPage
    from tests.audit_support import RefusingStore

    class Source:
        def pull(self, cursor: str | None) -> Any:
            if cursor is None:
                yield AuditPage([make_record(n) for n in (1, 2, 3)], cursor="page-1")

    real = SqliteAuditStore(tmp_path / "audit.db")
    store = RefusingStore(real, "local:2")
    report = pull_history(store, Source(), provider="local", flag_key="system-active")
    assert (report.stored, report.malformed, report.error) == (2, 1, None)
    assert "local:2: the store refused it" in report.problems[0]
    assert real.get_cursor("local", "system-active") == "page-1"
    assert real.problems()[0].detail.startswith("local:2: the store refused it")
    again = pull_history(store, Source(), provider="local", flag_key="system-active")
    assert (again.error, again.stored) == (None, 0)


def test_a_signing_key_others_can_read_is_warned_about(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from breakglass.cli import main

    generate(tmp_path / "k.pem", tmp_path / "k.pub")
    assert not load_signer(tmp_path / "k.pem").exposed  # keygen writes it 0600
    (tmp_path / "k.pem").chmod(0o644)
    env = {"BREAKGLASS_STATE_DIR": str(tmp_path / "state")}
    args = ["audit", "export", "--sign-key", str(tmp_path / "k.pem"), "--out", str(tmp_path / "e")]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "is readable by other users" in result.output


_PG_EDITS = {
    "content": (
        "UPDATE audit_records SET canonical = replace(canonical, 'HALT', 'noop') WHERE seq = 3",
        r"record 3 .*changed after it was stored",
    ),
    "hash": ("UPDATE audit_records SET hash = 'abc' WHERE seq = 3", r"record 3 .*changed after"),
    "deleted": ("DELETE FROM audit_records WHERE seq = 3", "record 3 missing: deleted"),
    "newest deleted": (
        "DELETE FROM audit_records WHERE seq > 3000",
        "up to record 4000; the store now ends at record 3000",
    ),
    "column": (
        "UPDATE audit_records SET occurred_at = '2020-01-01T00:00:00Z' WHERE seq = 3",
        "occurred_at column",
    ),
}


@pytest.mark.live
@pytest.mark.parametrize("edit", list(_PG_EDITS))
def test_an_edited_postgres_store_is_refused_and_the_store_stays_usable(
    postgres_url: str, writer_url: str, edit: str
) -> None:
    """The chain is read as a stream: a break found early leaves the rest unread, and nothing stuck.

    Read in batches of a thousand records, so the checks run across the batches' boundaries.
    """
    import psycopg

    from tests.audit_fixtures import fresh_writer_store

    statement, message = _PG_EDITS[edit]
    store = fresh_writer_store(postgres_url, writer_url, batch=1000)
    try:
        store.save(
            rows(
                *(make_record(n) for n in (1, 2)),
                make_record(3, comment="HALT: harmful outputs"),
                *(make_record(n) for n in range(4, 4001)),
            )
        )
        first = _export(store)
        assert len(first.splitlines()) == 4001
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only")
            conn.execute(statement)
        with pytest.raises(AuditChainError, match=message):
            check_store(store)
        with pytest.raises(AuditChainError):
            export_jsonl(store, AuditQuery(since=T0), io.BytesIO())
        if edit != "column":  # an unfiltered export does not read the query columns
            with pytest.raises(AuditChainError, match=message):
                _export(store)
        # The abandoned reads left the connection idle, and text loads as text again.
        [logged] = store.exports()
        assert isinstance(logged.manifest, str)
        assert store.count(AuditQuery()) == (
            3999 if edit == "deleted" else 3000 if edit == "newest deleted" else 4000
        )
        assert store.get_cursor("local", "system-active") is None
    finally:
        store.close()
