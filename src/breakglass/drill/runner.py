"""``breakglass drill run``: the whole procedure, on purpose, measured.

Order: pre-flight (nothing is touched when it fails), traffic on the guarded
endpoints, the halt through serve as the drill lead, every reader refusing
(the fleet reports), the kill switch if the plan says so, every group
alerted and acknowledging, the resumption gate walked by the participants,
the resume, every reader back. Whatever happens after the halt (a failed
step, Ctrl-C), :meth:`DrillRunner.run` restores the system through the same
gate and still returns the data for the report: the report says what was
restored and what was not. A system the drill could not restore stays
halted, which is the safe side, and the report says so first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms, parse_iso
from breakglass.drill.clients import Api, DrillStepError
from breakglass.drill.traffic import Traffic
from breakglass.drill.verdict import judge, refused
from breakglass.safe_text import safe
from breakglass.wording import agrees, counted

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass.drill.plan import DrillPlan
    from breakglass.policy import Policy

SCHEMA = "breakglass.drill-report/v1"
POLL = 0.1
WARMUP = 1.0
NAMED = 10
"""Readers named in one finding (the count says how many in all)."""
REPORTING = ("active", "halted")
"""Fleet statuses of a reader still reporting (``silent`` and ``stopped`` are not)."""
APPROVER_ROLES = ("approver", "admin")
HALTER_ROLES = ("halter", "approver", "admin")


def new_drill_id(now: datetime) -> str:
    """``drill-20261205T103000Z-1a2b``: sortable, unique enough for one organisation."""
    return f"drill-{now.strftime('%Y%m%dT%H%M%SZ')}-{os.urandom(2).hex()}"


class _Interrupted(Exception):  # noqa: N818 -- a signal, not an error
    pass


@dataclass
class _State:
    halted: bool = False
    resumed: bool = False
    switch_halted: bool = False
    switch_resumed: bool = False
    halt_sent_mono: float | None = None
    halt_sent_at: datetime | None = None
    all_halted_mono: float | None = None
    resume_sent_mono: float | None = None
    resume_sent_at: datetime | None = None
    suspension_id: str | None = None
    traffic: list[Traffic] = field(default_factory=list)
    must_stop: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every reader of serve's source seen reporting since the pre-flight: its latest row."""
    known: set[str] = field(default_factory=set)
    """Every reader in any fleet read so far."""


class DrillRunner:
    """One drill of ``plan`` (``policy`` is the whole file: the groups' timeframes, the gate).

    Args:
        plan: The ``[drill]`` section.
        policy: The policy it belongs to.
        progress: Told ``(phase, text)`` as the drill goes (the terminal view).
        checks: Pre-flight results found by the caller (the evidence key), each
            ``{"check", "ok", "detail"}``.
        clock: Wall and monotonic time.
    """

    def __init__(
        self,
        plan: DrillPlan,
        policy: Policy,
        *,
        progress: Callable[[str, str], None] | None = None,
        checks: list[dict[str, Any]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.plan = plan
        self.policy = policy
        self._progress = progress
        self._clock = clock
        self._state = _State()
        started = clock.now()
        self.data: dict[str, Any] = {
            "schema": SCHEMA,
            "drill_id": new_drill_id(started),
            "environment": plan.environment,
            "system": policy.notify.system,
            "serve_url": plan.serve_url,
            "lead": plan.lead,
            "participants": [
                {"name": p.name, "role": p.role, "approves": p.approves} for p in plan.participants
            ],
            "plan": {
                "declared_halt_time_s": plan.declared_halt_time.total_seconds(),
                "alert_within_s": plan.alert_within.total_seconds(),
                "drain_within_s": plan.drain_within.total_seconds(),
                "resume_within_s": plan.resume_within.total_seconds(),
                "readers": [r.model_dump() for r in plan.readers],
                "groups": list(plan.groups),
                "criteria": [c.item for c in plan.criteria],
                "kill_switch": plan.kill_switch is not None,
                "interval_days": round(plan.interval.total_seconds() / 86400, 2),
            },
            "started_at": isoformat_ms(started),
            "ended_at": None,
            "interrupted": False,
            "aborted": None,
            "preflight": list(checks or []),
            "halt": None,
            "readers": [],
            "not_proven": [],
            "traffic": [],
            "notifications": [],
            "kill_switch": {"exercised": False},
            "resumption": {"steps": []},
            "back": None,
            "restore": None,
            "timeline": [],
            "limitations": [],
        }
        self._serve: dict[str, Api] = {}
        self._live = False

    # ------------------------------------------------------------------ plumbing

    def say(self, phase: str, text: str) -> None:
        """Tell the progress view and keep the line in the timeline."""
        at = self._clock.now()
        t0 = self._state.halt_sent_at
        self.data["timeline"].append(
            {
                "at": isoformat_ms(at),
                "t_s": None if t0 is None else round((at - t0).total_seconds(), 3),
                "phase": phase,
                "text": text,
            }
        )
        if self._progress is not None:
            self._progress(phase, text)
        if self._live:
            self._show_on_console(phase, text)

    def _show_on_console(self, phase: str, text: str) -> None:
        # The console's live view is a convenience: one failure switches it off, never the drill.
        try:
            self._api(self.plan.lead).post(
                "/v1/drill/progress",
                {"drill_id": self.data["drill_id"], "phase": phase[:20], "text": safe(text)[:500]},
            )
        except DrillStepError as exc:
            self._live = False
            self.data["limitations"].append(f"no live view on serve's console: {exc}")

    def _api(self, name: str) -> Api:
        api = self._serve.get(name)
        if api is None:
            who = self.plan.participant(name)
            token = who.token if who is not None else None
            api = Api(self.plan.serve_url, token, f"serve (as {name})")
            self._serve[name] = api
        return api

    def _switch(self, token_index: int | None = None) -> Api:
        switch = self.plan.kill_switch
        assert switch is not None  # noqa: S101 -- only called when the plan has one
        token = switch.token if token_index is None else switch.approver_tokens[token_index]
        key = f"switch-{token_index}"
        api = self._serve.get(key)
        if api is None:
            api = Api(switch.url, token, "kill switch")
            self._serve[key] = api
        return api

    def _since_halt(self, moment: str | None) -> float | None:
        if moment is None or self._state.halt_sent_at is None:
            return None
        return round((parse_iso(moment) - self._state.halt_sent_at).total_seconds(), 3)

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        """Run the drill; never raises for a failed step (the report says it)."""
        try:
            try:
                if self._preflight():
                    self._exercise()
                else:
                    self.data["aborted"] = "pre-flight failed: nothing was halted"
                    self.say("preflight", "FAILED: nothing was halted")
            except KeyboardInterrupt:
                self.data["interrupted"] = True
                self.data["aborted"] = "interrupted (Ctrl-C)"
                self.say("abort", "interrupted: restoring the system")
            except DrillStepError as exc:
                self.data["aborted"] = str(exc)
                self.say("abort", f"FAILED: {exc}")
            self._restore()
        finally:
            for traffic in self._state.traffic:
                traffic.stop()
            self._judge_traffic()
            self.data["ended_at"] = isoformat_ms(self._clock.now())
            self._limitations()
            judge(self.data)
            if self._live:
                self._show_on_console(
                    "verdict",
                    f"{self.data['verdict']}: {len(self.data['deficiencies'])} deficiencies",
                )
            for api in self._serve.values():
                api.close()
        return self.data

    # ------------------------------------------------------------------ pre-flight

    def _check(self, name: str, ok: bool, detail: str) -> bool:  # noqa: FBT001 -- reads as a result
        """Keep one pre-flight result and show it; whether it passed."""
        self.data["preflight"].append({"check": name, "ok": ok, "detail": detail})
        self.say("preflight", f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return ok

    def _preflight(self) -> bool:
        plan = self.plan
        self.say("preflight", f"drill {self.data['drill_id']} in {plan.environment}")
        ok = all(c.get("ok") for c in self.data["preflight"])
        try:
            self._api(plan.lead).get("/healthz")
        except DrillStepError as exc:
            return self._check("serve reachable", ok=False, detail=str(exc)) and False
        ok &= self._check("serve reachable", ok=True, detail=plan.serve_url)
        ok &= self._credentials()
        ok &= self._system_active()
        ok &= self._readers_reporting()
        ok &= self._channels()
        ok &= self._gate_ready()
        ok &= self._switch_reachable()
        ok &= self._window()
        return ok

    def _credentials(self) -> bool:
        ok = True
        for person in self.plan.participants:
            if person.token is None:
                continue
            try:
                who = self._api(person.name).get("/v1/whoami")
            except DrillStepError as exc:
                ok &= self._check(f"credentials of {person.name}", ok=False, detail=str(exc))
                continue
            role, name = who.get("role"), who.get("name")
            problems = []
            if name != person.name:
                problems.append(f"the token is {name!r}'s")
            if person.name == self.plan.lead and role not in HALTER_ROLES:
                problems.append(f"the lead must halt; the token is {role}")
            if person.approves and role not in APPROVER_ROLES:
                problems.append(f"approves, but the token is {role}")
            ok &= self._check(
                f"credentials of {person.name}",
                not problems,
                "; ".join(problems) or f"{who.get('kind')} {name}, role {role}",
            )
        return ok

    def _system_active(self) -> bool:
        status = self._api(self.plan.lead).get("/v1/status")
        suspension = status.get("suspension")
        active = status.get("active")
        if suspension:
            # A drill must never "resume" a real halt.
            return self._check(
                "system running",
                ok=False,
                detail=f"a suspension is open ({suspension.get('id')}): drills start on a running system",
            )
        return self._check("system running", active is True, f"serve decides active={active}")

    def _fleet(self) -> list[dict[str, Any]]:
        return list(self._api(self.plan.lead).get("/v1/fleet").get("reader_list") or [])

    def _not_proven(self, body: dict[str, Any]) -> dict[str, list[str]]:
        """Per service in ``/v1/fleet``'s ``body``: why some readers are not proven to stop."""
        by_service: dict[str, list[dict[str, Any]]] = {}
        for reader in body.get("reader_list") or []:
            by_service.setdefault(reader["service"], []).append(reader)
        serve_sources = body.get("source_ids")
        found = {s: not_proven(rows, serve_sources) for s, rows in by_service.items()}
        return {s: problems for s, problems in found.items() if problems}

    def _readers_reporting(self) -> bool:
        body = self._api(self.plan.lead).get("/v1/fleet")
        readers = list(body.get("reader_list") or [])
        self._note_same_source(readers)
        unproven = self._not_proven(body)
        ok = True
        for wanted in self.plan.readers:
            active = [
                r for r in readers if r["service"] == wanted.service and r["status"] == "active"
            ]
            problems = unproven.pop(wanted.service, [])
            ok &= self._check(
                f"readers of {wanted.service} reporting",
                len(active) >= wanted.count and not problems,
                "; ".join([f"{len(active)} active, {wanted.count} must stop", *problems]),
            )
        silent = [
            reader_key(r)
            for r in readers
            if r["status"] == "silent"
            and (
                r.get("source_match") == "same"
                or r["service"] in {w.service for w in self.plan.readers}
            )
        ]
        if silent:
            # Not reporting before the drill began: nothing the drill does can be seen on them.
            self.data["limitations"].append(
                f"{counted(len(silent), 'reader')} already silent at the pre-flight, not judged: "
                f"{_names(silent)}"
            )
        # Outside the plan the drill proves nothing either way; the report still says so.
        self.data["limitations"].extend(
            f"readers of {service}, outside the plan: {problem}"
            for service, problems in unproven.items()
            for problem in problems
        )
        return ok

    def _channels(self) -> bool:
        ok = True
        groups = self.policy.notify.groups
        for name in self.plan.groups:
            group = groups[name]
            ok &= self._check(
                f"channels of {name}",
                bool(group.channels) or group.kind.value == "deployers",
                ", ".join(c.type for c in group.channels) or "each deployer's channels",
            )
        if self.plan.groups:
            try:
                self._api(self.plan.lead).get("/v1/notifications/drill-preflight")
            except DrillStepError as exc:
                ok &= self._check("serve runs the notification chain", ok=False, detail=str(exc))
            else:
                ok &= self._check(
                    "serve runs the notification chain", ok=True, detail="/v1/notifications answers"
                )
        return ok

    def _gate_ready(self) -> bool:
        gate = self._api(self.plan.lead).get("/v1/resume")
        if not gate.get("gated"):
            return self._check(
                "resumption gate",
                ok=False,
                detail="serve has no resumption policy: there is no gate to walk",
            )
        needed = int(self.policy.resume.approvals)
        have = len(self.plan.approvers)
        return self._check(
            "resumption gate",
            have >= needed,
            f"{counted(needed, 'approval')} needed, {counted(have, 'approver')} "
            f"{agrees(have, 'takes', 'take')} part",
        )

    def _switch_reachable(self) -> bool:
        if self.plan.kill_switch is None:
            return True
        try:
            health = self._switch().get("/v1/health")
            found = self._switch().get("/v1/preflight")
        except DrillStepError as exc:
            return self._check("kill switch reachable", ok=False, detail=str(exc))
        errors = [f for f in found.get("findings", []) if f.get("severity") == "error"]
        return self._check(
            "kill switch reachable",
            bool(found.get("ok")) and not errors,
            f"switch {health.get('switch')}: pre-flight "
            + ("ok" if found.get("ok") else "; ".join(str(f.get("detail")) for f in errors)),
        )

    def _window(self) -> bool:
        if not self.plan.windows:
            return self._check("maintenance window", ok=True, detail="none declared: any time")
        now = self._clock.now().astimezone(UTC)
        day = now.strftime("%a").lower()
        moment = now.time().replace(tzinfo=None)
        for window in self.plan.windows:
            if window.start <= window.end:
                inside = day in window.days and window.start <= moment < window.end
            else:
                inside = day in window.days and (moment >= window.start or moment < window.end)
            if inside:
                return self._check(
                    "maintenance window",
                    ok=True,
                    detail=f"{day} {window.start:%H:%M}-{window.end:%H:%M} UTC",
                )
        return self._check(
            "maintenance window", ok=False, detail=f"{now:%a %H:%M} UTC is outside every window"
        )

    # ------------------------------------------------------------------ the exercise

    def _exercise(self) -> None:
        self._live = True
        self.say(
            "preflight",
            f"drill {self.data['drill_id']} in {self.plan.environment}: pre-flight passed",
        )
        for reader in self.plan.readers:
            if reader.url is not None:
                self._state.traffic.append(Traffic(reader.url).start())
        if self._state.traffic:
            self.say(
                "traffic", f"traffic on {counted(len(self._state.traffic), 'guarded endpoint')}"
            )
            # Halt only once every endpoint is being served, so that work is in flight at the halt.
            for traffic in self._state.traffic:
                if not traffic.wait_served(traffic.clients, 30.0):
                    self.say("traffic", f"{traffic.url} served nothing in 30 s before the halt")
            time.sleep(WARMUP / 2)
        self._halt()
        self._await_readers_halted()
        if self.plan.kill_switch is not None:
            self._switch_halt()
        self._await_alerts()
        self._walk_gate()
        self._read_while_halted()
        if self.plan.kill_switch is not None:
            self._switch_resume()
        self._resume()
        self._await_readers_back()

    def _halt(self) -> None:
        state = self._state
        drill_id = self.data["drill_id"]
        body = {
            "reason": f"[DRILL] {drill_id}: annual break-glass drill in {self.plan.environment}",
            "incident": f"DRILL-{drill_id.removeprefix('drill-')}",
            "personal_data_affected": self.plan.personal_data_affected,
            "business_continuity": self.plan.business_continuity,
        }
        self.say("halt", f"halting through serve as {self.plan.lead}")
        state.halt_sent_at = self._clock.now()
        state.halt_sent_mono = self._clock.monotonic()
        answer = self._api(self.plan.lead).post("/v1/halt", body)
        acked = self._clock.monotonic()
        state.halted = True
        state.suspension_id = answer.get("suspension_id")
        self.data["halt"] = {
            "requested_at": isoformat_ms(state.halt_sent_at),
            "acknowledged_after_s": round(acked - state.halt_sent_mono, 3),
            "by": (answer.get("actor") or {}).get("name"),
            "suspension_id": state.suspension_id,
            "incident": body["incident"],
            "targets": [
                {"target": t.get("target"), "ok": t.get("ok"), "latency_ms": t.get("latency_ms")}
                for t in answer.get("targets") or []
            ],
            "problems": answer.get("problems") or [],
        }
        self.say(
            "halt",
            f"acknowledged in {acked - state.halt_sent_mono:.3f} s; suspension {state.suspension_id}",
        )

    def _note_same_source(self, fleet: list[dict[str, Any]]) -> set[str]:
        """Keep the latest row of every reader of serve's source seen reporting, in any service.

        Each must stop when serve halts: one that reports and never halts, or goes silent, is
        a deficiency however many others of its service did. Returns the readers first seen.
        """
        must_stop = self._state.must_stop
        new = set()
        for reader in fleet:
            key = reader_key(reader)
            if key in must_stop:
                must_stop[key] = reader
            elif reader.get("source_match") == "same" and reader["status"] in REPORTING:
                must_stop[key] = reader
                new.add(key)
        self._state.known.update(reader_key(r) for r in fleet)
        return new

    def _await_readers(
        self, *, halted: bool, since: datetime, bound: float, judged: set[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Poll the fleet until ``judged`` and the plan's counts report ``halted`` (or active).

        Each reader must have got there since ``since``; the wait lasts ``bound`` seconds at
        most. During the halt, every reader of serve's source first seen reporting joins ``judged``.

        Returns:
            Each reader's first row showing the flip, and each reader's latest row.
        """
        wanted = {r.service: r.count for r in self.plan.readers}
        status = "halted" if halted else "active"
        since -= timedelta(milliseconds=1)  # reports carry milliseconds; the mark has microseconds
        deadline = self._clock.monotonic() + bound
        seen: dict[str, dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        while True:
            fleet = self._fleet()
            known = set(self._state.known)
            new = self._note_same_source(fleet)
            if halted:
                judged |= new
            for reader in fleet:
                key = reader_key(reader)
                latest[key] = reader
                if (
                    (reader["service"] in wanted or key in judged)
                    and reader["status"] == status
                    and _flipped_since(reader, since, first_seen=halted and key not in known)
                ):
                    seen.setdefault(key, reader)
            counts = {s: sum(1 for r in seen.values() if r["service"] == s) for s in wanted}
            settled = all(k in seen and latest.get(k, {}).get("status") == status for k in judged)
            if (settled and all(counts[s] >= n for s, n in wanted.items())) or (
                self._clock.monotonic() > deadline
            ):
                return seen, latest
            time.sleep(POLL)

    def _await_readers_halted(self) -> None:
        state = self._state
        assert state.halt_sent_at is not None  # noqa: S101 -- set by _halt
        declared = self.plan.declared_halt_time.total_seconds()
        # Wait past the declared time, so a slow reader is measured rather than just failed.
        bound = max(10.0, 3 * declared)
        judged = set(state.must_stop)
        seen, latest = self._await_readers(
            halted=True, since=state.halt_sent_at, bound=bound, judged=judged
        )
        state.all_halted_mono = self._clock.monotonic()
        rows = []
        for key in seen.keys() | judged:
            reader = latest.get(key) or state.must_stop[key]
            rows.append(self._reader_row(reader, refusal=seen.get(key)))
        rows.sort(
            key=lambda r: (r["halted_after_s"] is None, r["halted_after_s"] or 0.0, r["reader"])
        )
        self.data["readers"] = rows
        self.data["halt"]["readers_waited_s"] = bound
        self._read_while_halted()
        refusing = sum(1 for r in rows if refused(r))
        slowest = max(
            (r["halted_after_s"] for r in rows if r["halted_after_s"] is not None), default=None
        )
        self.say(
            "readers",
            f"{refusing} of {max(self.plan.expected_readers, len(rows))} readers refusing"
            + (f"; the last after {slowest:.3f} s" if slowest is not None else ""),
        )

    def _reader_row(
        self, reader: dict[str, Any], *, refusal: dict[str, Any] | None
    ) -> dict[str, Any]:
        """One reader as the evidence names it: who, where, which service and source, when it refused.

        Args:
            reader: Its latest ``/v1/fleet`` row.
            refusal: Its row that showed it refusing since the halt (``None``: not seen).
        """
        flipped = None if refusal is None else refusal.get("flipped_at")
        return {
            "reader": reader_key(reader),
            "service": reader["service"],
            "host": reader["host"],
            "pid": reader["pid"],
            "role": reader["role"],
            "provider": reader["provider"],
            "source_match": reader.get("source_match"),
            "refused_at": flipped,
            "halted_after_s": self._since_halt(flipped),
            "refusing_from_start": refusal is not None and flipped is None,
            "status_after_halt": reader["status"],
            "reported_flip_at": reader.get("flipped_at"),
            "back_after_resume_s": None,
        }

    def _read_while_halted(self) -> None:
        """Read the fleet while serve is halted: every reader of serve's source still refusing.

        Done after the wait and again just before the resume: a reader of serve's source that
        reports serving in between (it went back, or appeared) is a deficiency, as is a reader
        of a planned service not proven to stop.
        """
        state = self._state
        assert state.halt_sent_at is not None  # noqa: S101 -- set by _halt
        body = self._api(self.plan.lead).get("/v1/fleet")
        known = set(state.known)
        self._note_same_source(list(body.get("reader_list") or []))
        rows = {r["reader"]: r for r in self.data["readers"]}
        since = state.halt_sent_at - timedelta(milliseconds=1)
        for key, reader in state.must_stop.items():
            row = rows.get(key)
            if row is None:
                # First seen now: not watched halting, judged by what it reports now.
                halted = reader["status"] == "halted" and _flipped_since(
                    reader, since, first_seen=key not in known
                )
                row = self._reader_row(reader, refusal=reader if halted else None)
                self.data["readers"].append(row)
                rows[key] = row
            if reader["status"] == "active":
                row["served_while_halted"] = True
        # Read again: a reader of another source started since the pre-flight still fails it.
        planned = {r.service for r in self.plan.readers}
        for service, problems in self._not_proven(body).items():
            if service in planned:
                for problem in problems:
                    line = f"{service}: {problem}"
                    if line not in self.data["not_proven"]:
                        self.data["not_proven"].append(line)

    def _await_alerts(self) -> None:
        if not self.plan.groups:
            return
        state = self._state
        if state.suspension_id is None:
            self.data["limitations"].append(
                "serve gave no suspension id: notifications not followed"
            )
            return
        groups = self.policy.notify.groups
        wait = (
            self.plan.ack_wait.total_seconds()
            if self.plan.ack_wait is not None
            else max(groups[g].deadline.total_seconds() for g in self.plan.groups)
        )
        self.say(
            "alerts", f"waiting up to {wait:g} s for {', '.join(self.plan.groups)} to acknowledge"
        )
        deadline = self._clock.monotonic() + wait
        told: set[str] = set()
        acked: set[str] = set()
        rows: dict[str, dict[str, Any]] = {}
        while True:
            body = self._api(self.plan.lead).get(f"/v1/notifications/{state.suspension_id}")
            rows = {g["group"]: g for g in body.get("groups") or []}
            for name in self.plan.groups:
                row = rows.get(name) or {}
                if row.get("delivered_at") and name not in told:
                    told.add(name)
                    self.say("alerts", f"{name}: delivered")
                if row.get("acknowledged_at") and name not in acked:
                    acked.add(name)
                    self.say("alerts", f"{name}: acknowledged by {row.get('acknowledged_by')}")
            if acked >= set(self.plan.groups) or self._clock.monotonic() > deadline:
                break
            time.sleep(POLL * 2.5)
        self.data["notifications"] = [
            self._group_row(name, rows.get(name)) for name in self.plan.groups
        ]

    def _group_row(self, name: str, row: dict[str, Any] | None) -> dict[str, Any]:
        group = self.policy.notify.groups[name]
        row = row or {}
        channels = [
            {
                "channel": c.get("channel"),
                "type": c.get("type"),
                "event": c.get("event"),
                "state": c.get("state"),
                "attempts": c.get("attempts"),
                "first_attempt_after_s": self._since_halt(c.get("first_attempt_at")),
                "done_after_s": self._since_halt(c.get("done_at")),
                "detail": c.get("detail"),
            }
            for c in row.get("channels") or []
        ]
        return {
            "group": name,
            "kind": group.kind.value,
            "timeframe_s": group.deadline.total_seconds(),
            "sent_after_s": self._since_halt(row.get("sent_at")),
            "delivered_after_s": self._since_halt(row.get("delivered_at")),
            "acknowledged_after_s": self._since_halt(row.get("acknowledged_at")),
            "acknowledged_by": row.get("acknowledged_by"),
            "acknowledged_via": row.get("acknowledged_via"),
            "deadline": row.get("deadline"),
            "undelivered": row.get("undelivered", 0),
            "channels": channels,
        }

    def _switch_halt(self) -> None:
        self.say("kill-switch", "halting through the kill switch")
        started = self._clock.monotonic()
        status, answer = self._switch().call(
            "POST", "/v1/halt", ok=(200, 502), json={"reason": f"[DRILL] {self.data['drill_id']}"}
        )
        took = round(self._clock.monotonic() - started, 3)
        self._state.switch_halted = True
        verified = self._switch().get("/v1/status")
        record = self.data["kill_switch"]
        record.update(
            {
                "exercised": True,
                "halt_verdict": answer.get("verdict") if isinstance(answer, dict) else None,
                "halt_status": status,
                "halt_took_s": took,
                "state_after_halt": verified.get("state"),
                "episode": (verified.get("episode") or {}).get("id"),
                "targets": [
                    {"target": t.get("target"), "halted": t.get("halted")}
                    for t in verified.get("targets") or []
                ],
            }
        )
        self.say(
            "kill-switch",
            f"{record['halt_verdict']} in {took:.3f} s; switch reads {record['state_after_halt']}",
        )

    def _switch_resume(self) -> None:
        switch = self.plan.kill_switch
        assert switch is not None  # noqa: S101 -- called only with a kill switch
        record = self.data["kill_switch"]
        reason = f"[DRILL] {self.data['drill_id']}: drill complete"
        for n in range(len(switch.approver_tokens)):
            self._switch(n).call("POST", "/v1/approvals", json={"reason": reason})
        started = self._clock.monotonic()
        status, answer = self._switch().call(
            "POST", "/v1/resume", ok=(200, 502, 403), json={"reason": reason}
        )
        record["resume_status"] = status
        record["resume_verdict"] = answer.get("verdict") if isinstance(answer, dict) else None
        record["resume_took_s"] = round(self._clock.monotonic() - started, 3)
        record["state_after_resume"] = self._switch().get("/v1/status").get("state")
        self._state.switch_resumed = record["state_after_resume"] == "active"
        self.say(
            "kill-switch",
            f"resume: {record['resume_verdict'] or status}; switch reads {record['state_after_resume']}",
        )

    def _walk_gate(self) -> None:
        steps = self.data["resumption"]["steps"]

        def step(who: str, what: str, path: str, body: dict[str, Any]) -> None:
            at = self._clock.now()
            try:
                self._api(who).post(path, body)
            except DrillStepError as exc:
                steps.append(
                    {
                        "by": who,
                        "what": what,
                        "at": isoformat_ms(at),
                        "ok": False,
                        "detail": str(exc),
                    }
                )
                self.say("resume", f"FAIL {what} by {who}: {exc}")
                return
            steps.append(
                {"by": who, "what": what, "at": isoformat_ms(at), "ok": True, "detail": ""}
            )
            self.say("resume", f"{what} by {who}")

        self.data["resumption"]["gate_before"] = self._api(self.plan.lead).get("/v1/resume")
        for criterion in self.plan.criteria:
            step(
                criterion.by,
                f"checklist {criterion.item}",
                f"/v1/resume/checklist/{criterion.item}",
                {"answer": criterion.answer},
            )
        for person in self.plan.approvers:
            step(
                person.name,
                "approval",
                "/v1/resume/approvals",
                {"comment": f"drill {self.data['drill_id']}"},
            )
        self.data["resumption"]["gate_after"] = self._api(self.plan.lead).get("/v1/resume")

    def _resumer(self) -> str:
        approvers = self.plan.approvers
        return approvers[-1].name if approvers else self.plan.lead

    def _resume(self) -> None:
        state = self._state
        who = self._resumer()
        self.say("resume", f"resuming through the gate as {who}")
        state.resume_sent_at = self._clock.now()
        state.resume_sent_mono = self._clock.monotonic()
        answer = self._api(who).post(
            "/v1/resume",
            {
                "reason": f"[DRILL] {self.data['drill_id']}: drill complete",
                "classification": "drill",
            },
        )
        state.resumed = True
        resumption = self.data["resumption"]
        resumption.update(
            {
                "by": (answer.get("actor") or {}).get("name"),
                "requested_after_s": self._since_halt(isoformat_ms(state.resume_sent_at)),
                "acknowledged_after_s": round(self._clock.monotonic() - state.resume_sent_mono, 3),
                "classification": "drill",
            }
        )
        if state.suspension_id is not None:
            try:
                record = self._api(self.plan.lead).get(f"/v1/suspensions/{state.suspension_id}")
            except DrillStepError as exc:
                self.data["limitations"].append(f"suspension record not read: {exc}")
            else:
                resumption["record"] = {
                    k: record.get(k)
                    for k in (
                        "id",
                        "status",
                        "classification",
                        "opened_at",
                        "closed_at",
                        "duration_s",
                    )
                    if k in record
                }

    def _await_readers_back(self) -> None:
        state = self._state
        assert state.resume_sent_at is not None  # noqa: S101 -- set by _resume
        # Every reader seen refusing must serve again (one never seen refusing, or seen serving
        # again before the resume, is a deficiency of the halt already).
        rows = {r["reader"]: r for r in self.data["readers"]}
        judged = {k for k, r in rows.items() if refused(r) and not r.get("served_while_halted")}
        seen, latest = self._await_readers(
            halted=False,
            since=state.resume_sent_at,
            bound=max(10.0, 3 * self.plan.resume_within.total_seconds()),
            judged=judged,
        )
        planned = {r.service for r in self.plan.readers}
        back = {
            key: round((parse_iso(r["flipped_at"]) - state.resume_sent_at).total_seconds(), 3)
            for key, r in seen.items()
            if key in judged or r["service"] in planned
        }
        for key in judged:
            rows[key]["status_after_resume"] = (latest.get(key) or {}).get("status", "gone")
            rows[key]["back_after_resume_s"] = back.get(key)
        self.data["back"] = {
            "readers_back": len(back),
            "expected": max(self.plan.expected_readers, len(judged)),
            "slowest_s": max(back.values(), default=None),
        }
        self.say("back", f"{len(back)} of {self.data['back']['expected']} readers serving again")
        if state.traffic:
            time.sleep(WARMUP)

    # ------------------------------------------------------------------ restore and judge

    def _restore(self) -> None:
        state = self._state
        if not state.halted and not state.switch_halted:
            return
        if (not state.halted or state.resumed) and (
            not state.switch_halted or state.switch_resumed
        ):
            self.data["restore"] = {
                "needed": False,
                "restored": True,
                "detail": "the drill resumed",
            }
            return
        self.say("restore", "restoring the system through the gate")
        problems = []
        try:
            if state.switch_halted and not state.switch_resumed:
                try:
                    self._switch_resume()
                except DrillStepError as exc:
                    problems.append(f"kill switch: {exc}")
            if state.halted and not state.resumed:
                try:
                    if not self.data["resumption"]["steps"]:
                        self._walk_gate()
                    self._resume()
                    self._await_readers_back()
                except DrillStepError as exc:
                    problems.append(f"serve: {exc}")
        except KeyboardInterrupt:
            problems.append("the restore was interrupted")
        restored = not problems
        self.data["restore"] = {
            "needed": True,
            "restored": restored,
            "detail": "; ".join(problems)
            or "resumed through the gate after the drill stopped early",
        }
        self.say(
            "restore",
            "restored"
            if restored
            else "NOT RESTORED: the system stays halted; " + "; ".join(problems),
        )

    def _judge_traffic(self) -> None:
        state = self._state
        if state.halt_sent_mono is None:
            return
        resume_sent = state.resume_sent_mono if state.resume_sent_mono is not None else float("inf")
        self.data["traffic"] = [
            t.judge(
                halt_sent=state.halt_sent_mono,
                all_halted=state.all_halted_mono,
                resume_sent=resume_sent,
            )
            for t in state.traffic
        ]

    def _limitations(self) -> None:
        notes = self.data["limitations"]
        if self.plan.kill_switch is None:
            notes.append("the kill switch was not exercised: the plan has no [drill.kill_switch]")
        for reader in self.plan.readers:
            if reader.url is None:
                notes.append(
                    f"in-flight work of {reader.service} not measured: the plan gives no url for it"
                )
        notes.extend(
            f"{t['url']}: nothing was in flight at the halt, so draining was not observed"
            for t in self.data["traffic"]
            if not t["in_flight_at_halt"]
        )
        notes.append(
            "reader halt times come from the readers' own reports (their clocks); "
            "alert times from serve's notification records"
        )


def _flipped_since(reader: dict[str, Any], since: datetime, *, first_seen: bool) -> bool:
    """Whether ``reader`` reached its status at or after ``since``.

    A reader whose decision has not changed since it started (``flipped_at`` null) counts only
    when ``first_seen`` during the halt: it started halted and never served in this drill.
    """
    flipped = reader.get("flipped_at")
    if flipped is None:
        return first_seen
    return parse_iso(flipped) >= since


def reader_key(reader: dict[str, Any]) -> str:
    """``host/pid/instance``: one reader process."""
    return f"{reader['host']}/{reader['pid']}/{reader['instance']}"


def not_proven(readers: list[dict[str, Any]], serve_sources: list[str] | None) -> list[str]:
    """Why some of ``readers`` (``/v1/fleet`` rows) are not proven to stop when serve halts.

    One sentence per kind, naming the readers. A reader of ``another`` source
    will not stop. Any other mark than ``same`` (a reader that names no source,
    a worker whose relay does not report, a serve that cannot name its own or
    does not compare) proves nothing, and the drill's evidence claims only what
    is proven: it fails too. A stopped reader reads nothing and is left out.

    Args:
        readers: The rows, each with its ``source_match``.
        serve_sources: serve's own ``source_ids`` (``None``: serve did not send them).
    """
    live = [r for r in readers if r.get("status") != "stopped"]
    another = [reader_key(r) for r in live if r.get("source_match") == "another"]
    unknown = [reader_key(r) for r in live if r.get("source_match") not in ("same", "another")]
    found = []
    if another:
        verb = "reads" if len(another) == 1 else "read"
        found.append(
            f"{len(another)} {verb} another source and will NOT stop when serve halts: "
            + _names(another)
        )
    if unknown:
        why = (
            "serve does not compare its readers' sources: an older serve"
            if serve_sources is None
            else "serve cannot name the source it halts"
            if not serve_sources
            else "no source named: an older reader, or a worker whose relay does not report"
        )
        found.append(
            f"{len(unknown)} not proven to stop when serve halts ({why}): {_names(unknown)}"
        )
    return found


def _names(keys: list[str]) -> str:
    more = len(keys) - NAMED
    return ", ".join(keys[:NAMED]) + (f" and {more} more" if more > 0 else "")
