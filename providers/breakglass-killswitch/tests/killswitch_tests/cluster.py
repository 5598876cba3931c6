"""The objects of a small inference namespace, as a cluster would hold them."""

from __future__ import annotations

import json
from typing import Any

from killswitch_tests.kubeserver import DESIRED, KubeApiServer

NS = "inference"


def deployment(name: str, replicas: int, kind: str = "Deployment") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app.kubernetes.io/part-of": "model", **labels},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "m", "image": "m:1"}]},
            },
        },
    }


def hpa(name: str, target: str, min_replicas: int, *, external: bool = False) -> dict[str, Any]:
    metric: dict[str, Any] = (
        {
            "type": "External",
            "external": {
                "metric": {"name": "queue_depth"},
                "target": {"type": "AverageValue", "averageValue": "5"},
            },
        }
        if external
        else {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_replicas,
            "maxReplicas": 10,
            "metrics": [metric],
        },
    }


def scaled_object(name: str, target: str, min_count: int) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicaCount": min_count,
            "maxReplicaCount": 8,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"query": "sum(rate(requests[1m]))", "threshold": "10"},
                }
            ],
        },
    }


def inference_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://m"},
            }
        },
    }


def argocd_app(
    name: str, tracked: dict[str, int], *, self_heal: bool = True, ignore_replicas: bool = False
) -> dict[str, Any]:
    app: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": "argocd",
            "annotations": {DESIRED: json.dumps(tracked)},
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example/models.git",
                "path": "inference",
                "targetRevision": "main",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": self_heal}},
        },
        "status": {
            "resources": [
                {
                    "group": "apps",
                    "version": "v1",
                    "kind": ref.split("/")[0],
                    "namespace": ref.split("/")[1],
                    "name": ref.split("/")[2],
                }
                for ref in tracked
            ]
        },
    }
    if ignore_replicas:
        app["spec"]["ignoreDifferences"] = [
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}
        ]
    return app


def standard(server: KubeApiServer) -> None:
    """A Deployment with an HPA, one whose HPA scales from zero, a KEDA-scaled one, an InferenceService."""
    server.put(deployment("model-server", 3))
    server.put(hpa("model-server", "model-server", 2))
    server.put(deployment("ranker", 2))
    server.put(hpa("ranker", "ranker", 0, external=True))
    server.put(deployment("keda-worker", 2))
    server.put(scaled_object("keda-worker", "keda-worker", 1))
    server.put(inference_service("sklearn-iris"))
    # Argo CD manages model-server with self-heal, but ignores /spec/replicas (the safe setup).
    server.put(argocd_app("inference", {f"Deployment/{NS}/model-server": 3}, ignore_replicas=True))
