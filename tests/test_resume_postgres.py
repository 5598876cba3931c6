"""The gate and the held decisions on PostgreSQL, as two serve replicas see them.

Two stores on one database stand for two replicas: a tick made on one counts on the other,
the same person approving on both is refused on the second (even at the same instant), and a
decision held through one is reviewed through the other.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from breakglass.errors import ServeStoreError
from breakglass.hold import HoldStore
from breakglass.policy import parse_policy
from breakglass.resume.gate import GateError, PolicyGate
from breakglass.serve.auth import Identity, Role
from breakglass.serve.store import PostgresServeStore, Suspension

if TYPE_CHECKING:
    from collections.abc import Iterator

pytest_plugins = ["tests.audit_fixtures"]
pytestmark = pytest.mark.live

ALICE = Identity("oidc:https://idp.example#alice", "alice@example.org", Role.APPROVER, "oidc")
BOB = Identity("oidc:https://idp.example#bob", "bob@example.org", Role.APPROVER, "oidc")
HALTER = Identity("token:h1", "on-call", Role.HALTER, "token")


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[PostgresServeStore, PostgresServeStore]]:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS serve_suspensions, serve_suspension_entries, held_decisions"
        )
    a = PostgresServeStore(SecretStr(postgres_url))
    b = PostgresServeStore(SecretStr(postgres_url))
    yield a, b
    a.close()
    b.close()


def _open(store: PostgresServeStore) -> str:
    now = datetime.now(UTC)
    return store.record_halt(
        Suspension(
            id="pg-1",
            opened_at=now,
            opened_by="token:on-call",
            reason="drift",
            incident=None,
            personal_data_affected=False,
            business_continuity=False,
            halts=[{"at": now.isoformat(), "actor": HALTER.to_dict()}],
            targets={},
        )
    )


def test_two_replicas_share_one_gate(
    replicas: tuple[PostgresServeStore, PostgresServeStore],
) -> None:
    a, b = replicas
    policy = parse_policy(
        {"resume": {"approvals": 2, "checklist": [{"id": "root-cause", "text": "Root cause"}]}}
    ).resume
    gate_a, gate_b = PolicyGate(policy, a), PolicyGate(policy, b)
    sid = _open(a)
    assert gate_b.view().suspension is not None
    gate_a.tick(ALICE, "root-cause", "a stale join")
    assert gate_b.view().missing == ["approvals: 0 of 2 (need 2 more distinct approvers)"]

    # The same person on both replicas at the same instant: exactly one approval counts.
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def approve(gate: PolicyGate) -> None:
        start.wait()
        try:
            gate.approve(ALICE)
            outcomes.append("approved")
        except GateError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(g,)) for g in (gate_a, gate_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum("has approved this resume already" in o for o in outcomes) == 1, outcomes
    assert outcomes.count("approved") == 1
    gate_b.approve(BOB)
    assert gate_a.view().missing == []
    assert [x["by"] for x in gate_a.view().approvals] == ["alice@example.org", "bob@example.org"]
    assert sid == "pg-1"


def test_held_on_one_replica_reviewed_on_the_other(
    replicas: tuple[PostgresServeStore, PostgresServeStore],
) -> None:
    a, b = replicas
    held_a, held_b = HoldStore(a), HoldStore(b)
    first = held_a.hold("letter", {"to": "a-1"}, because="halted", key="letter-a-1")
    again = held_b.hold("letter", {"to": "a-1"}, because="halted", key="letter-a-1")
    assert again.ticket == first.ticket  # idempotent across replicas
    second = held_a.hold("letter", {"to": "a-2"}, because="halted")
    assert {h.ticket for h in held_b.decisions()} == {first.ticket, second.ticket}
    assert held_b.review("release", tickets=[first.ticket], actor="alice", reason="ok") == [
        first.ticket
    ]
    assert held_a.review("release", tickets=[first.ticket], actor="bob", reason="late") == []
    assert held_a.mark_delivered(first.ticket)
    assert not held_b.mark_delivered(second.ticket)  # never released
    delivered = held_b.get(first.ticket)
    assert delivered is not None
    assert (delivered.state, delivered.reviewed_by) == ("delivered", "alice")


def test_store_away_is_a_clear_error() -> None:
    gone = PostgresServeStore(
        SecretStr("postgresql://nobody:secret-pw@127.0.0.1:1/x"), connect_timeout=1
    )
    with pytest.raises(ServeStoreError) as info:
        HoldStore(gone).hold("letter", {"to": "x"}, because="halted")
    assert "secret-pw" not in str(info.value)
    assert "127.0.0.1:1/x" in str(info.value)
