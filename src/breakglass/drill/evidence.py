"""The drill's evidence on disk: signed, recorded in the audit trail, verifiable, listed.

One directory per drill under the evidence directory::

    drills/drill-20261205T103000Z-1a2b/
        report.json        the record (schema breakglass.drill-report/v1)
        report.html        drawn from it, self-contained
        report.pdf         the page printed (absent when it could not be printed; the JSON says why)
        signature.json     SHA-256 of each file, their evidence hash, an Ed25519 signature
        remediation.jsonl  the Technical Owner's closures, one line each (appended later)

The signature is the audit exports' (:mod:`breakglass.audit.signing`): Ed25519
over the 64 hex characters of the evidence hash, the SHA-256 of the canonical
JSON ``{"drill_id", "files"}``. Changing one byte of a file changes its hash;
a forger who recomputes the hashes cannot make the signature. The audit
trail gets one record per drill (``drill-report``) and per closure
(``drill-remediation``) carrying the evidence hash, so a report that vanished
or was swapped is noticed there too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from breakglass.audit.signing import ALGORITHM, PublicKey, Signer
from breakglass.audit_record import Action, Actor, ActorKind, AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from breakglass.settings import Settings

SIGNATURE_SCHEMA = "breakglass.drill-signature/v1"
REMEDIATION_SCHEMA = "breakglass.drill-remediation/v1"
FILES = ("report.json", "report.html", "report.pdf")
PROVIDER = "breakglass-drill"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evidence_hash(drill_id: str, files: dict[str, str]) -> str:
    """SHA-256 (hex) of the canonical JSON of the drill id and its files' hashes."""
    canonical = json.dumps(
        {"drill_id": drill_id, "files": files}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_evidence(
    directory: Path, data: dict[str, Any], signer: Signer, *, pdf_printer: Any = None
) -> dict[str, Any]:
    """Write the drill's JSON, HTML and PDF under ``directory/<drill_id>`` and sign them.

    Args:
        directory: The evidence directory.
        data: The drill's data (from :class:`breakglass.drill.runner.DrillRunner`).
        signer: The audit export key.
        pdf_printer: ``(data, signature) -> bytes``; the default prints with chromium.

    Returns:
        The signature document (``signature.json``).
    """
    from breakglass.drill.report import render_html, render_pdf
    from breakglass.errors import BreakglassError

    folder = directory / data["drill_id"]
    folder.mkdir(parents=True, exist_ok=True)
    stamp = {"key_id": signer.key_id}
    printer = pdf_printer or (lambda d, s: render_pdf(d, signature=s))
    pdf: bytes | None = None
    try:
        pdf = printer(data, stamp)
    except BreakglassError as exc:
        # The JSON and HTML are the record; a missing PDF is said, not hidden.
        data["limitations"].append(f"no PDF: {exc}")
    _write(folder / "report.json", json.dumps(data, indent=2, sort_keys=True).encode())
    _write(folder / "report.html", render_html(data, signature=stamp).encode())
    if pdf is not None:
        _write(folder / "report.pdf", pdf)
    files = {name: _sha256(folder / name) for name in FILES if (folder / name).exists()}
    digest = evidence_hash(data["drill_id"], files)
    signature = {
        "schema": SIGNATURE_SCHEMA,
        "drill_id": data["drill_id"],
        "files": files,
        "evidence_hash": digest,
        "algorithm": ALGORITHM,
        "key_id": signer.key_id,
        "signature": signer.sign(digest),
    }
    _write(folder / "signature.json", json.dumps(signature, indent=2, sort_keys=True).encode())
    return signature


@dataclass(frozen=True, slots=True)
class Verification:
    """What checking one drill's evidence found."""

    drill_id: str
    problems: list[str]
    data: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        """Every file intact and the signature good."""
        return not self.problems


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        return ...


def verify_evidence(folder: Path, key: PublicKey) -> Verification:
    """Check one drill's files against its signature (never raises for a bad file)."""
    problems: list[str] = []
    signature = _load_json(folder / "signature.json")
    if not isinstance(signature, dict) or signature.get("schema") != SIGNATURE_SCHEMA:
        return Verification(
            folder.name, ["signature.json is missing or not a drill signature"], None
        )
    files = signature.get("files")
    if not isinstance(files, dict) or "report.json" not in files:
        return Verification(folder.name, ["signature.json lists no report.json"], None)
    drill_id = str(signature.get("drill_id"))
    for name, recorded in sorted(files.items()):
        if name not in FILES:
            problems.append(f"signature.json lists an unknown file {name!r}")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif _sha256(path) != recorded:
            problems.append(f"{name} was changed after signing (SHA-256 differs)")
    digest = evidence_hash(drill_id, files)
    if digest != signature.get("evidence_hash"):
        problems.append("the evidence hash does not match the files listed")
    if signature.get("key_id") != key.key_id:
        problems.append(f"signed with key {signature.get('key_id')}, not {key.key_id}")
    elif not key.verify(digest, str(signature.get("signature"))):
        problems.append("the signature is not valid (forged or altered)")
    data = _load_json(folder / "report.json")
    if not isinstance(data, dict):
        problems.append("report.json is not JSON")
        data = None
    elif data.get("drill_id") != drill_id or folder.resolve().name != drill_id:
        problems.append("report.json, signature.json and the folder name disagree on the drill id")
    return Verification(drill_id, problems, data)


def record_in_audit(  # noqa: PLR0913 -- each is a field of the record
    settings: Settings,
    *,
    kind: str,
    drill_id: str,
    actor: str,
    comment: str,
    raw: dict[str, Any],
    environment: str | None,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Add one record to the audit trail (the same store as every halt and resume).

    Raises:
        ConfigurationError: The record could not be stored within 10 s.
    """
    from breakglass.audit.recorder import AuditRecorder

    now = clock.now()
    recorder = AuditRecorder.for_bridge(settings, PROVIDER, clock=clock)
    recorder.record(
        AuditRecord(
            provider=PROVIDER,
            vendor_event_id=f"{drill_id}:{kind}:{os.urandom(4).hex()}",
            vendor_event_type=kind,
            flag_key=settings.flag_key,
            action=Action.OTHER,
            occurred_at=now,
            pulled_at=now,
            actor=Actor(kind=ActorKind.USER, id=actor, name=actor),
            environment=environment,
            comment=comment,
            raw={"drill_id": drill_id, **raw},
        )
    )
    stored = recorder.flush(10.0)
    recorder.close()
    if not stored:
        raise ConfigurationError(f"the audit record of {drill_id} was not stored within 10 s")


# ---------------------------------------------------------------------- remediation


def remediations(folder: Path) -> list[dict[str, Any]]:
    """The closures recorded for one drill, oldest first (unreadable lines are skipped)."""
    path = folder / "remediation.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("schema") == REMEDIATION_SCHEMA:
            found.append(entry)
    return found


def add_remediation(
    folder: Path,
    deficiency: str,
    *,
    action: str,
    by: str,
    closed: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> dict[str, Any]:
    """Append a remediation entry for ``deficiency`` of the drill in ``folder``.

    Raises:
        ConfigurationError: The drill has no such deficiency.
    """
    data = _load_json(folder / "report.json")
    if not isinstance(data, dict):
        raise ConfigurationError(f"no drill report in {folder}")
    ids = [d.get("id") for d in data.get("deficiencies") or []]
    if deficiency not in ids:
        raise ConfigurationError(
            f"drill {folder.name} has no deficiency {deficiency!r} (it has {', '.join(map(str, ids)) or 'none'})"
        )
    entry = {
        "schema": REMEDIATION_SCHEMA,
        "drill_id": folder.name,
        "deficiency": deficiency,
        "action": action,
        "by": by,
        "closed": closed,
        "at": isoformat_ms(clock.now()),
    }
    with (folder / "remediation.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def remediate(
    settings: Settings,
    folder: Path,
    deficiency: str,
    *,
    action: str,
    by: str,
    closed: bool,
) -> dict[str, Any]:
    """Record a remediation: appended to the drill's folder and to the audit trail.

    The one way a closure is recorded, from ``drill remediate`` and from serve's console.

    Raises:
        ConfigurationError: No such deficiency, a blank action, or the audit record not stored.
    """
    if not action.strip() or not action.isprintable():
        raise ConfigurationError("say what was done: a one-line action without control characters")
    entry = add_remediation(folder, deficiency, action=action, by=by, closed=closed)
    record_in_audit(
        settings,
        kind="drill-remediation",
        drill_id=folder.name,
        actor=by,
        comment=f"{deficiency} {'closed' if entry['closed'] else 'in progress'}: {action}",
        raw={"deficiency": deficiency, "closed": entry["closed"]},
        environment=None,
    )
    return entry


def open_deficiencies(data: dict[str, Any], folder: Path) -> list[str]:
    """The deficiency ids not closed yet (the last entry for each decides)."""
    state: dict[str, bool] = {}
    for entry in remediations(folder):
        state[str(entry.get("deficiency"))] = bool(entry.get("closed"))
    return [d["id"] for d in data.get("deficiencies") or [] if not state.get(d["id"])]


# ---------------------------------------------------------------------- history and due


@dataclass(frozen=True, slots=True)
class Entry:
    """One drill as :func:`history` lists it."""

    drill_id: str
    started_at: datetime | None
    environment: str
    verdict: str
    """``passed``, ``failed`` or ``INVALID`` (the evidence does not verify)."""
    deficiencies: int
    open: list[str]
    problems: list[str]


def history(directory: Path, key: PublicKey) -> list[Entry]:
    """Every drill in the evidence directory, newest first, each verified."""
    entries = []
    if not directory.is_dir():
        return []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        check = verify_evidence(folder, key)
        data = check.data or {}
        started = data.get("started_at")
        try:
            when = parse_iso(started) if isinstance(started, str) else None
        except ValueError:
            when = None
        entries.append(
            Entry(
                drill_id=check.drill_id,
                started_at=when,
                environment=str(data.get("environment", "?")),
                verdict=str(data.get("verdict", "?")) if check.ok else "INVALID",
                deficiencies=len(data.get("deficiencies") or []),
                open=open_deficiencies(data, folder) if check.ok else [],
                problems=check.problems,
            )
        )
    entries.sort(key=lambda e: e.started_at.timestamp() if e.started_at else 0.0, reverse=True)
    return entries


def last_passed(entries: list[Entry]) -> Entry | None:
    """The newest drill that passed and verifies."""
    return next((e for e in entries if e.verdict == "passed" and e.started_at is not None), None)


def due(entries: list[Entry], interval: timedelta, now: datetime) -> tuple[bool, str]:
    """Whether a drill is due: no verified passed drill within ``interval`` of ``now``."""
    last = last_passed(entries)
    if last is None or last.started_at is None:
        return True, "no passed drill on record"
    age = now - last.started_at
    if age > interval:
        return True, (
            f"the last passed drill ({last.drill_id}) was {age.days} days ago; "
            f"one is due every {interval.days} days"
        )
    left = interval - age
    return False, (
        f"the last passed drill ({last.drill_id}) was {age.days} days ago; next due in {left.days} days"
    )
