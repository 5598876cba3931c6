"""The durable outbox and the notifier, on SQLite and on a real PostgreSQL, against local receivers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from breakglass.audit.postgres import PostgresAuditStore
from breakglass.audit.recorder import AuditRecorder
from breakglass.audit.sqlite import SqliteAuditStore
from breakglass.audit.store import AuditQuery
from breakglass.notify.notifier import Notifier
from breakglass.notify.outbox import Attempt, NewNotification, Outbox
from breakglass.policy import parse_policy
from tests.audit_support import reset_postgres
from tests.notify_receivers import ROUTING_KEY, WEBHOOK_SECRET, Planned, Receivers, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from breakglass.audit.store import AuditStore
    from breakglass.notify.config import NotifyPolicy

pytest_plugins = ["tests.audit_fixtures", "tests.notify_fixtures"]
pytestmark = pytest.mark.live

FAST = {"first_delay": "100ms", "max_delay": "300ms", "timeout": "3s", "max_attempts": 5}


def reset_notify(url: str) -> None:
    import psycopg

    reset_postgres(url)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS notify_outbox, notify_attempts, notify_deadlines, notify_acks,"
            " notify_events, notify_schema_version"
        )


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], AuditStore]]:
    """Opens stores on one database (several, as several replicas would)."""
    opened: list[AuditStore] = []
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        reset_notify(url)

        def make() -> AuditStore:
            opened.append(PostgresAuditStore(SecretStr(url)))
            return opened[-1]
    else:

        def make() -> AuditStore:
            opened.append(SqliteAuditStore(tmp_path / "audit.db"))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


def policy_for(receivers: Receivers, **notify: Any) -> NotifyPolicy:
    groups = {
        "on-call": {
            "kind": "on-call",
            "timeframe": "immediate",
            "ack_within": "1s",
            "escalate_to": ["management"],
            "channels": [
                {
                    "type": "pagerduty",
                    "routing_key": ROUTING_KEY,
                    "url": f"{receivers.url}/v2/enqueue",
                },
                {"type": "slack", "webhook_url": f"{receivers.url}/slack/T/B/oncall"},
            ],
        },
        "dpo": {
            "kind": "dpo-liaison",
            "within": "4h",
            "when": {"personal_data_affected": True},
            "channels": [
                {"type": "webhook", "url": f"{receivers.url}/hook/dpo", "secret": WEBHOOK_SECRET}
            ],
        },
        "management": {
            "kind": "senior-management",
            "within": "4h",
            "when": {"business_continuity": True},
            "channels": [{"type": "slack", "webhook_url": f"{receivers.url}/slack/T/B/mgmt"}],
        },
    }
    data = {
        "system": "Credit scoring",
        "console_url": "https://console.example.org",
        "ack_secret": "k" * 40,
        "delivery": FAST,
        "groups": groups,
        **notify,
    }
    return parse_policy({"notify": data}).notify


def halt(notifier: Notifier, sid: str = "s-1", **flags: Any) -> list[str]:
    return notifier.halted(
        suspension_id=sid,
        actor="ana@example.org",
        reason="drift in approval rates",
        since=datetime.now(UTC),
        **flags,
    )


def states(notifier: Notifier, sid: str = "s-1") -> dict[str, str]:
    return {n.id: n.state for n in notifier.outbox.notifications(sid)}


def test_conditions_choose_the_groups(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    notifier = Notifier(policy_for(receivers), Outbox(make_store()))
    assert halt(notifier) == ["on-call"]
    assert halt(notifier, "s-2", personal_data_affected=True, business_continuity=True) == [
        "on-call",
        "dpo",
        "management",
    ]
    assert set(states(notifier, "s-2")) == {
        "s-2/halt/on-call/pagerduty",
        "s-2/halt/on-call/slack",
        "s-2/halt/dpo/webhook",
        "s-2/halt/management/slack",
    }


def test_enqueue_twice_stores_once(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    outbox = Outbox(make_store())
    row = NewNotification("s/halt/g/c", "s", "halt", "g", "c", "slack", "{}")
    assert outbox.enqueue([row], now=1.0) == 1
    assert outbox.enqueue([row], now=2.0) == 0
    assert len(outbox.notifications("s")) == 1


def test_two_replicas_never_claim_the_same_row(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    first, second = Outbox(make_store()), Outbox(make_store())
    rows = [
        NewNotification(f"s/halt/g/{i}", "s", "halt", "g", str(i), "slack", "{}") for i in range(40)
    ]
    first.enqueue(rows, now=1.0)
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def claim(outbox: Outbox, name: str) -> None:
        while batch := outbox.claim(name, now=2.0, lease_s=60, limit=3):
            taken[name] += [n.id for n in batch]

    threads = [
        threading.Thread(target=claim, args=(o, n)) for o, n in ((first, "a"), (second, "b"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(taken["a"] + taken["b"]) == sorted(r.id for r in rows)
    assert not set(taken["a"]) & set(taken["b"])


def test_pagerduty_failing_twice_is_delivered_on_the_third_attempt(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    receivers.plan(
        "/v2/enqueue",
        Planned(500, "Internal Server Error"),
        Planned(429, '{"status":"throttle event"}', {"Retry-After": "0"}),
    )
    store = make_store()
    recorder = AuditRecorder(lambda: store, backend="local", flag_key="system-active")
    notifier = Notifier(policy_for(receivers), Outbox(store), recorder=recorder)
    notifier.start()
    try:
        halt(notifier)
        assert wait_until(lambda: states(notifier)["s-1/halt/on-call/pagerduty"] == "accepted"), (
            states(notifier)
        )
        assert wait_until(lambda: states(notifier)["s-1/halt/on-call/slack"] == "delivered")
    finally:
        notifier.close()
    assert receivers.pd_incidents == ["breakglass/s-1/on-call"]
    attempts = [a for a in notifier.outbox.attempts("s-1") if a.outbox_id.endswith("pagerduty")]
    assert [(a.attempt, a.status, a.outcome) for a in attempts] == [
        (1, 500, "retry"),
        (2, 429, "retry"),
        (3, 202, "accepted"),
    ]
    assert attempts[-1].response_id == "breakglass/s-1/on-call"
    assert all(a.latency_ms > 0 for a in attempts)
    # Every attempt is in the audit chain too.
    assert recorder.flush(10)
    records = [
        r
        for r in store.iter_rows(AuditQuery(providers=("breakglass",)))
        if r.vendor_event_type == "notification-attempt"
    ]
    assert [r.id for r in records if "pagerduty" in r.id] == [
        f"breakglass:notify:s-1/halt/on-call/pagerduty:{n}" for n in (1, 2, 3)
    ]


def test_never_retry_statuses_are_tried_once(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    receivers.plan("/slack/T/B/oncall", Planned(404, "channel_not_found"))
    notifier = Notifier(policy_for(receivers), Outbox(make_store()))
    notifier.start()
    try:
        halt(notifier)
        assert wait_until(lambda: states(notifier)["s-1/halt/on-call/slack"] == "failed")
        time.sleep(0.5)
    finally:
        notifier.close()
    assert len(receivers.at("/slack/T/B/oncall")) == 1
    (status,) = [g for g in notifier.status("s-1") if g.group == "on-call"]
    assert status.undelivered == 1
    assert "channel_not_found" in str([c.detail for c in status.channels])


def test_gives_up_after_max_attempts_and_says_so(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    receivers.plan("/slack/T/B/oncall", *[Planned(503, "") for _ in range(10)])
    notifier = Notifier(policy_for(receivers), Outbox(make_store()))
    notifier.start()
    try:
        halt(notifier)
        assert wait_until(lambda: states(notifier)["s-1/halt/on-call/slack"] == "failed")
    finally:
        notifier.close()
    assert len(receivers.at("/slack/T/B/oncall")) == FAST["max_attempts"]
    row = next(n for n in notifier.outbox.notifications("s-1") if n.id == "s-1/halt/on-call/slack")
    assert row.last_detail is not None
    assert row.last_detail.startswith("gave up after 5 attempts")


def test_unacknowledged_group_is_escalated_and_acknowledged_one_is_not(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    notifier = Notifier(policy_for(receivers), Outbox(make_store()), poll_interval=0.1)
    halt(notifier, "s-acked")
    assert notifier.acknowledge("s-acked", "on-call", actor="bob", via="console")
    halt(notifier, "s-silent")
    notifier.start()
    try:
        assert wait_until(lambda: len(receivers.at("/slack/T/B/mgmt")) >= 1)
        time.sleep(1.5)
    finally:
        notifier.close()
    mgmt = receivers.at("/slack/T/B/mgmt")
    assert len(mgmt) == 1
    assert "ESCALATION: on-call has not acknowledged" in mgmt[0].json()["blocks"][0]["text"]["text"]
    assert "s-silent" in mgmt[0].body.decode()
    deadlines = {
        d.suspension_id: d.state
        for s in ("s-acked", "s-silent")
        for d in notifier.outbox.deadlines(s)
    }
    assert deadlines == {"s-acked": "acknowledged", "s-silent": "escalated"}
    acked = notifier.status("s-acked")[0]
    assert acked.acknowledged_by == "bob"
    assert acked.acknowledged_via == "console"
    assert acked.sent_at is not None
    assert acked.delivered_at is not None


def test_resume_resolves_and_never_overtakes_the_halt(
    receivers: Receivers, make_store: Callable[[], AuditStore]
) -> None:
    receivers.plan("/v2/enqueue", Planned(503, ""))
    notifier = Notifier(policy_for(receivers), Outbox(make_store()))
    halt(notifier)
    assert (
        notifier.resumed(suspension_id="s-1", actor="carla", reason="fixed", at=datetime.now(UTC))
        == 2
    )
    notifier.start()
    try:
        assert wait_until(
            lambda: all(s in ("accepted", "delivered") for s in states(notifier).values())
        )
    finally:
        notifier.close()
    actions = [r.json()["event_action"] for r in receivers.at("/v2/enqueue")]
    assert actions == ["trigger", "trigger", "resolve"]
    assert not receivers.pd_alerts
    slack = [r.json()["blocks"][0]["text"]["text"] for r in receivers.at("/slack/T/B/oncall")]
    assert slack == ["HALTED: Credit scoring is suspended", "RESUMED: Credit scoring may run again"]
    assert {d.state for d in notifier.outbox.deadlines("s-1")} == {"closed"}


def test_a_clock_stepped_back_during_backoff_does_not_hold_retries(
    make_store: Callable[[], AuditStore],
) -> None:
    """A retry scheduled before the wall clock went back an hour is due at once, not an hour late."""
    outbox = Outbox(make_store())
    outbox.enqueue(
        [NewNotification("s/halt/g/c", "s", "halt", "g", "c", "slack", "{}")], now=10_000.0
    )
    (row,) = outbox.claim("w:1:a", now=10_000.0, lease_s=40, limit=5, horizon_s=660)
    attempt = Attempt(
        row.id, "s", 1, 10_000.0, 5.0, 503, "retry", None, "Slack answered 503", "w:1:a"
    )
    assert outbox.finish(attempt, state="pending", next_attempt_at=10_002.0)
    assert outbox.claim("w:1:a", now=10_001.0, lease_s=40, limit=5, horizon_s=660) == []
    stepped_back = 10_001.0 - 3600
    (again,) = outbox.claim("w:1:a", now=stepped_back, lease_s=40, limit=5, horizon_s=660)
    assert again.attempts == 2
    # A lease taken before the step is not held for an hour either.
    assert outbox.claim("w:2:b", now=stepped_back + 1, lease_s=40, limit=5, horizon_s=660) == []
    (taken,) = outbox.claim("w:2:b", now=stepped_back - 3600, lease_s=40, limit=5, horizon_s=660)
    assert taken.attempts == 3
