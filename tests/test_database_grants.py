"""Least privilege on PostgreSQL: ``breakglass db migrate --role`` and serve running as that role.

The owner makes every table and grants a NOLOGIN role exactly what
:mod:`breakglass.database.grants` lists; serve logs in as a member of that
role and halts, notifies, is acknowledged, resumes through the gate and
reviews held decisions, all against the real server. The role then tries to
change or remove evidence, to alter, drop or truncate tables and to switch the
append-only triggers off, and is refused each time. A role missing one grant
gets one line naming the table and the privilege, and never an active state.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from breakglass.audit.postgres import PostgresAuditStore
from breakglass.cli import main
from breakglass.database.grants import COMPONENTS, NAMES, tables_of
from breakglass.errors import AuditStoreError
from breakglass.hold import HoldStore
from breakglass.notify.outbox import Ack, Outbox
from breakglass.serve.auth import Role
from breakglass.serve.settings import ServeSettings
from breakglass.serve.store import PostgresServeStore
from breakglass.testing.serve import local_settings, running_serve
from tests.notify_receivers import Receivers, wait_until
from tests.resume_policies import notify_toml

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest_plugins = ["tests.audit_fixtures", "tests.notify_fixtures"]
pytestmark = pytest.mark.live

EVERY_TABLE = [t.table for c in COMPONENTS for t in c.tables]
EVIDENCE = [t.table for c in COMPONENTS for t in c.tables if t.evidence]
EXPIRING = ("serve_idempotency", "serve_login_failures")
"""The only rows the runtime role may delete: answers kept a day, failed logins kept a window."""


@dataclass
class Roles:
    """The owner's URL, a NOLOGIN role holding the grants, and login roles."""

    owner: str
    group: str
    serve: str
    """A LOGIN role that is a member of ``group`` and has nothing of its own."""
    serve_url: str
    hold: str
    """A LOGIN role granted the hold queue only (the inference service)."""
    hold_url: str


def _as(url: str, user: str) -> str:
    info = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    info["user"] = user
    info.pop("password", None)
    return make_conninfo("", **info)


def _owner(url: str, *statements: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            cur = conn.execute(statement)  # test constants
            rows = list(cur.fetchall()) if cur.description else []
    return rows


def _drop_everything(url: str) -> None:
    tables = ", ".join([*EVERY_TABLE, "notify_schema_version"])
    _owner(url, f"DROP TABLE IF EXISTS {tables} CASCADE")


@pytest.fixture
def roles(postgres_url: str) -> Iterator[Roles]:
    tag = secrets.token_hex(4)
    group, serve, hold = f"bg_runtime_{tag}", f"bg_serve_{tag}", f"bg_hold_{tag}"
    _drop_everything(postgres_url)
    database = conninfo_to_dict(postgres_url)["dbname"]
    _owner(
        postgres_url,
        # Nothing at database level beyond CONNECT: not even the temporary tables PUBLIC may make.
        f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC',
        f'CREATE ROLE "{group}" NOLOGIN',
        f'CREATE ROLE "{serve}" LOGIN IN ROLE "{group}"',
        f'CREATE ROLE "{hold}" LOGIN',
    )
    try:
        yield Roles(
            postgres_url,
            group,
            serve,
            _as(postgres_url, serve),
            hold,
            _as(postgres_url, hold),
        )
    finally:
        for role in (serve, hold, group):
            _owner(postgres_url, f'DROP OWNED BY "{role}"', f'DROP ROLE IF EXISTS "{role}"')
        _owner(postgres_url, f'GRANT TEMPORARY ON DATABASE "{database}" TO PUBLIC')


def _migrate(url: str, tmp_path: Path, *args: str) -> Any:
    env = {
        "BREAKGLASS_AUDIT__DATABASE_URL": url,
        "BREAKGLASS_SERVE__DATABASE_URL": url,
        "BREAKGLASS_STATE_DIR": str(tmp_path / "owner-state"),
    }
    return CliRunner().invoke(main, ["db", "migrate", *args], env=env)


def _granted(url: str, role: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """``({(table, privilege)}, {(table, column)} updatable)`` held by ``role`` itself."""
    tables = _owner(
        url,
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
        f" WHERE grantee = '{role}'",
    )
    columns = _owner(
        url,
        "SELECT table_name, column_name FROM information_schema.column_privileges"
        f" WHERE grantee = '{role}' AND privilege_type = 'UPDATE'",
    )
    return {(t, p) for t, p in tables}, {(t, c) for t, c in columns}


def _expected(names: tuple[str, ...]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    grants = tables_of(names)
    return (
        {(t.table, p) for t in grants for p in t.privileges},
        {(t.table, c) for t in grants for c in t.update},
    )


def test_db_migrate_grants_exactly_the_table_and_a_rerun_takes_back_the_rest(
    roles: Roles, tmp_path: Path
) -> None:
    url = roles.owner
    done = _migrate(url, tmp_path, "--role", roles.group, "--role", f"{roles.hold}:hold")
    assert done.exit_code == 0, done.output
    assert f"role {roles.group}: granted audit, notify, serve, hold" in done.output
    assert f"role {roles.hold}: granted hold" in done.output
    again = _migrate(url, tmp_path, "--role", roles.group, "--role", f"{roles.hold}:hold", "--json")
    assert again.exit_code == 0, again.output  # idempotent
    report = json.loads(again.output)
    assert report["ok"] is True
    assert report["audit"]["schema_version"] == 2
    assert report["roles"] == [
        {"role": roles.group, "granted": list(NAMES)},
        {"role": roles.hold, "granted": ["hold"]},
    ]

    assert _granted(url, roles.group) == _expected(NAMES)
    assert _granted(url, roles.hold) == _expected(("hold",))
    assert _granted(url, roles.serve) == (set(), set())  # the login role holds nothing itself
    privileges = {p for _, p in _granted(url, roles.group)[0]}
    assert privileges == {"SELECT", "INSERT", "DELETE"}  # never TRUNCATE, TRIGGER, REFERENCES
    assert {t for t, p in _granted(url, roles.group)[0] if p == "DELETE"} == set(EXPIRING)
    for table in EVIDENCE:
        assert not any(t == table for t, _ in _granted(url, roles.group)[1]), table
    for sequence in ("audit_problems_seq_seq", "notify_attempts_seq_seq"):
        ((usage, update),) = _owner(
            url,
            f"SELECT has_sequence_privilege('{roles.group}', '{sequence}', 'USAGE'),"
            f" has_sequence_privilege('{roles.group}', '{sequence}', 'UPDATE')",
        )
        assert (usage, update) == (True, False)
    ((owned,),) = _owner(
        url,
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
        f" WHERE r.rolname IN ('{roles.group}', '{roles.serve}', '{roles.hold}')",
    )
    assert owned == 0

    # Something granted by hand (or once asked for) does not survive a re-run.
    _owner(
        url,
        f'GRANT DELETE, TRUNCATE ON held_decisions TO "{roles.hold}"',
        f'GRANT SELECT ON audit_records TO "{roles.hold}"',
        f'GRANT UPDATE ON serve_suspensions TO "{roles.group}"',
    )
    assert (
        _migrate(url, tmp_path, "--role", f"{roles.hold}:hold", "--role", roles.group).exit_code
        == 0
    )
    assert _granted(url, roles.hold) == _expected(("hold",))
    assert _granted(url, roles.group) == _expected(NAMES)

    # The old command still grants the audit writer's share (and touches nothing else).
    old = CliRunner().invoke(
        main,
        ["audit", "migrate", "--writer", roles.hold],
        env={"BREAKGLASS_AUDIT__DATABASE_URL": url},
    )
    assert old.exit_code == 0, old.output
    tables, columns = _granted(url, roles.hold)
    audit_tables, audit_columns = _expected(("audit",))
    hold_tables, hold_columns = _expected(("hold",))
    assert (tables, columns) == (audit_tables | hold_tables, audit_columns | hold_columns)

    unknown = _migrate(url, tmp_path, "--role", f"{roles.hold}:billing")
    assert unknown.exit_code == 1
    assert "no component 'billing': choose from audit, notify, serve, hold" in unknown.output
    as_json = _migrate(url, tmp_path, "--role", f"{roles.hold}:billing", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["error"]["message"].startswith("no component 'billing'")


POLICY_GATE = """
[resume]
approvals = 1
halter_may_approve = false

[[resume.checklist]]
id = "root-cause"
text = "Root cause identified"
answer = "required"
"""


def _serve_as(roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str) -> Any:
    """serve with both its databases reached as the least-privileged login role."""
    (tmp_path / "policy.toml").write_text(policy, encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    monkeypatch.setenv("BREAKGLASS_AUDIT__DATABASE_URL", roles.serve_url)
    serve = ServeSettings(database_url=SecretStr(roles.serve_url), token_refresh=0.2)
    return running_serve(tmp_path, local_settings(tmp_path), serve)


def test_serve_notify_resume_and_hold_run_as_the_runtime_role_which_cannot_touch_evidence(  # noqa: PLR0915 -- one story
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receivers: Receivers
) -> None:
    done = _migrate(roles.owner, tmp_path, "--role", roles.group, "--role", f"{roles.hold}:hold")
    assert done.exit_code == 0, done.output
    holds = HoldStore(PostgresServeStore(SecretStr(roles.hold_url)))
    with _serve_as(roles, tmp_path, monkeypatch, notify_toml(receivers) + POLICY_GATE) as serve:
        _, serve.tokens["approver-2"] = serve.server.services.tokens.create(
            "approver-2", Role.APPROVER, by="test setup"
        )
        assert serve.wait_active(True)
        with serve.client(headers={"Authorization": "Bearer bgt_wrong_wrong"}) as stranger:
            assert stranger.get("/v1/status").status_code == 401  # counted for every replica
        with serve.client("admin") as admin:
            # Made, then raised: an INSERT, then an UPDATE of the generation.
            answers = [
                admin.post("/v1/sessions/revocations", json={"person": "x@example.com"})
                for _ in range(2)
            ]
            assert [a.status_code for a in answers] == [200, 200], answers[-1].text
            assert answers[-1].json()["generation"] == 2
        with serve.client("halter") as c:
            halted = c.post(
                "/v1/halt", json={"reason": "scores drifted"}, headers={"Idempotency-Key": "h-1"}
            )
            assert halted.status_code == 200, halted.text
            assert not halted.json().get("problems"), halted.json()
            sid = halted.json()["suspension_id"]
            replay = c.post(
                "/v1/halt", json={"reason": "scores drifted"}, headers={"Idempotency-Key": "h-1"}
            )
            assert replay.headers["idempotent-replayed"] == "true"
        assert serve.wait_active(False)

        # The page went out, was delivered, and is acknowledged.
        assert wait_until(lambda: receivers.pd_incidents == [f"breakglass/{sid}/on-call"])
        with serve.client("viewer") as c:
            assert wait_until(
                lambda: c.get(f"/v1/notifications/{sid}").json()["groups"][0]["delivered_at"]
            )
            ack = c.post(f"/v1/notifications/{sid}/ack", json={"group": "on-call"})
            assert ack.status_code == 200, ack.text
            assert ack.json()["new"] is True

        # The inference service holds a decision with its own, narrower role.
        held = holds.hold("credit-decision", {"applicant": "a-1"}, because="halted", key="k-1")
        assert holds.hold("credit-decision", {}, because="again", key="k-1").ticket == held.ticket

        with serve.client("approver") as a1, serve.client("approver-2") as a2:
            refused = a1.post("/v1/resume", json={"reason": "fixed"})
            assert refused.status_code == 409, refused.text
            tick = a1.post("/v1/resume/checklist/root-cause", json={"answer": "stale join"})
            assert tick.status_code == 200, tick.text
            retick = a1.post("/v1/resume/checklist/root-cause", json={"answer": "a stale join"})
            assert retick.status_code == 200, retick.text  # re-done in place: UPDATE (at, data)
            assert a2.post("/v1/resume/approvals", json={}).status_code == 200
            resumed = a2.post(
                "/v1/resume", json={"reason": "fixed", "classification": "precautionary"}
            )
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["suspension_id"] == sid, resumed.json()
            released = a2.post(
                "/v1/held/release", json={"tickets": [held.ticket], "reason": "reviewed"}
            )
            assert released.status_code == 200, released.text
            assert released.json()["changed"] == [held.ticket]
        assert serve.wait_active(True)
        assert holds.mark_delivered(held.ticket)
        assert wait_until(lambda: not receivers.pd_alerts)  # the resume resolved the page
    holds.db.close()

    # Everything landed, written by the runtime role.
    rows = dict(
        _owner(
            roles.owner,
            "SELECT 'records', count(*) FROM audit_records"
            " UNION ALL SELECT 'record', count(*) FROM audit_records"
            "  WHERE vendor_event_type = 'suspension-record'"
            " UNION ALL SELECT 'acks', count(*) FROM notify_acks"
            " UNION ALL SELECT 'attempts', count(*) FROM notify_attempts"
            " UNION ALL SELECT 'closed', count(*) FROM serve_suspensions WHERE closed_at IS NOT NULL"
            " UNION ALL SELECT 'delivered', count(*) FROM held_decisions WHERE state = 'delivered'"
            " UNION ALL SELECT 'failures', count(*) FROM serve_login_failures"
            " UNION ALL SELECT 'ended', sum(generation) FROM serve_session_revocations",
        )
    )
    assert rows["ended"] == 2, rows
    assert rows["record"] == 1, rows
    assert rows["acks"] == rows["closed"] == rows["delivered"] == rows["failures"] == 1, rows
    assert rows["attempts"] >= 2, rows  # the page and its resolve

    _the_role_cannot_touch_evidence(roles)
    after = dict(_owner(roles.owner, "SELECT 'records', count(*) FROM audit_records"))
    assert after["records"] == rows["records"]


def _the_role_cannot_touch_evidence(roles: Roles) -> None:
    attacks = [
        *(f"UPDATE {t} SET {_a_column(roles.owner, t)} = NULL" for t in EVIDENCE),
        *(f"DELETE FROM {t}" for t in EVERY_TABLE if t not in EXPIRING),
        *(f"TRUNCATE {t}" for t in EVERY_TABLE),
        *(f"ALTER TABLE {t} ADD COLUMN x int" for t in ("audit_records", "serve_suspensions")),
        *(f"DROP TABLE {t}" for t in ("notify_acks", "held_decisions")),
        # Who opened a suspension and why, what a page said, a token's role: never rewritten.
        "UPDATE serve_suspensions SET reason = 'nothing happened', opened_by = 'nobody'",
        "UPDATE notify_outbox SET context = '{}'",
        "UPDATE serve_tokens SET role = 'admin'",
        "UPDATE serve_session_revocations SET person = 'someone else'",
        "UPDATE held_decisions SET payload = '{}'",
        "UPDATE audit_cursors SET provider = 'x'",
        # The append-only triggers stay on.
        "ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only",
        "ALTER TABLE audit_records DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_records_no_truncate ON audit_records",
        "CREATE OR REPLACE FUNCTION breakglass_audit_append_only() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "SET session_replication_role = replica",
        "CREATE TABLE audit_shadow (x int)",
        "ALTER TABLE audit_records OWNER TO CURRENT_USER",
    ]
    for url in (roles.serve_url, roles.hold_url):
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in attacks:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)  # test constants


def _a_column(url: str, table: str) -> str:
    ((column,),) = _owner(
        url,
        "SELECT column_name FROM information_schema.columns"
        f" WHERE table_name = '{table}' ORDER BY ordinal_position LIMIT 1",
    )
    return str(column)


def test_a_missing_grant_is_one_line_naming_table_and_privilege_and_never_active(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _migrate(roles.owner, tmp_path, "--role", roles.group).exit_code == 0
    _owner(
        roles.owner,
        f'REVOKE INSERT ON serve_suspension_entries FROM "{roles.group}"',
        f'REVOKE INSERT ON notify_acks FROM "{roles.group}"',
    )
    with _serve_as(roles, tmp_path, monkeypatch, POLICY_GATE) as serve:
        assert serve.wait_active(True)
        with serve.client("halter") as c:
            assert c.post("/v1/halt", json={"reason": "drift"}).status_code == 200
        assert serve.wait_active(False)
        with serve.client("approver") as c:
            tick = c.post("/v1/resume/checklist/root-cause", json={"answer": "a stale join"})
            refused = c.post("/v1/resume", json={"reason": "fine"})
        # Still halted: the tick could not be kept, so the gate stays shut.
        assert refused.status_code == 409, refused.text
        assert not serve.wait_active(True, timeout=1.0)
    assert tick.status_code == 503, tick.text
    detail = tick.json()["detail"]
    assert f"role {roles.serve} lacks INSERT on serve_suspension_entries" in detail, detail
    assert f"`breakglass db migrate --role {roles.serve}`" in detail
    assert "\n" not in detail

    # Notifications (the audit database): the same one line.
    outbox = Outbox(PostgresAuditStore(SecretStr(roles.serve_url)))
    try:
        with pytest.raises(AuditStoreError) as info:
            outbox.acknowledge(Ack("s-1", "on-call", "console", "token:viewer-1", 1.0))
    finally:
        outbox.store.close()
    assert f"role {roles.serve} lacks INSERT on notify_acks" in str(info.value)

    # The CLI: one line, exit 1, no traceback.
    _owner(roles.owner, f'REVOKE SELECT ON serve_tokens FROM "{roles.group}"')
    env = {
        "BREAKGLASS_SERVE__DATABASE_URL": roles.serve_url,
        "BREAKGLASS_STATE_DIR": str(tmp_path / "cli-state"),
    }
    listed = CliRunner().invoke(main, ["serve", "token", "list"], env=env)
    assert listed.exit_code == 1
    lines = listed.output.strip().splitlines()
    assert len(lines) == 1, listed.output
    assert lines[0].startswith("breakglass serve: error: serve store ")
    assert f"role {roles.serve} lacks SELECT on serve_tokens" in lines[0]
    assert "Traceback" not in listed.output


def test_the_runtime_role_on_an_empty_database_is_told_to_migrate(roles: Roles) -> None:
    from breakglass.errors import ServeStoreError

    store = PostgresServeStore(SecretStr(roles.serve_url))
    with pytest.raises(ServeStoreError) as info:
        store.tokens()
    text = str(info.value)
    assert "may not create tables: run `breakglass db migrate` once as the database owner" in text
    assert "\n" not in text


def test_the_deployment_page_shows_the_grants_table_as_the_code_has_it() -> None:
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "deployment.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| ") and "`" in line]
    expected = [
        f"| {c.name} | `{t.table}` | {t.describe()} | {'yes' if t.evidence else ''} | {t.why} |"
        for c in COMPONENTS
        for t in c.tables
    ]
    assert [r for r in rows if r.split("|")[1].strip() in NAMES] == expected


def test_db_migrate_on_sqlite_makes_the_files_and_refuses_roles(tmp_path: Path) -> None:
    env = {
        "BREAKGLASS_AUDIT__DATABASE_URL": None,
        "BREAKGLASS_SERVE__DATABASE_URL": None,
        "BREAKGLASS_STATE_DIR": str(tmp_path),
    }
    done = CliRunner().invoke(main, ["db", "migrate"], env=env)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "audit.db").exists()
    assert (tmp_path / "serve.db").exists()
    refused = CliRunner().invoke(main, ["db", "migrate", "--role", "breakglass_runtime"], env=env)
    assert refused.exit_code == 1
    assert "--role is for PostgreSQL" in refused.output


def test_a_role_that_could_not_close_the_suspension_is_refused_the_resume_before_any_target(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing comes after the targets are on: a grant missing there is found first."""
    assert _migrate(roles.owner, tmp_path, "--role", roles.group).exit_code == 0
    _owner(
        roles.owner,
        f'REVOKE UPDATE (closed_at, closed_by, close_reason, open_marker) ON serve_suspensions FROM "{roles.group}"',
    )
    with _serve_as(roles, tmp_path, monkeypatch, POLICY_GATE) as serve:
        _, serve.tokens["approver-2"] = serve.server.services.tokens.create(
            "approver-2", Role.APPROVER, by="test setup"
        )
        started = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
        assert serve.wait_active(True)
        with serve.client("halter") as c:
            assert c.post("/v1/halt", json={"reason": "drift"}).status_code == 200
        assert serve.wait_active(False)
        with serve.client("approver") as a1, serve.client("approver-2") as a2:
            tick = a1.post("/v1/resume/checklist/root-cause", json={"answer": "a stale join"})
            assert tick.status_code == 200, tick.text
            assert a2.post("/v1/resume/approvals", json={}).status_code == 200
            refused = a2.post(
                "/v1/resume", json={"reason": "fixed", "classification": "precautionary"}
            )
        assert not serve.wait_active(True, timeout=1.0)
    ((still_open,),) = _owner(
        roles.owner, "SELECT count(*) FROM serve_suspensions WHERE closed_at IS NULL"
    )
    assert still_open == 1
    assert refused.status_code == 409, refused.text
    text = refused.text
    assert (
        f"role {roles.serve} lacks UPDATE (closed_at, closed_by, close_reason, open_marker)" in text
    )
    assert "on serve_suspensions" in text
    assert len(started) == 1, started  # said once, at start, before anyone needed it
    assert "serve_suspensions" in started[0]


def test_drill_evidence_is_recorded_by_the_runtime_role_and_stays_as_written(
    roles: Roles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breakglass.drill.evidence import record_in_audit

    assert _migrate(roles.owner, tmp_path, "--role", roles.group).exit_code == 0
    monkeypatch.setenv("BREAKGLASS_AUDIT__DATABASE_URL", roles.serve_url)
    record_in_audit(
        local_settings(tmp_path),
        kind="drill-report",
        drill_id="drill-20261205T130000Z-ab12",
        actor="technical-owner",
        comment="drill passed",
        raw={"evidence_hash": "0" * 64},
        environment="production",
    )
    ((stored,),) = _owner(
        roles.owner, "SELECT count(*) FROM audit_records WHERE vendor_event_type = 'drill-report'"
    )
    assert stored == 1
    with psycopg.connect(roles.serve_url, autocommit=True) as conn:
        for statement in (
            "UPDATE audit_records SET comment = 'drill failed'",
            "DELETE FROM audit_records WHERE vendor_event_type = 'drill-report'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # test constants
