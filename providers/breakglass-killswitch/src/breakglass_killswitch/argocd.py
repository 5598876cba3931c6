"""Pre-flight: find Argo CD Applications whose self-heal would undo a halt.

Self-heal re-syncs any field that differs from Git. A halt writes
``spec.replicas`` (and annotations); unless the Application ignores that path
(``ignoreDifferences``) Argo CD puts the old value back within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass_killswitch.errors import TargetForbidden
from breakglass_killswitch.targets import Finding

if TYPE_CHECKING:
    from breakglass_killswitch.kube import Kube

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"


@dataclass(frozen=True, slots=True)
class Watched:
    """A path the halt changes on one object."""

    group: str
    kind: str
    namespace: str
    name: str
    pointer: str
    """JSON pointer, e.g. ``/spec/replicas``."""


def _jq(pointer: str) -> str:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
    return "".join(f".{p}" if p.replace("_", "").isalnum() else f'["{p}"]' for p in parts)


def _ignored(app: dict[str, Any], watched: Watched) -> bool:
    for rule in (app.get("spec") or {}).get("ignoreDifferences") or []:
        if rule.get("kind") != watched.kind or (rule.get("group") or "") != watched.group:
            continue
        if rule.get("name") not in (None, watched.name):
            continue
        if rule.get("namespace") not in (None, watched.namespace):
            continue
        if watched.pointer in (rule.get("jsonPointers") or []):
            return True
        if _jq(watched.pointer) in (rule.get("jqPathExpressions") or []):
            return True
    return False


def _manages(app: dict[str, Any], watched: Watched) -> str | None:
    """How the Application relates to the object: ``tracks``, ``may-track`` or None."""
    resources = (app.get("status") or {}).get("resources")
    if resources:
        for res in resources:
            if (
                res.get("kind") == watched.kind
                and (res.get("group") or "") == watched.group
                and res.get("name") == watched.name
                and res.get("namespace") == watched.namespace
            ):
                return "tracks"
        return None
    destination = (app.get("spec") or {}).get("destination") or {}
    return "may-track" if destination.get("namespace") == watched.namespace else None


def argocd_findings(
    kube: Kube, namespaces: tuple[str, ...], target: str, watched: list[Watched]
) -> list[Finding]:
    """Findings for one target, given the paths its halt changes."""
    findings: list[Finding] = []
    for ns in namespaces:
        try:
            apps = kube.list_or_empty(
                f"list Argo CD applications in {ns}",
                kube.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                PLURAL,
            )
        except TargetForbidden as exc:
            findings.append(
                Finding(target, "risk", "argocd-unreadable", f"cannot check Argo CD in {ns}: {exc}")
            )
            continue
        for app in apps:
            findings.extend(_app_findings(app, ns, target, watched))
    return findings


def _app_findings(
    app: dict[str, Any], ns: str, target: str, watched: list[Watched]
) -> list[Finding]:
    name = (app.get("metadata") or {}).get("name", "?")
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
    if not isinstance(automated, dict):
        return []
    found: list[Finding] = []
    for item in watched:
        relation = _manages(app, item)
        if relation is None or _ignored(app, item):
            continue
        what = f"{item.kind.lower()} {item.namespace}/{item.name}"
        group = item.group or "core"
        if automated.get("selfHeal") is True:
            verb = (
                "tracks" if relation == "tracks" else "may track (its destination is the namespace)"
            )
            found.append(
                Finding(
                    target,
                    "risk",
                    "argocd-self-heal",
                    f"Argo CD Application {ns}/{name} has self-heal on and {verb} {item.pointer} of "
                    f"{what}: it would undo the halt. Add ignoreDifferences "
                    f"{{group: {group}, kind: {item.kind}, jsonPointers: [{item.pointer}]}} "
                    f"or turn self-heal off",
                )
            )
        else:
            found.append(
                Finding(
                    target,
                    "info",
                    "argocd-auto-sync",
                    f"Argo CD Application {ns}/{name} syncs automatically (no self-heal): a new "
                    f"commit would re-apply {item.pointer} of {what} during a halt",
                )
            )
    return found
