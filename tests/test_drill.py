"""``breakglass drill``: the whole procedure on a loopback environment, and its signed evidence.

serve on the embedded local provider, three readers (two guarding a sample
inference service) reporting to it, the notification chain sending signed
webhooks to local receivers that acknowledge through the link's button, and
the resumption gate of the policy file walked by the participants. The
first page of the PDF is saved under ``build/test-output/drill/`` so a
person can look at it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from breakglass.audit.signing import generate, load_public_key, load_signer
from breakglass.audit.store import AuditQuery, open_audit_store
from breakglass.bridge import Bridge
from breakglass.cli import main
from breakglass.clock import SYSTEM_CLOCK, isoformat_ms
from breakglass.drill.cli import run_and_record
from breakglass.drill.evidence import (
    FILES,
    SIGNATURE_SCHEMA,
    due,
    evidence_hash,
    history,
    verify_evidence,
    write_evidence,
)
from breakglass.drill.local import local_environment
from breakglass.drill.runner import DrillRunner, reader_key
from breakglass.errors import ConfigurationError
from breakglass.local.store import LocalStore
from breakglass.policy import load_policy, parse_policy
from breakglass.reports.settings import ReportSettings
from breakglass.settings import LocalSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from breakglass.drill.local import LocalEnvironment

OUTPUT = Path(__file__).resolve().parents[1] / "build" / "test-output" / "drill"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[LocalEnvironment]:
    with local_environment(tmp_path / "env") as started:
        yield started


def _run(env: LocalEnvironment, lines: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    policy = load_policy(env.policy_path)
    return run_and_record(
        env.settings,
        policy,
        load_signer(env.signing_key),
        env.evidence_dir,
        progress=lambda phase, text: lines.append(f"{phase} {text}") if lines is not None else None,
    )


def _serving(env: LocalEnvironment) -> bool:
    headers = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    status = httpx.get(f"{env.serve_url}/v1/status", headers=headers, timeout=30).json()
    return bool(status["active"]) and status["suspension"] is None


def _why(data: dict[str, Any], env: LocalEnvironment) -> str:
    """What a failed drill saw, for the assertion message."""
    seen = [line for line in data["timeline"] if line["phase"] in ("halt", "alerts", "abort")]
    return json.dumps(
        {
            "deficiencies": data["deficiencies"],
            "notifications": data["notifications"],
            "timeline": seen,
            "received": env.receiver.received,
        },
        indent=1,
    )


def _verdicts(data: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in data["requirements"]}


def _first_page(pdf: Path, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    stem = OUTPUT / name
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(stem)],
        check=True,
        timeout=120,
    )
    return stem.with_suffix(".png")


@pytest.mark.live
def test_a_full_drill_passes_and_leaves_signed_evidence(env: LocalEnvironment) -> None:
    lines: list[str] = []
    data, folder = _run(env, lines)

    assert data["verdict"] == "passed", _why(data, env)
    assert _verdicts(data) == {
        "preflight": "pass",
        "halt-time": "pass",
        "drain": "pass",
        "alerts": "pass",
        "kill-switch": "not-planned",
        "resumption": "pass",
        "back": "pass",
    }
    # The real path: serve halted as the lead, three readers refused, traffic saw the 503s.
    assert data["halt"]["by"] == "drill-lead"
    assert len(data["readers"]) == 3
    assert all(0 <= r["halted_after_s"] <= 5 for r in data["readers"])
    traffic = data["traffic"][0]
    assert traffic["refused"] > 0
    assert traffic["dropped"] == traffic["leaked"] == 0
    assert traffic["drained"] + traffic["refused_on_arrival"] == traffic["in_flight_at_halt"]
    drain = next(r for r in data["requirements"] if r["id"] == "drain")
    assert (
        f"{traffic['in_flight_at_halt']} in flight ({traffic['drained']} drained, "
        f"{traffic['refused_on_arrival']} refused on arrival)" in drain["detail"]
    )
    assert traffic["in_flight_at_halt"] > 0, (traffic, data["timeline"][:20])  # warm clients
    assert traffic["served_after_resume"] > 0
    acked = {g["group"]: g for g in data["notifications"]}
    assert set(acked) == {"on-call", "governance-lead"}
    assert all(g["acknowledged_via"] == "link" for g in acked.values())
    assert [s["what"] for s in data["resumption"]["steps"]][-2:] == ["approval", "approval"]
    assert data["resumption"]["record"]["classification"] == "drill"
    assert _serving(env)
    assert any(line.startswith("readers 3 of 3 readers refusing") for line in lines)
    # Each reader is proven to read what serve halts, and none seen after the halt is not.
    assert [r["source_match"] for r in data["readers"]] == ["same"] * 3
    assert data["not_proven"] == []

    _check_evidence(env, data, folder)
    _check_history(env, data)


def _check_evidence(env: LocalEnvironment, data: dict[str, Any], folder: Path) -> None:
    # Every alert said it was a drill, in the title people see first.
    titles = [r["title"] for r in env.receiver.received]
    assert any(t.startswith("[DRILL] HALTED:") for t in titles), titles
    assert any(t.startswith("[DRILL] RESUMED:") for t in titles), titles
    assert all(t.startswith("[DRILL] ") for t in titles)

    # The evidence: JSON, self-contained HTML with two inline plots, a PDF, a signature.
    assert sorted(p.name for p in folder.iterdir()) == [*sorted(FILES), "signature.json"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert "src=" not in page
    assert "<link" not in page
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF-")
    shot = _first_page(folder / "report.pdf", "passed-drill-page-1")
    assert shot.stat().st_size > 10_000
    shutil.copy(folder / "report.html", OUTPUT / "passed-drill.html")

    key = load_public_key(env.public_key)
    assert verify_evidence(folder, key).ok

    # Recorded in the audit trail with the evidence hash.
    signature = json.loads((folder / "signature.json").read_text())
    store = open_audit_store(env.settings)
    try:
        rows = list(store.iter_rows(AuditQuery(providers=("breakglass-drill",))))
    finally:
        store.close()
    assert len(rows) == 1
    assert rows[0].vendor_event_type == "drill-report"
    raw = json.loads(rows[0].canonical)["raw"]
    assert raw["evidence_hash"] == signature["evidence_hash"]
    assert raw["verdict"] == "passed"


def _check_history(env: LocalEnvironment, data: dict[str, Any]) -> None:
    # history and due through the CLI.
    cli = CliRunner()
    common = ["--evidence-dir", str(env.evidence_dir), "--public-key", str(env.public_key)]
    listed = cli.invoke(main, ["drill", "history", *common])
    assert listed.exit_code == 0, listed.output
    assert "passed" in listed.output
    assert data["drill_id"] in listed.output
    assert cli.invoke(main, ["drill", "due", *common]).exit_code == 0
    overdue = cli.invoke(main, ["drill", "due", *common, "--interval-days", "0"])
    assert overdue.exit_code == 1
    assert overdue.output.startswith("DUE:")


@pytest.mark.live
def test_a_tampered_or_forged_report_is_detected(env: LocalEnvironment, tmp_path: Path) -> None:
    _, folder = _run(env)
    key = load_public_key(env.public_key)
    cli = CliRunner()

    def check(where: Path) -> tuple[int, str]:
        result = cli.invoke(
            main, ["drill", "verify", str(where), "--public-key", str(env.public_key)]
        )
        return result.exit_code, result.output

    assert check(folder)[0] == 0

    # One changed verdict in the JSON.
    tampered = tmp_path / "tampered" / folder.name
    shutil.copytree(folder, tampered)
    report = tampered / "report.json"
    doc = json.loads(report.read_text())
    doc["verdict"] = "failed" if doc["verdict"] == "passed" else "passed"
    report.write_text(json.dumps(doc, indent=2, sort_keys=True))
    code, out = check(tampered)
    assert code == 1
    assert "report.json was changed after signing" in out

    # A forger who recomputes every hash still cannot sign.
    forged = tmp_path / "forged" / folder.name
    shutil.copytree(tampered, forged)
    signature = json.loads((forged / "signature.json").read_text())
    signature["files"]["report.json"] = hashlib.sha256(report.read_bytes()).hexdigest()
    signature["evidence_hash"] = evidence_hash(signature["drill_id"], signature["files"])
    (forged / "signature.json").write_text(json.dumps(signature))
    result = verify_evidence(forged, key)
    assert result.problems == ["the signature is not valid (forged or altered)"]

    # A PDF swapped for another, a file removed: each named.
    swapped = tmp_path / "swapped" / folder.name
    shutil.copytree(folder, swapped)
    (swapped / "report.pdf").write_bytes(b"%PDF-1.4 another report")
    (swapped / "report.html").unlink()
    problems = verify_evidence(swapped, key).problems
    assert "report.pdf was changed after signing (SHA-256 differs)" in problems
    assert "report.html is missing" in problems

    # Another key's public half does not vouch for it.
    generate(tmp_path / "other.key", tmp_path / "other.pub")
    other = verify_evidence(folder, load_public_key(tmp_path / "other.pub"))
    assert not other.ok
    assert other.problems[0].startswith("signed with key")


@pytest.mark.live
def test_a_group_that_never_acknowledges_is_a_deficiency(tmp_path: Path) -> None:
    with local_environment(
        tmp_path / "env", silent=frozenset({"governance-lead"}), ack_within="3s"
    ) as env:
        data, folder = _run(env)
        assert _serving(env)  # the drill still walked the gate and resumed

    assert data["verdict"] == "failed"
    verdicts = _verdicts(data)
    assert verdicts["alerts"] == "fail"
    assert verdicts["halt-time"] == verdicts["resumption"] == verdicts["back"] == "pass"
    assert [d["text"] for d in data["deficiencies"]] == [
        "governance-lead: never acknowledged (timeframe 3 s)"
    ], _why(data, env)
    groups = {g["group"]: g for g in data["notifications"]}
    assert groups["governance-lead"]["delivered_after_s"] is not None
    assert groups["on-call"]["acknowledged_after_s"] is not None
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "not acknowledged" in page
    assert "governance-lead: never acknowledged" in page
    _first_page(folder / "report.pdf", "failed-drill-page-1")

    key = load_public_key(env.public_key)
    cli = CliRunner()
    common = ["--evidence-dir", str(env.evidence_dir), "--public-key", str(env.public_key)]
    # A failed drill does not count: the drill is still due.
    assert cli.invoke(main, ["drill", "due", *common]).exit_code == 1
    assert history(env.evidence_dir, key)[0].open == ["D1"]

    # The Technical Owner's remediation, tracked to closure.
    bad = cli.invoke(main, ["drill", "remediate", str(folder), "D9", "--action", "x", "--by", "o"])
    assert bad.exit_code == 1
    assert "has no deficiency 'D9'" in bad.output
    progress = ["--action", "paging policy for governance being changed", "--by", "owner"]
    assert (
        cli.invoke(main, ["drill", "remediate", str(folder), "D1", *progress, "--open"]).exit_code
        == 0
    )
    assert history(env.evidence_dir, key)[0].open == ["D1"]
    done = ["--action", "governance lead now on the pager rotation", "--by", "owner"]
    closed = cli.invoke(main, ["drill", "remediate", str(folder), "D1", *done])
    assert closed.exit_code == 0, closed.output
    entry = history(env.evidence_dir, key)[0]
    assert entry.open == []
    assert entry.verdict == "failed"  # remediation closes the deficiency, not the verdict
    assert verify_evidence(folder, key).ok  # remediation.jsonl sits beside the signed files


@pytest.mark.live
def test_ctrl_c_mid_drill_restores_and_still_reports(env: LocalEnvironment) -> None:
    policy = load_policy(env.policy_path)
    assert policy.drill is not None

    def progress(phase: str, text: str) -> None:
        del text
        if phase == "alerts":
            raise KeyboardInterrupt

    data = DrillRunner(policy.drill, policy, progress=progress).run()
    assert data["interrupted"] is True
    assert data["restore"] == {
        "needed": True,
        "restored": True,
        "detail": "resumed through the gate after the drill stopped early",
    }
    assert data["verdict"] == "failed"
    assert _verdicts(data)["alerts"] == "not-run"
    assert _serving(env)
    assert data["back"]["readers_back"] == 3


@pytest.mark.live
def test_a_failed_preflight_halts_nothing(env: LocalEnvironment, tmp_path: Path) -> None:
    text = env.policy_path.read_text().replace("count = 2", "count = 7")
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy).run()
    assert data["aborted"] == "pre-flight failed: nothing was halted"
    assert data["halt"] is None
    failed = [c for c in data["preflight"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["readers of credit-scoring-api reporting"]
    assert failed[0]["detail"] == "2 active, 7 must stop"
    assert _verdicts(data)["halt-time"] == "not-run"
    assert data["restore"] is None
    assert _serving(env)


def _post_report(env: LocalEnvironment, **fields: Any) -> str:
    """One reader's report through serve's API, as the environment's readers send theirs."""
    body = {
        "host": "gpu-9",
        "pid": 4242,
        "instance": "0ld",
        "role": "bridge",
        "provider": "local",
        "flag": "system-active",
        "active": True,
        "cause": "active",
        "sent_at": isoformat_ms(SYSTEM_CLOCK.now()),
        "seq": 1,
        "interval": 60.0,
        **fields,
    }
    headers = {"Authorization": f"Bearer {env.tokens['readers']}"}
    sent = httpx.post(f"{env.serve_url}/v1/reports", json=body, headers=headers, timeout=30)
    assert sent.status_code == 202, sent.text
    return f"{body['host']}/{body['pid']}/{body['instance']}"


def _reader_of(env: LocalEnvironment, store: Path, service: str) -> Bridge:
    """A real reader on ``store``, reporting to the environment's serve as ``service``."""
    LocalStore(store).write("system-active", value=True, actor="test", reason="another store")
    settings = env.settings.model_copy(
        update={
            "state_dir": store.parent / "reader-state",
            "local": LocalSettings(path=store, poll_interval=0.02),
        }
    )
    bridge = Bridge.from_settings(settings)
    bridge.report_settings = ReportSettings(
        url=env.serve_url, token=SecretStr(env.tokens["readers"]), interval=1.0, service=service
    )
    return bridge.start()


def _fleet_row(env: LocalEnvironment, match: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    fleet: dict[str, Any] = {}
    for _ in range(100):
        fleet = httpx.get(f"{env.serve_url}/v1/fleet", headers=headers, timeout=30).json()
        rows = [r for r in fleet["reader_list"] if r["source_match"] == match]
        if rows:
            return dict(rows[0])
        time.sleep(0.1)
    raise AssertionError(f"no reader marked {match} in {fleet}")


@pytest.mark.live
def test_readers_not_proven_to_stop_fail_the_preflight(
    env: LocalEnvironment, tmp_path: Path
) -> None:
    # One reader of another store in a planned service, and one older reader that names no source.
    other = _reader_of(env, tmp_path / "other" / "local.db", "credit-scoring-api")
    try:
        wrong = reader_key(_fleet_row(env, "another"))
        old = _post_report(env, service="batch-scorer")
        data, folder = _run(env)
    finally:
        other.close()
    assert data["halt"] is None
    assert data["aborted"] == "pre-flight failed: nothing was halted"
    assert data["verdict"] == "failed"
    failed = {c["check"]: c["detail"] for c in data["preflight"] if not c["ok"]}
    assert failed == {
        "readers of credit-scoring-api reporting": (
            "3 active, 2 must stop; 1 reads another source and will NOT stop when serve halts: "
            + wrong
        ),
        "readers of batch-scorer reporting": (
            "2 active, 1 must stop; 1 not proven to stop when serve halts (no source named: "
            f"an older reader, or a worker whose relay does not report): {old}"
        ),
    }
    # The signed evidence says it: each a deficiency (then the steps not run), JSON and page.
    texts = [d["text"] for d in json.loads((folder / "report.json").read_text())["deficiencies"]]
    assert texts[:2] == [f"{check}: {detail}" for check, detail in failed.items()]
    page = (folder / "report.html").read_text()
    assert f"will NOT stop when serve halts: {wrong}" in page
    assert verify_evidence(folder, load_public_key(env.public_key)).ok
    assert _serving(env)


@pytest.mark.live
def test_a_reader_of_another_source_seen_after_the_preflight_fails_the_halt_time(
    env: LocalEnvironment,
) -> None:
    policy = load_policy(env.policy_path)
    assert policy.drill is not None
    late: list[str] = []

    def progress(phase: str, text: str) -> None:
        del text
        if phase == "halt" and not late:  # started after the pre-flight read the fleet
            late.append(
                _post_report(
                    env,
                    service="credit-scoring-api",
                    source_ids=["local:gpu-9:/srv/old/local.db"],
                )
            )

    data = DrillRunner(policy.drill, policy, progress=progress).run()
    assert _verdicts(data)["preflight"] == "pass"
    assert _verdicts(data)["halt-time"] == "fail"
    assert [d["text"] for d in data["deficiencies"]] == [
        "credit-scoring-api: 1 reads another source and will NOT stop when serve halts: " + late[0]
    ]
    assert sorted(r["source_match"] for r in data["readers"]) == ["same"] * 3
    assert data["restore"]["restored"] is True
    assert _serving(env)


def _serve_sources(env: LocalEnvironment) -> list[str]:
    headers = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    fleet = httpx.get(f"{env.serve_url}/v1/fleet", headers=headers, timeout=30).json()
    assert fleet["source_ids"], fleet
    return list(fleet["source_ids"])


@pytest.mark.live
def test_an_extra_reader_that_never_halts_fails_the_drill(env: LocalEnvironment) -> None:
    # The plan says 2 readers of credit-scoring-api; a third of the same source reports too, and
    # claims serving after the halt. The count is met by the two real readers: not enough.
    stuck = {
        "service": "credit-scoring-api",
        "source_ids": _serve_sources(env),
        "host": "gpu-3",
        "pid": 3131,
        "instance": "stuck",
    }
    extra = _post_report(env, **stuck)
    assert _fleet_row(env, "same")  # serve marks it a reader of its own source
    after: list[str] = []

    def progress(phase: str, text: str) -> None:
        if phase == "halt" and text.startswith("acknowledged") and not after:
            after.append(_post_report(env, **stuck, seq=2))  # sent after serve took the halt

    policy = load_policy(env.policy_path)
    data, folder = run_and_record(
        env.settings, policy, load_signer(env.signing_key), env.evidence_dir, progress=progress
    )
    assert after == [extra]
    assert _verdicts(data) == {
        "preflight": "pass",
        "halt-time": "fail",
        "drain": "pass",
        "alerts": "pass",
        "kill-switch": "not-planned",
        "resumption": "pass",
        "back": "pass",
    }, _why(data, env)
    assert [d["text"] for d in data["deficiencies"]] == [
        f"credit-scoring-api reader {extra} never halted: it still reported serving 15 s "
        "after the halt request"
    ]
    # The signed evidence lists every reader: host, pid, service, when it refused.
    report = json.loads((folder / "report.json").read_text())
    rows = {r["reader"]: r for r in report["readers"]}
    assert len(rows) == 4
    assert rows[extra]["host"] == "gpu-3"
    assert rows[extra]["pid"] == 3131
    assert rows[extra]["refused_at"] is None
    assert rows[extra]["status_after_halt"] == "active"
    real = [r for key, r in rows.items() if key != extra]
    assert all(r["refused_at"] and 0 <= r["halted_after_s"] <= 5 for r in real), real
    assert sorted(r["service"] for r in real) == ["batch-scorer", *["credit-scoring-api"] * 2]
    page = (folder / "report.html").read_text()
    assert "not seen refusing (active)" in page
    assert f"{extra} never halted" in page
    assert verify_evidence(folder, load_public_key(env.public_key)).ok
    assert data["restore"] == {"needed": False, "restored": True, "detail": "the drill resumed"}
    assert _serving(env)


@pytest.mark.live
def test_a_reader_that_serves_again_before_the_resume_fails_the_drill(
    env: LocalEnvironment,
) -> None:
    # A reader of serve's source reports halted within the declared time, then serving again
    # while serve is still halted: refusing once is not enough.
    flapping = {
        "service": "credit-scoring-api",
        "source_ids": _serve_sources(env),
        "host": "gpu-5",
        "pid": 5555,
        "instance": "flap",
    }
    key = _post_report(env, **flapping)
    sent: list[str] = []

    def progress(phase: str, text: str) -> None:
        now = isoformat_ms(SYSTEM_CLOCK.now())
        if phase == "halt" and text.startswith("acknowledged") and not sent:
            sent.append(_post_report(env, **flapping, seq=2, active=False, flipped_at=now))
        elif phase == "alerts" and len(sent) == 1:  # after the wait for the readers
            sent.append(_post_report(env, **flapping, seq=3, active=True, flipped_at=now))

    policy = load_policy(env.policy_path)
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy, progress=progress).run()
    assert sent == [key, key]
    row = next(r for r in data["readers"] if r["reader"] == key)
    assert row["halted_after_s"] is not None
    assert row["served_while_halted"] is True
    assert [d["text"] for d in data["deficiencies"]] == [
        f"credit-scoring-api reader {key} reported serving again while serve was halted"
    ], _why(data, env)
    assert _verdicts(data)["back"] == "pass"
    assert _serving(env)


@pytest.mark.live
def test_a_reader_that_goes_silent_during_the_halt_fails_the_drill(
    env: LocalEnvironment,
) -> None:
    # A reader of serve's source reporting every 0.2 s stops reporting as the halt is asked
    # for (frozen, or cut off): it is never seen refusing, and silent is not halted.
    import threading

    body = {"service": "batch-scorer", "source_ids": _serve_sources(env), "interval": 0.5}
    stop = threading.Event()
    sent = [_post_report(env, **body, host="gpu-4", pid=4444, instance="frozen", seq=1)]

    def keep_reporting() -> None:
        seq = 1
        while not stop.wait(0.2):
            seq += 1
            _post_report(env, **body, host="gpu-4", pid=4444, instance="frozen", seq=seq)

    def progress(phase: str, text: str) -> None:
        del text
        if phase == "halt":
            stop.set()

    reporting = threading.Thread(target=keep_reporting)
    reporting.start()
    try:
        policy = load_policy(env.policy_path)
        assert policy.drill is not None
        data = DrillRunner(policy.drill, policy, progress=progress).run()
    finally:
        stop.set()
        reporting.join(30)
    assert _verdicts(data)["preflight"] == "pass"
    assert _verdicts(data)["halt-time"] == "fail"
    assert [d["text"] for d in data["deficiencies"]] == [
        f"batch-scorer reader {sent[0]} went silent during the halt without reporting halted "
        "(silent is not halted)"
    ], _why(data, env)
    assert _verdicts(data)["back"] == "pass"
    assert _serving(env)


PLAN = {
    "environment": "staging",
    "serve_url": "https://serve.staging.example",
    "lead": "lead",
    "declared_halt_time": "30s",
    "readers": [{"service": "api", "count": 2}],
    "participants": [{"name": "lead", "role": "lead", "token": "bgt_0123_s3cr3t"}],
}


def test_the_plan_is_strict_and_names_the_key() -> None:
    plan = parse_policy({"drill": PLAN}).drill
    assert plan is not None
    assert plan.declared_halt_time == timedelta(seconds=30)
    assert plan.interval == timedelta(days=365)
    assert "s3cr3t" not in repr(plan)
    for bad, expected in [
        ({**PLAN, "declard_halt_time": "1s"}, "drill.declard_halt_time: unknown key"),
        (
            {**PLAN, "declared_halt_time": "soon"},
            "drill.declared_halt_time: 'soon' is not a duration",
        ),
        ({**PLAN, "readers": []}, "drill.readers: List should have at least 1 item"),
        ({**PLAN, "lead": "nobody"}, "lead 'nobody' is not one of the participants"),
        ({**PLAN, "serve_url": "ftp://x"}, "drill.serve_url: must be an http(s) URL"),
        ({**PLAN, "groups": ["on-call"]}, "drill.groups: not in [notify.groups]: on-call"),
        (
            {**PLAN, "criteria": [{"item": "root-cause", "by": "ghost"}]},
            "criterion 'root-cause': 'ghost' is not a participant",
        ),
        (
            {**PLAN, "criteria": [{"item": "rootcause", "by": "lead"}]},
            "not in the [resume] checklist: rootcause",
        ),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            parse_policy({"drill": bad})
        assert expected in str(caught.value), str(caught.value)


def _evidence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, started: str, verdict: str) -> None:
    key = tmp_path / "k.key"
    if not key.exists():
        generate(key, tmp_path / "k.pub")
    drill_id = f"drill-{started.replace('-', '').replace(':', '')[:15]}Z-0000"
    data: dict[str, Any] = {
        "drill_id": drill_id,
        "started_at": started,
        "environment": "staging",
        "verdict": verdict,
        "deficiencies": [],
        "limitations": [],
    }

    def printer(d: dict[str, Any], s: dict[str, Any]) -> bytes:
        del d, s
        return b"%PDF-1.4 stand-in for the printed page"

    # Only the evidence layer is under test here: the template needs a whole drill's data.
    monkeypatch.setattr(
        "breakglass.drill.report.render_html",
        lambda d, signature=None: f"<html>{d['drill_id']}</html>",
    )
    write_evidence(tmp_path / "drills", data, load_signer(key), pdf_printer=printer)


def test_due_counts_only_verified_passed_drills_within_the_interval(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = SYSTEM_CLOCK.now()
    key = tmp_path / "k.pub"
    year = timedelta(days=365)
    assert due([], year, now) == (True, "no passed drill on record")
    _evidence(monkeypatch, tmp_path, isoformat_ms(now - timedelta(days=400)), "passed")
    _evidence(monkeypatch, tmp_path, isoformat_ms(now - timedelta(days=30)), "failed")
    entries = history(tmp_path / "drills", load_public_key(key))
    assert [e.verdict for e in entries] == ["failed", "passed"]
    overdue, text = due(entries, year, now)
    assert overdue
    assert "400 days ago; one is due every 365 days" in text
    assert not due(entries, timedelta(days=500), now)[0]

    _evidence(monkeypatch, tmp_path, isoformat_ms(now - timedelta(days=10)), "passed")
    entries = history(tmp_path / "drills", load_public_key(key))
    assert not due(entries, year, now)[0]

    # A passed report whose signature no longer holds does not count.
    newest = tmp_path / "drills" / entries[0].drill_id
    signature = json.loads((newest / "signature.json").read_text())
    assert signature["schema"] == SIGNATURE_SCHEMA
    signature["signature"] = signature["signature"][::-1]
    (newest / "signature.json").write_text(json.dumps(signature))
    entries = history(tmp_path / "drills", load_public_key(key))
    assert entries[0].verdict == "INVALID"
    assert due(entries, year, now)[0]


@pytest.mark.live
def test_no_drill_on_a_halted_system_nor_with_a_token_that_cannot_halt(
    env: LocalEnvironment, tmp_path: Path
) -> None:
    # A lead whose token is only a viewer's: refused before anything is touched.
    text = env.policy_path.read_text()
    weak = tmp_path / "weak.toml"
    weak.write_text(text.replace(env.tokens["drill-lead"], env.tokens["viewer"]))
    policy = load_policy(weak)
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy).run()
    assert data["halt"] is None
    lead = next(c for c in data["preflight"] if c["check"] == "credentials of drill-lead")
    assert lead["ok"] is False
    assert "the lead must halt; the token is viewer" in lead["detail"]
    assert _serving(env)

    # A real halt is open: the drill must not run, and above all must not resume it.
    headers = {"Authorization": f"Bearer {env.tokens['drill-lead']}"}
    halted = httpx.post(
        f"{env.serve_url}/v1/halt", json={"reason": "real incident"}, headers=headers, timeout=30
    )
    assert halted.status_code == 200, halted.text
    policy = load_policy(env.policy_path)
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy).run()
    running = next(c for c in data["preflight"] if c["check"] == "system running")
    assert running["ok"] is False
    assert "a suspension is open" in running["detail"]
    assert data["halt"] is None
    assert data["restore"] is None
    status = httpx.get(f"{env.serve_url}/v1/status", headers=headers, timeout=30).json()
    assert status["active"] is False
    assert status["suspension"]["id"] == halted.json()["suspension_id"]


def test_outside_text_in_the_report_is_escaped() -> None:
    from breakglass.drill.report import render_html
    from breakglass.drill.verdict import judge

    hostile = "<script>alert(1)</script>"
    plan = dict(PLAN, environment=f"staging {hostile}")
    policy = parse_policy({"drill": plan})
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy).data  # the skeleton, nothing contacted
    data["preflight"].append({"check": "serve reachable", "ok": False, "detail": hostile})
    data["readers"] = [
        {
            "reader": f"h/1/{hostile}",
            "service": hostile,
            "host": hostile,
            "halted_after_s": 0.5,
        }
    ]
    data["halt"] = {"requested_at": "x", "acknowledged_after_s": 0.1, "by": hostile}
    judge(data)
    page = render_html(data)
    assert "<script" not in page
    assert "&lt;script&gt;" in page


def test_the_maintenance_window_is_read_in_utc_across_midnight() -> None:
    from datetime import UTC, datetime

    from breakglass.testing import ManualClock

    windows = [{"days": ["sat"], "start": "22:00", "end": "02:00"}]
    policy = parse_policy({"drill": dict(PLAN, windows=windows)})
    assert policy.drill is not None
    for moment, inside in [
        (datetime(2026, 12, 5, 23, 30, tzinfo=UTC), True),  # a Saturday, before midnight
        (datetime(2026, 12, 5, 21, 59, tzinfo=UTC), False),
        (datetime(2026, 12, 4, 23, 0, tzinfo=UTC), False),  # a Friday
    ]:
        runner = DrillRunner(policy.drill, policy, clock=ManualClock(moment))
        assert runner._window() is inside, moment
        detail = runner.data["preflight"][-1]["detail"]
        assert ("22:00-02:00" in detail) is inside


@pytest.mark.live
def test_a_gate_the_plan_cannot_satisfy_leaves_the_system_halted(
    env: LocalEnvironment, tmp_path: Path
) -> None:
    # The plan forgets a checklist item the gate requires: the resume is refused, the drill
    # cannot restore, and the system stays halted (the safe side), said first in the report.
    text = "\n".join(
        line for line in env.policy_path.read_text().splitlines() if 'item = "risk"' not in line
    )
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.drill is not None
    data = DrillRunner(policy.drill, policy).run()
    assert data["verdict"] == "failed"
    assert data["restore"]["needed"] is True
    assert data["restore"]["restored"] is False
    assert "409" in data["restore"]["detail"]
    assert "risk" in data["restore"]["detail"]
    assert data["deficiencies"][0]["text"].startswith("NOT RESTORED: ")
    assert _verdicts(data)["resumption"] == "fail"
    assert _verdicts(data)["halt-time"] == "pass"
    headers = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    status = httpx.get(f"{env.serve_url}/v1/status", headers=headers, timeout=30).json()
    assert status["active"] is False


@pytest.mark.live
def test_drill_local_is_what_make_demo_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["drill", "local", "--keep", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "): PASSED" in result.output
    assert "next: breakglass drill verify" in result.output
    folder = next((tmp_path / "demo" / "serve-state" / "drills").iterdir())
    assert verify_evidence(folder, load_public_key(tmp_path / "demo" / "keys" / "audit.pub")).ok


@pytest.mark.live
def test_the_console_shows_the_drill_live(env: LocalEnvironment) -> None:
    import os
    import threading

    from playwright.sync_api import expect, sync_playwright

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("the Debian package 'chromium' is missing: run `apt-get install -y chromium`")
    policy = load_policy(env.policy_path)
    assert policy.drill is not None
    plan = policy.drill
    results: list[dict[str, Any]] = []
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.goto(f"{env.serve_url}/")
            page.get_by_label("API token").fill(env.tokens["viewer"])
            with page.expect_navigation(wait_until="load"):
                page.get_by_role("button", name="Log in").click()
            expect(page.locator("#drill")).to_be_hidden()
            expect(page.locator("#live")).to_have_text("(live)", timeout=30_000)
            # The drill runs while the page is open: its lines arrive as server-sent events.
            worker = threading.Thread(
                target=lambda: results.append(DrillRunner(plan, policy).run())
            )
            worker.start()
            expect(page.locator("#drill-state")).to_have_text("Drill finished", timeout=120_000)
            worker.join(timeout=120)
            assert results[0]["verdict"] == "passed", _why(results[0], env)
            drill_id = results[0]["drill_id"]
            expect(page.locator("#drill-id")).to_have_text(drill_id)
            lines = page.locator("#drill-lines li")
            expect(lines.filter(has_text="readers: 3 of 3 readers refusing")).to_have_count(1)
            expect(lines.last).to_contain_text("verdict: passed")
            OUTPUT.mkdir(parents=True, exist_ok=True)
            page.locator("#drill").screenshot(path=str(OUTPUT / "console-drill.png"))
            # After a reload the latest drill is read back from serve.
            page.reload()
            expect(page.locator("#drill-id")).to_have_text(drill_id, timeout=30_000)
        finally:
            browser.close()

    _check_progress_api(env, drill_id)


def _check_progress_api(env: LocalEnvironment, drill_id: str) -> None:
    # Only a halter may post progress; a viewer reads it.
    viewer = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    line = {"drill_id": "drill-x", "phase": "halt", "text": "forged"}
    denied = httpx.post(f"{env.serve_url}/v1/drill/progress", json=line, headers=viewer, timeout=30)
    assert denied.status_code == 403
    board = httpx.get(f"{env.serve_url}/v1/drill/progress", headers=viewer, timeout=30).json()
    assert board["drill_id"] == drill_id
    assert all(entry["by"] == "token:drill-lead" for entry in board["lines"])
    lead = {"Authorization": f"Bearer {env.tokens['drill-lead']}"}
    hostile = dict(line, text="\x1b[2Jpassed")
    refused = httpx.post(
        f"{env.serve_url}/v1/drill/progress", json=hostile, headers=lead, timeout=30
    )
    assert refused.status_code == 422


@pytest.mark.live
def test_drill_run_from_the_command_line(env: LocalEnvironment, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    args = ["--policy", str(env.policy_path), "--evidence-dir", str(evidence)]
    base = ["--state-dir", str(env.settings.state_dir), "drill", "run", *args]
    unsigned = CliRunner().invoke(main, base, env={"BREAKGLASS_AUDIT__SIGNING_KEY": None})
    assert unsigned.exit_code == 1
    assert "signed with the audit export key: set audit.signing_key" in unsigned.output
    assert _serving(env)  # refused before anything was touched

    result = CliRunner().invoke(main, [*base, "--signing-key", str(env.signing_key), "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0, _why(data, env)
    assert data["verdict"] == "passed"
    folder = evidence / data["drill_id"]
    assert verify_evidence(folder, load_public_key(env.public_key)).ok
    listed = CliRunner().invoke(
        main,
        [
            "drill",
            "history",
            "--evidence-dir",
            str(evidence),
            "--public-key",
            str(env.public_key),
            "--json",
        ],
    )
    assert [e["verdict"] for e in json.loads(listed.output)] == ["passed"]


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_signing_key_reads_as_not_set(
    blank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breakglass.audit.settings import load_audit_settings

    monkeypatch.chdir(tmp_path)  # no breakglass.toml or .env of the checkout
    monkeypatch.setenv("BREAKGLASS_AUDIT__SIGNING_KEY", blank)
    assert load_audit_settings().signing_key is None
    result = CliRunner().invoke(
        main, ["drill", "history", "--evidence-dir", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "pass --public-key" in result.output
    assert "cannot read the signing key" not in result.output


def _console_login(page: Any, env: LocalEnvironment, token: str) -> None:
    page.goto(f"{env.serve_url}/login")
    page.get_by_label("API token").fill(env.tokens[token])
    # Screenshots are taken of the page the form leads to once it (stylesheet included) has loaded.
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Log in").click()


@pytest.mark.live
def test_deficiencies_are_closed_on_the_console_by_an_admin(tmp_path: Path) -> None:
    import os

    from playwright.sync_api import expect, sync_playwright

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("the Debian package 'chromium' is missing: run `apt-get install -y chromium`")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with local_environment(
        tmp_path / "env", silent=frozenset({"governance-lead"}), ack_within="3s"
    ) as env:
        data, folder = _run(env)
        assert data["verdict"] == "failed", _why(data, env)
        drill_id = data["drill_id"]
        row = f"#remediation-{drill_id}-D1"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=args)
            try:
                _viewer_sees_and_cannot_close(browser, env, drill_id)
                # The admin closes it with a note; the page shows by whom, when and what.
                page = browser.new_page(viewport={"width": 1100, "height": 1400})
                _console_login(page, env, "owner")
                OUTPUT.mkdir(parents=True, exist_ok=True)
                page.locator("#drills").screenshot(path=str(OUTPUT / "console-drills-open.png"))
                page.get_by_label("What was done (D1)").fill(
                    "governance lead now on the pager rotation"
                )
                page.get_by_role("button", name="Record the remediation of D1").click()
                expect(page.locator(row)).to_contain_text("(closed)", timeout=30_000)
                expect(page.locator(row)).to_contain_text(
                    "Closed by owner at 20"
                )  # an ISO time follows
                expect(page.locator(row)).to_contain_text("governance lead now on the pager")
                page.locator("#drills").screenshot(path=str(OUTPUT / "console-remediation.png"))
            finally:
                browser.close()

        # drill history and drill due read the same closure.
        common = ["--evidence-dir", str(env.evidence_dir), "--public-key", str(env.public_key)]
        listed = CliRunner().invoke(main, ["drill", "history", "--json", *common])
        assert json.loads(listed.output)[0]["open"] == []
        assert CliRunner().invoke(main, ["drill", "due", *common]).exit_code == 1  # still failed

        _closure_on_record(env, drill_id)
        _remediation_refusals(env, drill_id, folder)


def _viewer_sees_and_cannot_close(browser: Any, env: LocalEnvironment, drill_id: str) -> None:
    from playwright.sync_api import expect

    row = f"#remediation-{drill_id}-D1"
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    _console_login(page, env, "viewer")
    expect(page.locator(f"#drill-{drill_id}")).to_contain_text("FAILED")
    expect(page.locator(row)).to_contain_text("(open)")
    expect(page.locator(row).locator("form")).to_have_count(0)
    expect(page.locator("#cannot-remediate")).to_contain_text("admin")
    # The form posted anyway, with the viewer's own session and CSRF token: refused (403), before the form is read.
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    form = {"csrf": csrf, "drill_id": drill_id, "deficiency": "D1", "action": "closed by a viewer"}
    answer = page.request.post(
        f"{env.serve_url}/console/drill/remediate", form=form, headers={"Origin": env.serve_url}
    )
    assert answer.status == 403
    assert "needs the admin role" in answer.text()
    page.close()


def _closure_on_record(env: LocalEnvironment, drill_id: str) -> None:
    # Recorded in the audit trail as `drill remediate` records it.
    store = open_audit_store(env.settings)
    try:
        rows = list(store.iter_rows(AuditQuery(providers=("breakglass-drill",))))
    finally:
        store.close()
    closure = json.loads(rows[-1].canonical)
    assert closure["vendor_event_type"] == "drill-remediation"
    assert closure["actor"]["name"] == "owner"
    assert closure["comment"] == "D1 closed: governance lead now on the pager rotation"
    assert closure["raw"] == {"drill_id": drill_id, "deficiency": "D1", "closed": True}


def _remediation_refusals(env: LocalEnvironment, drill_id: str, folder: Path) -> None:
    url = f"{env.serve_url}/v1/drills/{drill_id}/remediation"
    body = {"deficiency": "D1", "action": "closed by a viewer", "closed": True}
    before = (folder / "remediation.jsonl").read_text(encoding="utf-8")
    for token in ("viewer", "drill-lead", "ana"):  # viewer, halter, approver
        headers = {"Authorization": f"Bearer {env.tokens[token]}"}
        refused = httpx.post(url, json=body, headers=headers, timeout=30)
        assert refused.status_code == 403, refused.text
        assert "needs the admin role" in refused.json()["detail"]
    assert (folder / "remediation.jsonl").read_text(encoding="utf-8") == before
    owner = {"Authorization": f"Bearer {env.tokens['owner']}"}
    unknown = httpx.post(
        f"{env.serve_url}/v1/drills/drill-nope/remediation", json=body, headers=owner, timeout=30
    )
    assert unknown.status_code == 422
    assert "no drill 'drill-nope'" in unknown.json()["detail"]
    listed = httpx.get(f"{env.serve_url}/v1/drills", headers=owner, timeout=30).json()
    (entry,) = listed["drills"]
    assert entry["deficiencies"][0]["remediation"]["by"] == "owner"
    # The console's form without its CSRF token is refused too.
    form = {"drill_id": drill_id, "deficiency": "D1", "action": "x", "csrf": "wrong"}
    forged = httpx.post(f"{env.serve_url}/console/drill/remediate", data=form, timeout=30)
    assert forged.status_code in (401, 403)
