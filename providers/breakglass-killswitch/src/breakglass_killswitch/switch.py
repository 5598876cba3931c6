"""The switch: halt every target, verify it, resume only what was recorded and only when authorised.

A halt is never gated and never refused: every target is halted in parallel,
each one independently, and each is polled until it is verifiably not serving
or the declared bound (``halt_bound``) has passed. A target that did not reach
zero makes the whole halt ``NOT HALTED``, said first and loudly.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass_killswitch.audit import actor_dict, build_record, iso, now
from breakglass_killswitch.authorisation import load_public_key, verify_resume
from breakglass_killswitch.config import KubeTarget, SageMakerTarget
from breakglass_killswitch.errors import (
    KillswitchError,
    NothingHaltedError,
    ResumeRefused,
    StoreError,
    TargetError,
)
from breakglass_killswitch.targets import Check, Finding

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass_killswitch.config import SwitchConfig
    from breakglass_killswitch.kube import Kube
    from breakglass_killswitch.sagemaker import AwsClients
    from breakglass_killswitch.store import Store
    from breakglass_killswitch.targets import Target

logger = logging.getLogger("breakglass_killswitch")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: the authenticated identity (a token's name, the OS account, the control plane)."""

    kind: str
    id: str

    def as_dict(self) -> dict[str, str | None]:
        """The record's actor object."""
        return actor_dict(self.kind, self.id)


@dataclass(slots=True)
class Outcome:
    """What happened to one target."""

    target: str
    ok: bool
    detail: str
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "target": self.target,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "notes": self.notes,
            "error": self.error,
        }


@dataclass(slots=True)
class Report:
    """A halt's or a resume's result."""

    action: str
    episode: str
    ok: bool
    started_at: str
    elapsed_s: float
    bound_s: float
    outcomes: list[Outcome]
    actor: Actor
    reason: str

    def summary(self) -> str:
        """One line, the verdict first."""
        failed = [o for o in self.outcomes if not o.ok]
        if self.action == "halt":
            if not self.ok:
                names = "; ".join(f"{o.target}: {o.error or o.detail}" for o in failed)
                return (
                    f"NOT HALTED: {len(failed)} of {len(self.outcomes)} targets did not reach zero "
                    f"within {self.bound_s:.0f} s ({names})"
                )
            return (
                f"HALTED: {len(self.outcomes)} targets verified at zero in {self.elapsed_s:.1f} s "
                f"(bound {self.bound_s:.0f} s), halt {self.episode}"
            )
        if not self.ok:
            names = "; ".join(f"{o.target}: {o.error or o.detail}" for o in failed)
            return (
                f"NOT RESUMED: {len(failed)} of {len(self.outcomes)} targets not restored ({names})"
            )
        return (
            f"RESUMED: {len(self.outcomes)} targets restored as recorded in {self.elapsed_s:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        verdict = {"halt": ("HALTED", "NOT HALTED"), "resume": ("RESUMED", "NOT RESUMED")}[
            self.action
        ]
        return {
            "action": self.action,
            "verdict": verdict[0] if self.ok else verdict[1],
            "ok": self.ok,
            "episode": self.episode,
            "started_at": self.started_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "bound_s": self.bound_s,
            "actor": self.actor.as_dict(),
            "reason": self.reason,
            "targets": [o.as_dict() for o in self.outcomes],
            "summary": self.summary(),
        }


class Switch:
    """The kill switch over the targets of one config."""

    def __init__(
        self,
        config: SwitchConfig,
        store: Store,
        *,
        kube_factory: Callable[[], Kube] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self._kube_factory = kube_factory
        self._kube: Kube | None = None
        self._aws: AwsClients | None = None
        self._sleep = sleep
        self._lock = threading.Lock()
        self._keys = [load_public_key(k) for k in config.resume.control_plane_keys]

    # -------------------------------------------------------------- targets

    def kube(self) -> Kube:
        """The cluster connection, made on first use."""
        if self._kube is None:
            if self._kube_factory is None:
                from breakglass_killswitch.kube import Kube

                self._kube = Kube(self.config.kubernetes)
            else:
                self._kube = self._kube_factory()
        return self._kube

    def prepare(self) -> None:
        """Load the cluster client and its API modules now, so the first halt does not wait for them.

        Reads only the kubeconfig (no network): a broken one is a :class:`ConfigError` here,
        at start, rather than during a halt.
        """
        if self.config.has_kubernetes:
            self.kube()
            import breakglass_killswitch.workloads  # noqa: F401 -- imported for its side effect: loaded
        for spec in self.config.targets:
            if isinstance(spec, SageMakerTarget):
                self.from_key(
                    f"sagemaker-endpoint/{spec.region}/{spec.names[0]}"
                )  # makes its clients

    def close(self) -> None:
        """Release connections."""
        if self._kube is not None:
            self._kube.close()
            self._kube = None

    def _make(self, kind: str, place: str, name: str) -> Target:
        from breakglass_killswitch.workloads import InferenceServiceTarget, WorkloadTarget

        argocd = self.config.kubernetes.argocd_namespaces
        if kind in ("deployment", "statefulset"):
            return WorkloadTarget(self.kube(), kind, place, name, argocd)
        if kind == "inferenceservice":
            return InferenceServiceTarget(self.kube(), place, name, argocd)
        if kind == "sagemaker-endpoint":
            from breakglass_killswitch.sagemaker import AwsClients, SageMakerEndpoint

            for spec in self.config.targets:
                if isinstance(spec, SageMakerTarget) and spec.region == place:
                    if self._aws is None:
                        self._aws = AwsClients(self.config.kubernetes.request_timeout)
                    return SageMakerEndpoint(spec, name, self._aws)
            raise TargetError(
                f"sagemaker-endpoint/{place}/{name}: its region is no longer configured"
            )
        raise TargetError(f"{kind}/{place}/{name}: unknown kind")

    def from_key(self, key: str) -> Target:
        """The target a recorded key names (a resume acts on what was recorded, not on the config)."""
        kind, place, name = key.split("/", 2)
        return self._make(kind, place, name)

    def _names(self, spec: KubeTarget) -> list[str]:
        if spec.names:
            return list(spec.names)
        kube = self.kube()
        what = f"list {spec.kind}s in {spec.namespace} ({spec.selector})"
        if spec.kind == "inferenceservice":
            answer = kube.call(
                what,
                kube.custom.list_namespaced_custom_object,
                "serving.kserve.io",
                "v1beta1",
                spec.namespace,
                "inferenceservices",
                label_selector=spec.selector,
            )
        else:
            method = (
                kube.apps.list_namespaced_deployment
                if spec.kind == "deployment"
                else kube.apps.list_namespaced_stateful_set
            )
            answer = kube.call(what, method, spec.namespace, label_selector=spec.selector)
        return sorted(i["metadata"]["name"] for i in answer.get("items") or [])

    def resolve(self) -> tuple[list[Target], list[Outcome]]:
        """The concrete targets of the config; specs that could not be expanded are failures."""
        targets: list[Target] = []
        failures: list[Outcome] = []
        for spec in self.config.targets:
            if isinstance(spec, SageMakerTarget):
                targets += [self._make(spec.kind, spec.region, n) for n in spec.names]
                continue
            where = f"{spec.kind}s in {spec.namespace} ({spec.selector or ','.join(spec.names)})"
            try:
                names = self._names(spec)
            except KillswitchError as exc:
                failures.append(Outcome(where, ok=False, detail="not resolved", error=str(exc)))
                continue
            if not names:
                failures.append(
                    Outcome(
                        where,
                        ok=False,
                        detail="the selector matches nothing",
                        error="no target found",
                    )
                )
            targets += [self._make(spec.kind, spec.namespace, n) for n in names]
        return targets, failures

    # -------------------------------------------------------------- halt

    def halt(self, actor: Actor, reason: str) -> Report:
        """Halt every target and verify it within ``halt_bound``; never refuses."""
        started, started_at = time.monotonic(), now()
        with self._lock:
            try:
                episode, fresh = self.store.begin_episode(iso(started_at), actor.id, reason)
                episode_id = episode.id
            except StoreError as exc:
                # Halting is never gated: go on, and say the record is only on the objects.
                logger.error("halting without the store: %s", exc)  # noqa: TRY400 -- no traceback for an operator
                episode_id, fresh = f"h-unrecorded-{int(time.time())}", True
            try:
                targets, failures = self.resolve()
            except KillswitchError as exc:
                targets, failures = (
                    [],
                    [Outcome("kubernetes", ok=False, detail="not reached", error=str(exc))],
                )
            deadline = started + self.config.halt_bound
            outcomes = failures + self._parallel(
                targets, lambda t: self._halt_one(t, episode_id, deadline, started), deadline
            )
            report = Report(
                "halt",
                episode_id,
                bool(outcomes) and all(o.ok for o in outcomes),
                iso(started_at),
                time.monotonic() - started,
                self.config.halt_bound,
                outcomes,
                actor,
                reason,
            )
            self._audit(
                "halt" if report.ok else "halt-failed",
                "disabled" if report.ok else "other",
                before=fresh,
                after=False if report.ok else None,
                actor=actor,
                comment=reason,
                raw=report.as_dict(),
            )
        if not report.ok:
            logger.error("%s", report.summary())
        return report

    def _parallel(
        self, targets: list[Target], work: Callable[[Target], Outcome], deadline: float
    ) -> list[Outcome]:
        """Run ``work`` for every target at once; a target still busy at the deadline has failed.

        Daemon threads, so a platform that never answers cannot hold the report (or
        the process's exit) past the bound: each call is also bounded by its own timeout.
        """
        results: dict[int, Outcome] = {}

        def run(index: int, target: Target) -> None:
            try:
                results[index] = work(target)
            except Exception as exc:  # one target's bug must not hide the others
                logger.error("%s: unexpected %s", target.key, type(exc).__name__, exc_info=exc)  # noqa: TRY400
                results[index] = Outcome(
                    target.key, ok=False, detail="failed", error=f"unexpected {type(exc).__name__}"
                )

        threads = [
            threading.Thread(target=run, args=(i, t), name=f"killswitch-{i}", daemon=True)
            for i, t in enumerate(targets)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            # A little past the deadline: a target's last check may be in flight.
            thread.join(max(0.0, deadline + self.config.poll_interval + 1.0 - time.monotonic()))
        return [
            results.get(i)
            or Outcome(
                t.key,
                ok=False,
                detail="no answer",
                error="no answer from the platform within the bound (it may be frozen or overloaded)",
            )
            for i, t in enumerate(targets)
        ]

    def _halt_one(self, target: Target, episode: str, deadline: float, started: float) -> Outcome:
        try:
            captured = target.capture()
        except KillswitchError as exc:
            return self._halt_uncaptured(target, exc, started)
        try:
            recorded = self.store.record(episode, target.key, captured)
        except StoreError as exc:
            recorded = captured
            notes = [f"not recorded in the store ({exc}); the annotation is the only record"]
        else:
            notes = []
        try:
            notes += target.halt(recorded, episode)
        except KillswitchError as exc:
            return Outcome(
                target.key, ok=False, detail="halt not applied", notes=notes, error=str(exc)
            )
        return self._wait(target, recorded, deadline, started, notes, halting=True)

    def _halt_uncaptured(self, target: Target, exc: KillswitchError, started: float) -> Outcome:
        # Nothing to record (gone, unreadable): still say whether it serves.
        try:
            check = target.check_halted({}, reassert=False)
        except KillswitchError:
            return Outcome(target.key, ok=False, detail="not reached", error=str(exc))
        if check.done:
            return Outcome(
                target.key,
                ok=True,
                detail=check.detail,
                seconds=time.monotonic() - started,
                notes=[f"nothing recorded: {exc}"],
            )
        return Outcome(target.key, ok=False, detail=check.detail, error=str(exc))

    def _wait(
        self,
        target: Target,
        recorded: dict[str, Any],
        deadline: float,
        started: float,
        notes: list[str],
        *,
        halting: bool,
    ) -> Outcome:
        last = Check(done=False, detail="not checked")
        last_error: str | None = None
        while True:
            try:
                last = (
                    target.check_halted(recorded, reassert=True)
                    if halting
                    else target.check_resumed(recorded)
                )
                last_error = None
            except KillswitchError as exc:
                last_error = str(exc)
            else:
                notes += [n for n in last.notes if n not in notes]
                if last.done:
                    return Outcome(
                        target.key,
                        ok=True,
                        detail=last.detail,
                        seconds=time.monotonic() - started,
                        notes=notes,
                    )
            if time.monotonic() + self.config.poll_interval > deadline:
                return Outcome(
                    target.key,
                    ok=False,
                    detail=last.detail,
                    notes=notes,
                    error=last_error or f"not verified within the bound: {last.detail}",
                )
            self._sleep(self.config.poll_interval)

    # -------------------------------------------------------------- resume

    def approve(self, actor: Actor, reason: str) -> dict[str, Any]:
        """Record one approval of the open halt's resume (each approver once)."""
        episode = self.store.open_episode()
        if episode is None:
            raise NothingHaltedError("nothing is halted: there is no resume to approve")
        added = self.store.approve(episode.id, actor.id, reason, iso(now()))
        approvals = self.store.approvals(episode.id)
        self._audit(
            "resume-approval",
            "other",
            before=False,
            after=False,
            actor=actor,
            comment=reason,
            raw={"episode": episode.id, "approvers": [a for a, _, _ in approvals], "new": added},
        )
        return {
            "episode": episode.id,
            "approvers": [a for a, _, _ in approvals],
            "required": self.config.resume.approvals_required,
            "added": added,
        }

    def _authorise(self, episode: str, authorisation: str | None) -> dict[str, Any]:
        resume = self.config.resume
        if authorisation:
            grant = verify_resume(
                authorisation,
                self._keys,
                switch=self.config.name,
                episode=episode,
                max_age=resume.max_token_age,
            )
            if not self.store.use_authorisation(grant.jti, iso(now())):
                raise ResumeRefused(
                    "resume refused: this authorisation was used before", ["a fresh authorisation"]
                )
            return {
                "by": "control-plane",
                "issuer": grant.issuer,
                "approvers": list(grant.approvers),
                "key": grant.key_id,
                "jti": grant.jti,
                "reason": grant.reason,
            }
        approvers = [a for a, _, _ in self.store.approvals(episode)]
        if len(approvers) < resume.approvals_required:
            missing = resume.approvals_required - len(approvers)
            raise ResumeRefused(
                f"resume refused: {len(approvers)} of {resume.approvals_required} approvals and no signed "
                "authorisation",
                [
                    f"{missing} more approval(s) by distinct approvers, or a signed authorisation from the control plane"
                ],
            )
        return {"by": "approvals", "approvers": approvers}

    def resume(self, actor: Actor, reason: str, authorisation: str | None = None) -> Report:
        """Restore every recorded target, only with an authorisation.

        Raises:
            NothingHaltedError: No halt is open.
            ResumeRefused: The authorisation is missing or does not hold (recorded in the audit).
        """
        started, started_at = time.monotonic(), now()
        with self._lock:
            episode = self.store.open_episode()
            if episode is None:
                raise NothingHaltedError("nothing is halted: there is nothing to resume")
            try:
                grant = self._authorise(episode.id, authorisation)
            except ResumeRefused as exc:
                self._audit(
                    "resume-refused",
                    "other",
                    before=False,
                    after=False,
                    actor=actor,
                    comment=reason,
                    raw={"episode": episode.id, "refused": str(exc), "missing": exc.missing},
                )
                raise
            recorded = self.store.recorded(episode.id)
            deadline = started + self.config.resume_bound
            outcomes = self._parallel(
                [self.from_key(k) for k in sorted(recorded)],
                lambda t: self._resume_one(t, recorded[t.key], deadline, started),
                deadline,
            )
            report = Report(
                "resume",
                episode.id,
                all(o.ok for o in outcomes),
                iso(started_at),
                time.monotonic() - started,
                self.config.resume_bound,
                outcomes,
                actor,
                reason,
            )
            if report.ok:
                self.store.close_episode(episode.id, iso(now()), actor.id)
            raw = report.as_dict() | {"authorisation": grant}
            self._audit(
                "resume" if report.ok else "resume-failed",
                "enabled" if report.ok else "other",
                before=False,
                after=True if report.ok else None,
                actor=actor,
                comment=reason,
                raw=raw,
            )
        return report

    def _resume_one(
        self, target: Target, recorded: dict[str, Any], deadline: float, started: float
    ) -> Outcome:
        try:
            notes = target.resume(recorded)
        except KillswitchError as exc:
            return Outcome(target.key, ok=False, detail="not restored", error=str(exc))
        return self._wait(target, recorded, deadline, started, notes, halting=False)

    # -------------------------------------------------------------- status and pre-flight

    def status(self) -> dict[str, Any]:
        """The open halt (if any) and every target's live state; an unreadable target says so."""
        episode = self.store.open_episode()
        live: list[dict[str, Any]] = []
        recorded = self.store.recorded(episode.id) if episode else {}
        try:
            targets, failures = self.resolve()
        except KillswitchError as exc:
            targets, failures = (
                [],
                [Outcome("kubernetes", ok=False, detail="not reached", error=str(exc))],
            )
        keys = {t.key for t in targets}
        targets += [self.from_key(k) for k in recorded if k not in keys]
        for target in targets:
            try:
                state = target.describe()
                if episode is not None:
                    check = target.check_halted(recorded.get(target.key, {}), reassert=False)
                    state["halted"] = check.done
            except KillswitchError as exc:
                state = {"target": target.key, "error": str(exc)}
            live.append(state)
        live += [{"target": f.target, "error": f.error} for f in failures]
        if episode is None:
            state_name = "active"
        elif all(t.get("halted") is True for t in live):
            state_name = "halted"
        else:
            state_name = "NOT HALTED"
        approvals = self.store.approvals(episode.id) if episode else []
        return {
            "switch": self.config.name,
            "state": state_name,
            "episode": None
            if episode is None
            else {
                "id": episode.id,
                "opened_at": episode.opened_at,
                "opened_by": episode.opened_by,
                "reason": episode.reason,
                "approvals": [a for a, _, _ in approvals],
                "approvals_required": self.config.resume.approvals_required,
            },
            "targets": live,
        }

    def preflight(self) -> list[Finding]:
        """What would undo a halt, or stop the switch from making one."""
        try:
            targets, failures = self.resolve()
        except KillswitchError as exc:
            return [Finding("kubernetes", "error", "unreachable", str(exc))]
        findings = [Finding(f.target, "error", "unresolved", f.error or f.detail) for f in failures]
        for target in targets:
            try:
                findings += target.preflight()
            except KillswitchError as exc:
                findings.append(Finding(target.key, "error", "unreadable", str(exc)))
        return findings

    # -------------------------------------------------------------- audit

    def _audit(
        self,
        event: str,
        action: str,
        *,
        before: bool | None,
        after: bool | None,
        actor: Actor,
        comment: str,
        raw: dict[str, Any],
    ) -> None:
        config = self.config

        def build(seq: int) -> dict[str, Any]:
            return build_record(
                provider=config.audit_provider,
                event_id=f"{config.name}:{self.store.store_id}:{seq}",
                event_type=event,
                flag_key=config.flag_key,
                environment=config.name,
                action=action,
                value_before=before,
                value_after=after,
                actor=actor.as_dict(),
                comment=comment,
                occurred_at=now(),
                raw=raw,
            )

        try:
            self.store.append_audit(build)
        except StoreError as exc:
            logger.error("the audit record of a %s could not be written: %s", event, exc)  # noqa: TRY400
