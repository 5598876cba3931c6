"""The one-page suspension report, rendered by serve as HTML and PDF and checked by opening them.

The PDF is printed by Debian's chromium (Playwright); it is read back with poppler's
``pdftotext`` and ``pdfinfo``, and its first page is rendered to PNG with ``pdftoppm``.
Both files and the picture are kept under ``build/test-output/resume/`` for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from breakglass.hold import HoldStore
from breakglass.serve.auth import Role
from breakglass.serve.store import SqliteServeStore
from breakglass.testing.serve import running_serve
from tests.notify_receivers import Receivers, wait_until
from tests.resume_policies import notify_toml

if TYPE_CHECKING:
    from breakglass.testing.serve import Running

pytest_plugins = ["tests.notify_fixtures"]
pytestmark = pytest.mark.live

OUT = Path(__file__).resolve().parents[1] / "build" / "test-output" / "resume"


def _policy(receivers: Receivers) -> str:
    return (
        notify_toml(receivers)
        + """
[resume]
approvals = 2
"""
    )


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is missing: install the Debian package poppler-utils (make test does)")
    return found


def _close_a_suspension(serve: Running, tmp_path: Path) -> str:
    with serve.client("halter") as c:
        halted = c.post(
            "/v1/halt",
            json={
                "reason": "refusal rate doubled for one postcode <script>alert(1)</script>",
                "incident": "INC-4711",
                "personal_data_affected": True,
            },
        )
    sid: str = halted.json()["suspension_id"]
    assert serve.wait_active(False)
    holds = HoldStore(SqliteServeStore(tmp_path / "serve.db"))
    for applicant in ("a-1", "a-2", "a-3"):
        holds.hold("credit-decision", {"applicant": applicant}, because="halted")
    with serve.client("approver") as a1, serve.client("approver-2") as a2:
        answers = {
            "root-cause": "a postcode feature joined on a stale table",
            "remediation": "join fixed, model re-validated",
            "risk": "re-assessed with the risk board on 5 December",
            "dpo": "DPO consulted; no breach notification needed",
            "deployers": "ACME Bank told by phone",
        }
        for item, answer in answers.items():
            assert (
                a1.post(f"/v1/resume/checklist/{item}", json={"answer": answer}).status_code == 200
            )
        assert a1.post("/v1/resume/approvals", json={}).status_code == 200
        assert a2.post("/v1/resume/approvals", json={}).status_code == 200
        resumed = a2.post(
            "/v1/resume",
            json={"reason": "fix verified on staging", "classification": "confirmed-harm"},
        )
        assert resumed.status_code == 200, resumed.text
    return sid


def test_suspension_report_html_and_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receivers: Receivers
) -> None:
    pdftotext, pdfinfo, pdftoppm = (_poppler(t) for t in ("pdftotext", "pdfinfo", "pdftoppm"))
    (tmp_path / "policy.toml").write_text(_policy(receivers), encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(tmp_path / "policy.toml"))
    with running_serve(tmp_path) as serve:
        _, serve.tokens["approver-2"] = serve.server.services.tokens.create(
            "approver-2", Role.APPROVER, by="test setup"
        )
        assert serve.wait_active(True)
        sid = _close_a_suspension(serve, tmp_path)
        assert wait_until(lambda: not receivers.pd_alerts)  # the resume resolved the page
        with serve.client("viewer") as c:
            html_answer = c.get(f"/v1/suspensions/{sid}/report.html")
            pdf_answer = c.get(f"/v1/suspensions/{sid}/report.pdf")
            assert c.get("/v1/suspensions/nope/report.pdf").status_code == 404
            assert c.get(f"/v1/suspensions/{sid}/report.txt").status_code == 404
        with serve.client() as anonymous:
            assert anonymous.get(f"/v1/suspensions/{sid}/report.html").status_code == 401

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    assert html_answer.status_code == 200
    html = html_answer.text
    (OUT / "suspension-report.html").write_text(html, encoding="utf-8")
    # Self-contained and inert: no script, nothing fetched; the reason is escaped, not run.
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    for fact in (
        "token:halter-1",
        "INC-4711",
        "Closed as confirmed-harm",
        "token:approver-1",
        "token:approver-2",
        "DPO consulted; no breach notification needed",
        "never a fault",
        "3 held while halted",
        "on-call",
    ):
        assert fact in html, fact

    assert pdf_answer.status_code == 200
    assert pdf_answer.headers["content-type"] == "application/pdf"
    pdf = OUT / "suspension-report.pdf"
    pdf.write_bytes(pdf_answer.content)
    assert pdf_answer.content.startswith(b"%PDF-")
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE), info  # one page
    text = subprocess.run(
        [pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    (OUT / "suspension-report.txt").write_text(text, encoding="utf-8")
    # Reading order (no -layout), so a table cell wrapped over two lines still reads as one.
    raw = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True)
    flat = " ".join(raw.stdout.split())
    for fact in (
        "Suspension report",
        "token:halter-1",
        "Closed as confirmed-harm",
        "token:approver-2",
        "a postcode feature joined on a stale table",
        "never a fault",
        "3 held while halted",
    ):
        assert fact in flat, fact
    subprocess.run(
        [
            pdftoppm,
            "-png",
            "-r",
            "80",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(OUT / "page-1"),
        ],
        check=True,
    )
    page = OUT / "page-1.png"
    assert page.stat().st_size > 10_000  # a rendered page, not an empty one
