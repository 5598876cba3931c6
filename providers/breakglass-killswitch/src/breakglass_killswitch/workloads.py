"""Kubernetes targets: Deployments and StatefulSets (scale subresource), KServe InferenceServices.

A workload halt, in order, each step only after the one before it:

1. record ``spec.replicas`` (and the autoscalers' settings) in the switch's store;
2. pause KEDA (``autoscaling.keda.sh/paused-replicas: "0"``) so it does not scale back;
3. pin an HPA with ``minReplicas: 0`` to 1: with replicas 0 and ``minReplicas > 0`` the
   HPA stops adjusting (its documented "implicit maintenance-mode deactivation"), while
   at ``minReplicas: 0`` it could scale the workload up from zero;
4. write the replica count into an annotation on the object (a second copy of the record);
5. set the scale subresource to 0, with the resourceVersion just read (409: read again).

Steps 2 to 4 never block step 5: a halt goes ahead and reports what it could not do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from breakglass_killswitch.argocd import Watched, argocd_findings
from breakglass_killswitch.errors import TargetError, TargetForbidden
from breakglass_killswitch.kube import (
    NotFoundError,
    not_finished,
    retry_conflicts,
    selector_text,
    serving,
)
from breakglass_killswitch.targets import Check, Finding

if TYPE_CHECKING:
    from collections.abc import Callable

    from breakglass_killswitch.kube import Kube

ANN_REPLICAS = "killswitch.breakglass.dev/replicas"
ANN_EPISODE = "killswitch.breakglass.dev/halt"
ANN_BEFORE = "killswitch.breakglass.dev/before"
"""On an autoscaler or InferenceService: JSON of the values the halt replaced (a second record)."""
KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
KEDA_PAUSED = "autoscaling.keda.sh/paused"
KSERVE_STOP = "serving.kserve.io/stop"
KSERVE_LABEL = "serving.kserve.io/inferenceservice"
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
_KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet"}
_MERGE = "application/merge-patch+json"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def _before(obj: dict[str, Any]) -> dict[str, Any] | None:
    """What our own halt recorded on the object, if it is halted by us."""
    text = _annotations(obj).get(ANN_BEFORE)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _count_serving(pods: list[dict[str, Any]]) -> int:
    return sum(1 for p in pods if serving(p))


def _count_unfinished(pods: list[dict[str, Any]]) -> int:
    return sum(1 for p in pods if not_finished(p))


class WorkloadTarget:
    """A Deployment or StatefulSet, halted through its scale subresource."""

    def __init__(
        self, kube: Kube, kind: str, namespace: str, name: str, argocd: tuple[str, ...]
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.argocd = argocd
        self.key = f"{kind}/{namespace}/{name}"
        self._read: Callable[..., Any]
        self._patch: Callable[..., Any]
        self._read_scale: Callable[..., Any]
        self._replace_scale: Callable[..., Any]
        if kind == "deployment":
            self._read = kube.apps.read_namespaced_deployment
            self._patch = kube.apps.patch_namespaced_deployment
            self._read_scale = kube.apps.read_namespaced_deployment_scale
            self._replace_scale = kube.apps.replace_namespaced_deployment_scale
        else:
            self._read = kube.apps.read_namespaced_stateful_set
            self._patch = kube.apps.patch_namespaced_stateful_set
            self._read_scale = kube.apps.read_namespaced_stateful_set_scale
            self._replace_scale = kube.apps.replace_namespaced_stateful_set_scale

    # -------------------------------------------------------------- reads

    def read(self) -> dict[str, Any]:
        """The object as the API server has it."""
        result: dict[str, Any] = self.kube.call(
            f"get {self.key}", self._read, self.name, self.namespace
        )
        return result

    def _hpas(self) -> list[dict[str, Any]]:
        kind = _KINDS[self.kind]
        return [
            h
            for h in self.kube.list_or_empty(
                f"list horizontalpodautoscalers in {self.namespace}",
                self.kube.autoscaling.list_namespaced_horizontal_pod_autoscaler,
                self.namespace,
            )
            if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == kind
            and ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == self.name
        ]

    def _scaled_objects(self) -> list[dict[str, Any]]:
        kind = _KINDS[self.kind]
        group, version, plural = KEDA
        return [
            so
            for so in self.kube.list_or_empty(
                f"list KEDA scaledobjects in {self.namespace}",
                self.kube.custom.list_namespaced_custom_object,
                group,
                version,
                self.namespace,
                plural,
            )
            if ((so.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == self.name
            and ((so.get("spec") or {}).get("scaleTargetRef") or {}).get("kind", "Deployment")
            == kind
        ]

    @staticmethod
    def _keda_owned(hpa: dict[str, Any]) -> bool:
        return any(
            ref.get("kind") == "ScaledObject" for ref in _meta(hpa).get("ownerReferences") or []
        )

    # -------------------------------------------------------------- the seam

    def capture(self) -> dict[str, Any]:
        """Replicas, selector, HPAs at ``minReplicas: 0`` and KEDA annotations, before any change."""
        obj = self.read()
        spec = obj.get("spec") or {}
        annotations = _annotations(obj)
        if ANN_REPLICAS in annotations and annotations[ANN_REPLICAS].isdigit():
            # A halt whose store record was lost left this: the live count is our own 0.
            replicas = int(annotations[ANN_REPLICAS])
        else:
            replicas = spec.get("replicas", 1)
        hpas = self._hpas()
        # An object our own earlier halt changed carries its previous values in ANN_BEFORE.
        pinned = [
            {"name": _meta(h).get("name"), "minReplicas": 0}
            for h in hpas
            if not self._keda_owned(h)
            and (
                (_before(h) or {}).get("minReplicas", (h.get("spec") or {}).get("minReplicas", 1))
                == 0
            )
        ]
        keda = []
        for so in self._scaled_objects():
            ann = _annotations(so)
            before = _before(so) or {
                KEDA_PAUSED_REPLICAS: ann.get(KEDA_PAUSED_REPLICAS),
                KEDA_PAUSED: ann.get(KEDA_PAUSED),
            }
            keda.append({"name": _meta(so).get("name"), **before})
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "replicas": replicas,
            "selector": selector_text(spec.get("selector")),
            "hpa_pinned": pinned,
            "keda": keda,
            "autoscaled": bool(hpas or keda),
        }

    def halt(self, recorded: dict[str, Any], episode: str) -> list[str]:
        """Pause KEDA, pin HPAs, annotate, scale to 0; only the scale failing raises."""
        notes: list[str] = []
        for so in recorded.get("keda") or []:
            self._soft(
                notes,
                f"pause KEDA scaledobject {so['name']}",
                lambda so=so: self._keda_set(
                    so["name"],
                    {
                        KEDA_PAUSED_REPLICAS: "0",
                        ANN_BEFORE: json.dumps(
                            {k: so.get(k) for k in (KEDA_PAUSED_REPLICAS, KEDA_PAUSED)}
                        ),
                    },
                ),
            )
        for hpa in recorded.get("hpa_pinned") or []:
            self._soft(
                notes,
                f"pin HPA {hpa['name']} to minReplicas 1",
                lambda hpa=hpa: self._hpa_min(hpa["name"], 1),
            )
        self._soft(
            notes,
            f"annotate {self.key}",
            lambda: self._annotate({ANN_REPLICAS: str(recorded["replicas"]), ANN_EPISODE: episode}),
        )
        self._scale(0)
        return notes

    def check_halted(self, recorded: dict[str, Any], *, reassert: bool) -> Check:
        """Scale 0, no serving pod of the selector, ``status.replicas`` 0."""
        obj = self.read()
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        notes: list[str] = []
        want = spec.get("replicas", 1)
        if want != 0 and reassert:
            notes.append(
                f"{self.key}: replicas were set back to {want} by someone else; scaled to 0 again"
            )
            self._scale(0)
        selector = recorded.get("selector") or selector_text(spec.get("selector"))
        count = _count_unfinished(self.kube.pods(self.namespace, selector)) if selector else 0
        live = status.get("replicas") or 0
        done = want == 0 and count == 0 and live == 0
        detail = f"spec.replicas {want}, status.replicas {live}, {count} pods serving or starting ({selector})"
        return Check(done, detail, count, notes)

    def resume(self, recorded: dict[str, Any]) -> list[str]:
        """Unpause KEDA and restore HPAs first (a paused KEDA would hold 0), then scale back."""
        notes: list[str] = []
        for so in recorded.get("keda") or []:
            values = {
                KEDA_PAUSED_REPLICAS: so.get(KEDA_PAUSED_REPLICAS),
                KEDA_PAUSED: so.get(KEDA_PAUSED),
                ANN_BEFORE: None,
            }
            self._soft(
                notes,
                f"restore KEDA scaledobject {so['name']}",
                lambda so=so, values=values: self._keda_set(so["name"], values),
            )
        for hpa in recorded.get("hpa_pinned") or []:
            self._soft(
                notes,
                f"restore HPA {hpa['name']}",
                lambda hpa=hpa: self._hpa_min(hpa["name"], hpa["minReplicas"]),
            )
        self._scale(int(recorded["replicas"]))
        self._soft(
            notes,
            f"remove the annotations of {self.key}",
            lambda: self._annotate({ANN_REPLICAS: None, ANN_EPISODE: None}),
        )
        return notes

    def check_resumed(self, recorded: dict[str, Any]) -> Check:
        """Replicas, annotations, HPA and KEDA settings as recorded."""
        obj = self.read()
        wrong: list[str] = []
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if recorded.get("autoscaled") and recorded["replicas"] > 0:
            # Set back exactly; from then on the autoscaler owns the count, so only 0 is wrong.
            if replicas == 0:
                wrong.append(f"spec.replicas 0 (recorded {recorded['replicas']}, autoscaled)")
        elif replicas != recorded["replicas"]:
            wrong.append(f"spec.replicas {replicas} (recorded {recorded['replicas']})")
        if ANN_REPLICAS in _annotations(obj):
            wrong.append(f"annotation {ANN_REPLICAS} still set")
        hpas = {_meta(h).get("name"): h for h in self._hpas()}
        for hpa in recorded.get("hpa_pinned") or []:
            live = (hpas.get(hpa["name"], {}).get("spec") or {}).get("minReplicas", 1)
            if live != hpa["minReplicas"]:
                wrong.append(
                    f"HPA {hpa['name']} minReplicas {live} (recorded {hpa['minReplicas']})"
                )
        objects = {_meta(so).get("name"): _annotations(so) for so in self._scaled_objects()}
        for so in recorded.get("keda") or []:
            ann = objects.get(so["name"], {})
            wrong.extend(
                f"scaledobject {so['name']} {key}={ann.get(key)!r} (recorded {so.get(key)!r})"
                for key in (KEDA_PAUSED_REPLICAS, KEDA_PAUSED)
                if ann.get(key) != so.get(key)
            )
        ready = (obj.get("status") or {}).get("readyReplicas") or 0
        detail = (
            "; ".join(wrong) if wrong else f"spec.replicas {replicas} as recorded, {ready} ready"
        )
        return Check(not wrong, detail)

    def describe(self) -> dict[str, Any]:
        """Live replicas and serving pods."""
        obj = self.read()
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = selector_text(spec.get("selector"))
        return {
            "target": self.key,
            "replicas": spec.get("replicas", 1),
            "ready": status.get("readyReplicas") or 0,
            "serving_pods": _count_serving(self.kube.pods(self.namespace, selector))
            if selector
            else 0,
            "recorded_replicas": _annotations(obj).get(ANN_REPLICAS),
        }

    def preflight(self) -> list[Finding]:
        """HPAs, KEDA, Argo CD; a target the switch cannot read is an error."""
        try:
            obj = self.read()
        except NotFoundError as exc:
            return [Finding(self.key, "error", "not-found", str(exc))]
        except TargetForbidden as exc:
            return [Finding(self.key, "error", "forbidden", str(exc))]
        findings: list[Finding] = []
        for hpa in self._hpas():
            name = _meta(hpa).get("name")
            minimum = (hpa.get("spec") or {}).get("minReplicas", 1)
            if self._keda_owned(hpa):
                continue
            if minimum == 0:
                findings.append(
                    Finding(
                        self.key,
                        "handled",
                        "hpa-scale-from-zero",
                        (
                            f"HPA {name} has minReplicas 0 and could scale {self.key} up from zero; the halt "
                            "pins minReplicas to 1 (an HPA then stops adjusting a target at 0) and restores 0 on resume"
                        ),
                    )
                )
            else:
                findings.append(
                    Finding(
                        self.key,
                        "info",
                        "hpa",
                        (
                            f"HPA {name} (minReplicas {minimum}) stops adjusting while replicas is 0 "
                            "(ScalingActive=False); resume sets replicas back explicitly"
                        ),
                    )
                )
        watched = [Watched("apps", _KINDS[self.kind], self.namespace, self.name, "/spec/replicas")]
        for so in self._scaled_objects():
            name = _meta(so).get("name", "?")
            findings.append(
                Finding(
                    self.key,
                    "handled",
                    "keda",
                    (
                        f"KEDA scaledobject {name} drives {self.key}: the halt sets "
                        f'{KEDA_PAUSED_REPLICAS}: "0" and restores the annotations on resume'
                    ),
                )
            )
            watched.append(
                Watched(
                    "keda.sh",
                    "ScaledObject",
                    self.namespace,
                    name,
                    "/metadata/annotations/autoscaling.keda.sh~1paused-replicas",
                )
            )
        findings.extend(argocd_findings(self.kube, self.argocd, self.key, watched))
        if not (obj.get("spec") or {}).get("selector"):
            findings.append(
                Finding(
                    self.key,
                    "risk",
                    "no-selector",
                    f"{self.key} has no selector: pods cannot be verified",
                )
            )
        return findings

    # -------------------------------------------------------------- writes

    @staticmethod
    def _soft(notes: list[str], what: str, action: Any) -> None:
        try:
            action()
        except TargetError as exc:
            notes.append(f"could not {what}: {exc}")

    def _scale(self, replicas: int) -> None:
        def attempt() -> None:
            scale = self.kube.call(
                f"get {self.key}/scale", self._read_scale, self.name, self.namespace
            )
            if (scale.get("spec") or {}).get("replicas") == replicas:
                return
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": _meta(scale).get("resourceVersion"),
                },
                "spec": {"replicas": replicas},
            }
            self.kube.call(
                f"update {self.key}/scale", self._replace_scale, self.name, self.namespace, body
            )

        retry_conflicts(attempt)

    def _annotate(self, values: dict[str, str | None]) -> None:
        def attempt() -> None:
            obj = self.read()
            current = _annotations(obj)
            if all(current.get(k) == v for k, v in values.items()):
                return
            patch = {
                "metadata": {
                    "annotations": values,
                    "resourceVersion": _meta(obj).get("resourceVersion"),
                }
            }
            self.kube.call(
                f"patch {self.key}",
                self._patch,
                self.name,
                self.namespace,
                patch,
                _content_type=_MERGE,
            )

        retry_conflicts(attempt)

    def _hpa_min(self, name: str, minimum: int) -> None:
        api = self.kube.autoscaling

        def attempt() -> None:
            hpa = self.kube.call(
                f"get HPA {self.namespace}/{name}",
                api.read_namespaced_horizontal_pod_autoscaler,
                name,
                self.namespace,
            )
            pinning = minimum > 0
            if (hpa.get("spec") or {}).get("minReplicas", 1) == minimum and (
                ANN_BEFORE in _annotations(hpa)
            ) == pinning:
                return
            before = json.dumps({"minReplicas": 0}) if pinning else None
            patch = {
                "metadata": {
                    "resourceVersion": _meta(hpa).get("resourceVersion"),
                    "annotations": {ANN_BEFORE: before},
                },
                "spec": {"minReplicas": minimum},
            }
            self.kube.call(
                f"patch HPA {self.namespace}/{name}",
                api.patch_namespaced_horizontal_pod_autoscaler,
                name,
                self.namespace,
                patch,
                _content_type=_MERGE,
            )

        retry_conflicts(attempt)

    def _keda_set(self, name: str, values: dict[str, str | None]) -> None:
        patch_custom(self.kube, KEDA, self.namespace, name, values)


def patch_custom(
    kube: Kube, api: tuple[str, str, str], namespace: str, name: str, values: dict[str, str | None]
) -> None:
    """Set (or, with ``None``, remove) annotations on a custom object, with its resourceVersion."""
    group, version, plural = api

    def attempt() -> None:
        obj = kube.call(
            f"get {plural}/{namespace}/{name}",
            kube.custom.get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )
        current = _annotations(obj)
        if all(current.get(k) == v for k, v in values.items()):
            return
        patch = {
            "metadata": {
                "annotations": values,
                "resourceVersion": _meta(obj).get("resourceVersion"),
            }
        }
        kube.call(
            f"patch {plural}/{namespace}/{name}",
            kube.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            patch,
        )

    retry_conflicts(attempt)


class InferenceServiceTarget:
    """A KServe InferenceService, stopped with ``serving.kserve.io/stop: "true"``."""

    def __init__(self, kube: Kube, namespace: str, name: str, argocd: tuple[str, ...]) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.argocd = argocd
        self.key = f"inferenceservice/{namespace}/{name}"

    def read(self) -> dict[str, Any]:
        """The InferenceService as the API server has it."""
        group, version, plural = KSERVE
        result: dict[str, Any] = self.kube.call(
            f"get {self.key}",
            self.kube.custom.get_namespaced_custom_object,
            group,
            version,
            self.namespace,
            plural,
            self.name,
        )
        return result

    def _selector(self) -> str:
        return f"{KSERVE_LABEL}={self.name}"

    def capture(self) -> dict[str, Any]:
        """The stop annotation's value before the halt (usually absent)."""
        isvc = self.read()
        return {
            "kind": "inferenceservice",
            "namespace": self.namespace,
            "name": self.name,
            "stop": (_before(isvc) or {"stop": _annotations(isvc).get(KSERVE_STOP)}).get("stop"),
        }

    def halt(self, recorded: dict[str, Any], episode: str) -> list[str]:
        """Set the stop annotation (and, beside it, what it was)."""
        patch_custom(
            self.kube,
            KSERVE,
            self.namespace,
            self.name,
            {
                KSERVE_STOP: "true",
                ANN_EPISODE: episode,
                ANN_BEFORE: json.dumps({"stop": recorded.get("stop")}),
            },
        )
        return []

    def check_halted(self, recorded: dict[str, Any], *, reassert: bool) -> Check:  # noqa: ARG002
        """Stop annotation set, no serving pod of the InferenceService."""
        notes: list[str] = []
        value = _annotations(self.read()).get(KSERVE_STOP)
        if value != "true" and reassert:
            notes.append(
                f"{self.key}: {KSERVE_STOP} was changed to {value!r} by someone else; set again"
            )
            patch_custom(self.kube, KSERVE, self.namespace, self.name, {KSERVE_STOP: "true"})
        count = _count_unfinished(self.kube.pods(self.namespace, self._selector()))
        done = value == "true" and count == 0
        return Check(
            done,
            f"{KSERVE_STOP}={value!r}, {count} pods serving or starting ({self._selector()})",
            count,
            notes,
        )

    def resume(self, recorded: dict[str, Any]) -> list[str]:
        """Put the stop annotation back as it was (removed when it was absent)."""
        patch_custom(
            self.kube,
            KSERVE,
            self.namespace,
            self.name,
            {KSERVE_STOP: recorded.get("stop"), ANN_EPISODE: None, ANN_BEFORE: None},
        )
        return []

    def check_resumed(self, recorded: dict[str, Any]) -> Check:
        """The annotation as recorded."""
        value = _annotations(self.read()).get(KSERVE_STOP)
        if value != recorded.get("stop"):
            return Check(
                done=False, detail=f"{KSERVE_STOP}={value!r} (recorded {recorded.get('stop')!r})"
            )
        return Check(done=True, detail=f"{KSERVE_STOP}={value!r} as recorded")

    def describe(self) -> dict[str, Any]:
        """The stop annotation and serving pods."""
        return {
            "target": self.key,
            "stop": _annotations(self.read()).get(KSERVE_STOP),
            "serving_pods": _count_serving(self.kube.pods(self.namespace, self._selector())),
        }

    def preflight(self) -> list[Finding]:
        """Readable? Argo CD self-heal on the stop annotation?"""
        try:
            self.read()
        except NotFoundError as exc:
            return [Finding(self.key, "error", "not-found", str(exc))]
        except TargetForbidden as exc:
            return [Finding(self.key, "error", "forbidden", str(exc))]
        watched = [
            Watched(
                "serving.kserve.io",
                "InferenceService",
                self.namespace,
                self.name,
                "/metadata/annotations/serving.kserve.io~1stop",
            )
        ]
        return argocd_findings(self.kube, self.argocd, self.key, watched)
