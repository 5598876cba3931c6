"""``breakglass drill``: run the annual exercise, verify its evidence, say when the next is due.

* ``drill run`` — the plan of the policy file's ``[drill]``, against serve;
  writes the signed evidence; exit 0 only when the drill passed;
* ``drill local`` — the same on a whole environment started on loopback
  (what ``make demo`` runs);
* ``drill verify DRILL`` — every file against the signature; exit 1 when not intact;
* ``drill history`` — every drill with its verdict and open deficiencies;
* ``drill due`` — exit 1 when no verified passed drill is on record within the interval;
* ``drill remediate DRILL D1 --action … --by …`` — the Technical Owner closes a deficiency.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from breakglass.cli_errors import fail, json_flag, print_json
from breakglass.columns import table
from breakglass.errors import BreakglassError
from breakglass.safe_text import safe

if TYPE_CHECKING:
    from breakglass.audit.signing import PublicKey, Signer
    from breakglass.policy import Policy
    from breakglass.settings import Settings


def _fail(exc: BaseException | str) -> NoReturn:
    fail(exc)


def _settings(ctx: click.Context) -> Settings:
    try:
        settings: Settings = ctx.find_root().obj.settings()
    except BreakglassError as exc:
        _fail(exc)
    return settings


def _policy(path: str | None) -> Policy:
    from breakglass.policy import load_policy

    try:
        return load_policy(Path(path) if path else None)
    except BreakglassError as exc:
        _fail(exc)


def _signer(path: str | None) -> Signer:
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.signing import load_signer

    try:
        chosen = Path(path) if path else load_audit_settings().signing_key
        if chosen is None:
            _fail(
                "the drill's evidence is signed with the audit export key: set audit.signing_key "
                "(BREAKGLASS_AUDIT__SIGNING_KEY) or pass --signing-key (make one with "
                "`breakglass audit keygen`)"
            )
        return load_signer(chosen)
    except BreakglassError as exc:
        _fail(exc)


def _public_key(path: str | None) -> PublicKey:
    from breakglass.audit.settings import load_audit_settings
    from breakglass.audit.signing import load_public_key

    try:
        if path:
            return load_public_key(Path(path))
        configured = load_audit_settings().signing_key
    except BreakglassError as exc:
        _fail(exc)
    if configured is None:
        _fail("pass --public-key (the audit export key's public half), or set audit.signing_key")
    return _signer(str(configured)).public_key()


def _evidence_dir(ctx: click.Context, path: str | None) -> Path:
    return Path(path) if path else _settings(ctx).state_dir / "drills"


def _progress() -> Any:
    started = time.monotonic()

    def show(phase: str, text: str) -> None:
        click.echo(f"[{time.monotonic() - started:7.2f} s] {phase:<11} {safe(text)}")

    return show


def summary(data: dict[str, Any], folder: Path) -> str:
    """The drill's result for people: a verdict per requirement, deficiencies, files."""
    lines = [f"drill {data['drill_id']} ({safe(data['environment'])}): {data['verdict'].upper()}"]
    lines.extend(
        f"  {r['verdict']:<11} {r['title']}: {safe(r['detail'])}" for r in data["requirements"]
    )
    lines.extend(f"  deficiency {d['id']}: {safe(d['text'])}" for d in data["deficiencies"])
    if data.get("restore", {}) and data["restore"].get("needed"):
        word = "restored" if data["restore"]["restored"] else "NOT RESTORED"
        lines.append(f"  {word}: {safe(data['restore']['detail'])}")
    files = ", ".join(p.name for p in sorted(folder.glob("report.*")))
    lines.append(f"  evidence: {folder} ({files}, signature.json)")
    return "\n".join(lines)


def run_and_record(
    settings: Settings,
    policy: Policy,
    signer: Signer,
    evidence_dir: Path,
    *,
    progress: Any,
) -> tuple[dict[str, Any], Path]:
    """Run the drill of ``policy``, write and sign its evidence, record it in the audit trail."""
    from breakglass.drill.evidence import record_in_audit, write_evidence
    from breakglass.drill.runner import DrillRunner

    plan = policy.drill
    if plan is None:
        raise BreakglassError("the policy file has no [drill] section: nothing to run")
    checks = [{"check": "evidence signing key", "ok": True, "detail": f"Ed25519 {signer.key_id}"}]
    data = DrillRunner(plan, policy, progress=progress, checks=checks).run()
    signature = write_evidence(evidence_dir, data, signer)
    record_in_audit(
        settings,
        kind="drill-report",
        drill_id=data["drill_id"],
        actor=plan.lead,
        comment=f"drill {data['verdict']}: {len(data['deficiencies'])} deficiencies",
        raw={
            "verdict": data["verdict"],
            "evidence_hash": signature["evidence_hash"],
            "key_id": signature["key_id"],
            "files": signature["files"],
            "deficiencies": [d["id"] for d in data["deficiencies"]],
        },
        environment=plan.environment,
    )
    return data, evidence_dir / data["drill_id"]


@click.group()
def drill() -> None:
    """The annual break-glass drill: run it, verify its evidence, see when it is due."""


_policy_option = click.option(
    "--policy", "policy_path", type=click.Path(dir_okay=False), help="The policy file."
)
_evidence_option = click.option(
    "--evidence-dir",
    type=click.Path(file_okay=False),
    help="Where drills keep their evidence (default: <state_dir>/drills).",
)
_public_option = click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    help="The audit export key's public half (default: from audit.signing_key).",
)


@drill.command("run")
@_policy_option
@_evidence_option
@click.option("--signing-key", type=click.Path(dir_okay=False), help="Override audit.signing_key.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON instead.")
@click.pass_context
def run(
    ctx: click.Context,
    policy_path: str | None,
    evidence_dir: str | None,
    signing_key: str | None,
    *,
    as_json: bool,
) -> None:
    """Run the drill of the policy's [drill] against serve; exit 0 only when it passed."""
    settings = _settings(ctx)  # a broken settings file is named first
    policy = _policy(policy_path)
    signer = _signer(signing_key)
    try:
        data, folder = run_and_record(
            settings,
            policy,
            signer,
            _evidence_dir(ctx, evidence_dir),
            progress=None if as_json else _progress(),
        )
    except BreakglassError as exc:
        _fail(exc)
    click.echo(json.dumps(data, indent=2) if as_json else summary(data, folder))
    sys.exit(0 if data["verdict"] == "passed" else 1)


@drill.command("local")
@click.option("--silent", multiple=True, help="A group whose receiver never acknowledges.")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the environment's files here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON instead.")
def local(silent: tuple[str, ...], keep: str | None, *, as_json: bool) -> None:
    """Run a full drill on an environment started on loopback (the embedded local provider)."""
    from breakglass.extras import require_extras

    try:
        require_extras("drill local", "serve", "drill", "notify")
    except BreakglassError as exc:
        _fail(exc)
    from breakglass.audit.signing import load_signer
    from breakglass.drill.local import local_environment
    from breakglass.policy import load_policy

    root = Path(keep) if keep else None
    click.echo("starting serve, readers and notification receivers on loopback ...", err=as_json)
    try:
        with local_environment(root, silent=frozenset(silent)) as env:
            policy = load_policy(env.policy_path)
            data, folder = run_and_record(
                env.settings,
                policy,
                load_signer(env.signing_key),
                env.evidence_dir,
                progress=None if as_json else _progress(),
            )
            passed = data["verdict"] == "passed"
            if as_json:
                click.echo(json.dumps(data, indent=2))
            else:
                click.echo(summary(data, folder))
                click.echo(
                    f"next: breakglass drill verify {folder} --public-key {env.public_key}; "
                    f"open {folder / 'report.html'}"
                    if keep
                    else "next: `breakglass drill local --keep ./drill-demo` keeps the report to "
                    "open; `breakglass drill local --silent governance-lead` shows a failed drill"
                )
    except (BreakglassError, RuntimeError) as exc:
        _fail(exc)
    sys.exit(0 if passed else 1)


def _folder(ctx: click.Context, drill_ref: str, evidence_dir: str | None) -> Path:
    path = Path(drill_ref)
    if path.is_dir():
        return path
    folder = _evidence_dir(ctx, evidence_dir) / drill_ref
    if not folder.is_dir():
        _fail(f"no drill {drill_ref!r} in {folder.parent}")
    return folder


@drill.command("verify")
@click.argument("drill_ref", metavar="DRILL")
@_evidence_option
@_public_option
@json_flag
@click.pass_context
def verify(
    ctx: click.Context,
    drill_ref: str,
    evidence_dir: str | None,
    public_key: str | None,
    *,
    as_json: bool,
) -> None:
    """Check DRILL's files (its folder or its id) against its signature; exit 1 unless intact."""
    from breakglass.drill.evidence import verify_evidence

    check = verify_evidence(_folder(ctx, drill_ref, evidence_dir), _public_key(public_key))
    if as_json:
        verdict = (check.data or {}).get("verdict")
        print_json(
            {
                "ok": check.ok,
                "drill_id": check.drill_id,
                "verdict": verdict if check.ok else None,
                "problems": check.problems,
            }
        )
        sys.exit(0 if check.ok else 1)
    if check.ok:
        verdict = (check.data or {}).get("verdict")
        click.echo(f"{check.drill_id}: intact, signature valid; the drill {verdict}")
        return
    click.echo(f"{safe(check.drill_id)}: NOT INTACT")
    for problem in check.problems:
        click.echo(f"  {safe(problem)}")
    sys.exit(1)


@drill.command("history")
@_evidence_option
@_public_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history_command(
    ctx: click.Context, evidence_dir: str | None, public_key: str | None, *, as_json: bool
) -> None:
    """Every drill, newest first: verdict, deficiencies, those still open."""
    from breakglass.drill.evidence import history

    entries = history(_evidence_dir(ctx, evidence_dir), _public_key(public_key))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "drill_id": e.drill_id,
                        "started_at": e.started_at.isoformat() if e.started_at else None,
                        "environment": e.environment,
                        "verdict": e.verdict,
                        "deficiencies": e.deficiencies,
                        "open": e.open,
                        "problems": e.problems,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return
    if not entries:
        click.echo("no drill on record")
        return
    header, *lines = table(
        ("STARTED", "VERDICT", "DRILL", "ENVIRONMENT", "DEFICIENCIES", "OPEN"),
        (
            (
                e.started_at.strftime("%Y-%m-%d %H:%M") if e.started_at else None,
                e.verdict,
                e.drill_id,
                e.environment,
                e.deficiencies,
                ", ".join(e.open),
            )
            for e in entries
        ),
    )
    click.echo(header)
    for e, line in zip(entries, lines, strict=True):
        click.echo(line)
        for problem in e.problems:  # under its drill, indented so no column reads it
            click.echo(f"    problem: {safe(problem)}")


@drill.command("due")
@_policy_option
@_evidence_option
@_public_option
@click.option(
    "--interval-days",
    type=click.FloatRange(min=0),
    help="Override the plan's interval (default 365).",
)
@json_flag
@click.pass_context
def due_command(
    ctx: click.Context,
    policy_path: str | None,
    evidence_dir: str | None,
    public_key: str | None,
    interval_days: float | None,
    *,
    as_json: bool,
) -> None:
    """Exit 1 when no passed, verified drill is on record within the interval (for CI)."""
    from breakglass.clock import SYSTEM_CLOCK
    from breakglass.drill.evidence import due, history

    if interval_days is not None:
        interval = timedelta(days=interval_days)
    else:
        policy = _policy(policy_path) if policy_path else None
        plan = policy.drill if policy is not None else None
        interval = plan.interval if plan is not None else timedelta(days=365)
    entries = history(_evidence_dir(ctx, evidence_dir), _public_key(public_key))
    overdue, text = due(entries, interval, SYSTEM_CLOCK.now())
    if as_json:
        print_json({"due": overdue, "detail": text, "interval_days": interval.days})
    else:
        click.echo(("DUE: " if overdue else "ok: ") + safe(text))
    sys.exit(1 if overdue else 0)


@drill.command("remediate")
@click.argument("drill_ref", metavar="DRILL")
@click.argument("deficiency")
@click.option("--action", required=True, help="What was done about it.")
@click.option("--by", required=True, help="Who (the Technical Owner).")
@click.option("--open", "still_open", is_flag=True, help="Record progress without closing it.")
@_evidence_option
@json_flag
@click.pass_context
def remediate(  # noqa: PLR0913 -- one parameter per option
    ctx: click.Context,
    drill_ref: str,
    deficiency: str,
    action: str,
    by: str,
    evidence_dir: str | None,
    *,
    still_open: bool,
    as_json: bool,
) -> None:
    """Record the remediation of a deficiency (closed unless --open); kept in the audit trail."""
    from breakglass.drill.evidence import remediate as record_remediation

    folder = _folder(ctx, drill_ref, evidence_dir)
    try:
        entry = record_remediation(
            _settings(ctx), folder, deficiency, action=action, by=by, closed=not still_open
        )
    except BreakglassError as exc:
        _fail(exc)
    if as_json:
        print_json({"ok": True, **entry})
        return
    click.echo(f"{folder.name} {deficiency}: {'closed' if entry['closed'] else 'in progress'}")
