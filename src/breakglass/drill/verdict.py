"""A verdict per requirement, from what the drill measured; the deficiencies they show.

Each requirement is ``pass``, ``fail``, or ``not-run`` (the drill stopped
before it, which fails the drill too) or ``not-planned`` (the kill switch
when the plan leaves it out, which does not). The drill has **passed** only
when no requirement failed or was not run, and the system was left running.
Every failure becomes a deficiency with a stable id (``D1``, ``D2``…) that
the Technical Owner's remediation refers to.
"""

from __future__ import annotations

from typing import Any

PASS, FAIL, NOT_RUN, NOT_PLANNED = "pass", "fail", "not-run", "not-planned"


def _req(rid: str, title: str, verdict: str, detail: str, findings: list[str]) -> dict[str, Any]:
    return {"id": rid, "title": title, "verdict": verdict, "detail": detail, "findings": findings}


def _preflight(data: dict[str, Any]) -> dict[str, Any]:
    failed = [f"{c['check']}: {c['detail']}" for c in data["preflight"] if not c["ok"]]
    return _req(
        "preflight",
        "Pre-flight: credentials, readers reporting, channels, gate, kill switch, window",
        FAIL if failed else PASS,
        f"{len(data['preflight'])} checks",
        failed,
    )


def refused(row: dict[str, Any]) -> bool:
    """Whether the drill saw this reader (a ``readers`` row) refusing since the halt."""
    return row.get("halted_after_s") is not None or bool(row.get("refusing_from_start"))


def _not_refusing(r: dict[str, Any], waited: float | None) -> str:
    """Why a reader of serve's source (a ``readers`` row) is not proven to have halted."""
    who = f"{r['service']} reader {r['reader']}"
    status = r.get("status_after_halt")
    if status == "active":
        bound = f" {waited:g} s" if waited is not None else ""
        return f"{who} never halted: it still reported serving{bound} after the halt request"
    if status == "silent":
        return f"{who} went silent during the halt without reporting halted (silent is not halted)"
    if status == "stopped":
        return f"{who} stopped reporting (closed) during the halt without reporting halted"
    if status == "halted":
        return (
            f"{who} reported halted only since {r.get('reported_flip_at') or 'its start'}, "
            "before the halt request: the drill did not see it halt"
        )
    return f"{who} was not seen refusing"


def _halt_time(data: dict[str, Any]) -> dict[str, Any]:
    title = "Halted within the declared time"
    plan = data["plan"]
    declared = plan["declared_halt_time_s"]
    if data["halt"] is None:
        return _req("halt-time", title, NOT_RUN, "the drill did not halt", [])
    readers = data["readers"]
    findings = []
    for wanted in plan["readers"]:
        service, count = wanted["service"], wanted["count"]
        n = sum(1 for r in readers if r["service"] == service and refused(r))
        if n < count:
            findings.append(f"{service}: {n} of {count} readers reported halted")
    # Every reader of serve's source that reported, planned count met or not: each must refuse
    # within the declared time and keep refusing until the resume.
    waited = data["halt"].get("readers_waited_s")
    for r in readers:
        if not refused(r):
            findings.append(_not_refusing(r, waited))
        elif r.get("served_while_halted"):
            findings.append(
                f"{r['service']} reader {r['reader']} reported serving again while serve was halted"
            )
        elif (r["halted_after_s"] or 0) > declared:
            findings.append(
                f"{r['service']} reader {r['reader']} refused after {r['halted_after_s']:.3f} s "
                f"(declared {declared:g} s)"
            )
    # Readers of the planned services that the halt is not proven to stop (another source, or
    # none named), found by reading the fleet again after the halt.
    findings.extend(data["not_proven"])
    refusing = [r for r in readers if refused(r)]
    slowest = max((r["halted_after_s"] or 0 for r in refusing), default=None)
    detail = (
        f"{len(refusing)} of {len(readers)} readers refusing; the slowest after {slowest:.3f} s "
        f"(declared {declared:g} s)"
        if slowest is not None
        else "no reader reported halted"
    )
    return _req("halt-time", title, FAIL if findings else PASS, detail, findings)


def _drain(data: dict[str, Any]) -> dict[str, Any]:
    title = "Work in flight drained; nothing dropped, nothing let through"
    if data["halt"] is None:
        return _req("drain", title, NOT_RUN, "the drill did not halt", [])
    if not data["traffic"]:
        return _req("drain", title, NOT_PLANNED, "no guarded endpoint in the plan", [])
    bound = data["plan"]["drain_within_s"]
    findings = []
    for t in data["traffic"]:
        if t["dropped"]:
            findings.append(
                f"{t['url']}: {t['dropped']} requests got no answer ({'; '.join(t['dropped_examples'])})"
            )
        if t["leaked"]:
            findings.append(
                f"{t['url']}: {t['leaked']} requests served while every reader reported halted"
            )
        if t["refused"] == 0:
            findings.append(f"{t['url']}: no request was refused")
        if t["drained_after_s"] is not None and t["drained_after_s"] > bound:
            findings.append(
                f"{t['url']}: in-flight work took {t['drained_after_s']:.3f} s (bound {bound:g} s)"
            )
    detail = "; ".join(
        # Sent before the halt but reaching the service after it: refused, not drained, so the
        # two counts add up to what was in flight.
        f"{t['in_flight_at_halt']} in flight ({t['drained']} drained, "
        f"{t.get('refused_on_arrival', 0)} refused on arrival), {t['refused']} refused in all, "
        f"{t['dropped']} dropped"
        for t in data["traffic"]
    )
    return _req("drain", title, FAIL if findings else PASS, detail, findings)


def _alerts(data: dict[str, Any]) -> dict[str, Any]:
    title = "Every group alerted and acknowledging within its timeframe"
    plan = data["plan"]
    if not plan["groups"]:
        return _req("alerts", title, NOT_PLANNED, "the plan names no group", [])
    if not data["notifications"]:
        return _req(
            "alerts", title, NOT_RUN, "the drill stopped before the alerts were followed", []
        )
    findings = []
    alert_within = plan["alert_within_s"]
    for g in data["notifications"]:
        delivered, acked = g["delivered_after_s"], g["acknowledged_after_s"]
        if delivered is None:
            why = "; ".join(
                f"{c['channel']} {c['state']} after {c['attempts']} attempts: {c['detail']}"
                for c in g["channels"]
            )
            findings.append(
                f"{g['group']}: never alerted ({g['undelivered']} undelivered"
                + (f"; {why})" if why else ")")
            )
        elif delivered > alert_within:
            findings.append(
                f"{g['group']}: alerted after {delivered:.3f} s (bound {alert_within:g} s)"
            )
        if acked is None:
            findings.append(f"{g['group']}: never acknowledged (timeframe {g['timeframe_s']:g} s)")
        elif acked > g["timeframe_s"]:
            findings.append(
                f"{g['group']}: acknowledged after {acked:.3f} s (timeframe {g['timeframe_s']:g} s)"
            )
    acked_n = sum(1 for g in data["notifications"] if g["acknowledged_after_s"] is not None)
    detail = f"{acked_n} of {len(data['notifications'])} groups acknowledged"
    return _req("alerts", title, FAIL if findings else PASS, detail, findings)


def _kill_switch(data: dict[str, Any]) -> dict[str, Any]:
    title = "Kill switch halted and verified"
    ks = data["kill_switch"]
    if not data["plan"]["kill_switch"]:
        return _req("kill-switch", title, NOT_PLANNED, "not exercised (not in the plan)", [])
    if not ks.get("exercised"):
        return _req("kill-switch", title, NOT_RUN, "the drill stopped before the kill switch", [])
    findings = []
    if ks.get("halt_verdict") != "HALTED" or ks.get("state_after_halt") != "halted":
        findings.append(
            f"halt: {ks.get('halt_verdict')}, the switch then read {ks.get('state_after_halt')}"
        )
    if ks.get("state_after_resume") != "active":
        findings.append(f"after the resume the switch read {ks.get('state_after_resume')}")
    detail = f"halt {ks.get('halt_verdict')} in {ks.get('halt_took_s')} s; resume {ks.get('resume_verdict')}"
    return _req("kill-switch", title, FAIL if findings else PASS, detail, findings)


def _resumption(data: dict[str, Any]) -> dict[str, Any]:
    title = "Resumption followed the criteria"
    res = data["resumption"]
    if "gate_after" not in res:
        return _req("resumption", title, NOT_RUN, "the gate was not walked", [])
    findings = [f"{s['what']} by {s['by']}: {s['detail']}" for s in res["steps"] if not s["ok"]]
    missing = res["gate_after"].get("missing") or []
    findings.extend(f"the gate still missed: {m}" for m in missing)
    if res.get("classification") != "drill" or "by" not in res:
        findings.append("the system was not resumed through the gate")
    record = res.get("record") or {}
    if record and record.get("classification") not in (None, "drill"):
        findings.append(f"the suspension closed as {record.get('classification')}")
    detail = (
        f"{len(res['steps'])} steps; resumed by {res.get('by')}" if "by" in res else "not resumed"
    )
    return _req("resumption", title, FAIL if findings else PASS, detail, findings)


def _back(data: dict[str, Any]) -> dict[str, Any]:
    title = "Every reader back after the resume"
    back = data["back"]
    if back is None:
        return _req("back", title, NOT_RUN, "the drill did not resume", [])
    bound = data["plan"]["resume_within_s"]
    findings = []
    if back["readers_back"] < back["expected"]:
        findings.append(f"{back['readers_back']} of {back['expected']} readers back")
    gone = {"halted": "still refusing", "silent": "went silent", "stopped": "stopped (closed)"}
    findings.extend(
        f"{r['service']} reader {r['reader']} not back: "
        f"{gone.get(r['status_after_resume'], 'no longer reported')}"
        for r in data["readers"]
        if "status_after_resume" in r and r.get("back_after_resume_s") is None
    )
    if back["slowest_s"] is not None and back["slowest_s"] > bound:
        findings.append(
            f"the last reader was back after {back['slowest_s']:.3f} s (bound {bound:g} s)"
        )
    findings.extend(
        f"{t['url']}: nothing served after the resume"
        for t in data["traffic"]
        if not t["served_after_resume"]
    )
    detail = f"{back['readers_back']} of {back['expected']} readers back"
    return _req("back", title, FAIL if findings else PASS, detail, findings)


def judge(data: dict[str, Any]) -> None:
    """Add ``requirements``, ``deficiencies``, ``remediation`` and ``verdict`` to the drill's data."""
    requirements = [
        _preflight(data),
        _halt_time(data),
        _drain(data),
        _alerts(data),
        _kill_switch(data),
        _resumption(data),
        _back(data),
    ]
    deficiencies: list[dict[str, Any]] = []
    for req in requirements:
        if req["verdict"] not in (FAIL, NOT_RUN):
            continue
        for text in req["findings"] or [req["detail"]]:
            deficiencies.append(
                {"id": f"D{len(deficiencies) + 1}", "requirement": req["id"], "text": text}
            )
    restore = data.get("restore") or {}
    if restore.get("needed") and not restore.get("restored"):
        deficiencies.insert(
            0,
            {
                "id": f"D{len(deficiencies) + 1}",
                "requirement": "restore",
                "text": f"NOT RESTORED: {restore.get('detail')}",
            },
        )
    if data.get("aborted") and not any(d["requirement"] == "abort" for d in deficiencies):
        deficiencies.append(
            {
                "id": f"D{len(deficiencies) + 1}",
                "requirement": "abort",
                "text": str(data["aborted"]),
            }
        )
    data["requirements"] = requirements
    data["deficiencies"] = deficiencies
    data["remediation"] = []
    data["verdict"] = "passed" if not deficiencies else "failed"
