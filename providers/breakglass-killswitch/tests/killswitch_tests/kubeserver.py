"""A local server speaking the documented Kubernetes REST API, for the resources the switch uses.

No kube-apiserver can run here, so this implements, from the API reference
(https://kubernetes.io/docs/reference/using-api/api-concepts/ and the
``apps/v1``, ``autoscaling/v2``, ``core/v1`` references), what the switch and
``kubectl get``/``kubectl scale`` touch:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``;
* get, list (``labelSelector``), ``PUT``, ``PATCH`` as JSON merge patch, strategic merge
  patch (for these objects: merge semantics, ``$patch`` directives unsupported) and
  JSON patch (RFC 6902), ``POST`` (create);
* the ``scale`` subresource of Deployments and StatefulSets (``autoscaling/v1`` Scale);
* ``resourceVersion`` preconditions (409 Conflict), RBAC (403 from Role rules), 401, 404,
  ``Status`` error bodies, and ``Table`` answers for ``kubectl get``;
* custom resources: KEDA ScaledObject, KServe InferenceService, Argo CD Application.

Controllers run in a background thread, like the real ones, so the switch meets
what it would meet in a cluster: pods that take ``drain_delay`` seconds to go away
after a scale-down (Running until then), KEDA scaling a workload up to its
``minReplicaCount`` unless paused, an HPA at ``minReplicas: 0`` scaling up from zero
on an External metric, KServe removing pods on ``serving.kserve.io/stop``, and Argo
CD self-heal putting ``spec.replicas`` back unless ``ignoreDifferences`` covers it.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# (group, version, plural) -> (kind, short names, has scale subresource)
RESOURCES: dict[tuple[str, str, str], tuple[str, list[str], bool]] = {
    ("", "v1", "namespaces"): ("Namespace", ["ns"], False),
    ("", "v1", "pods"): ("Pod", ["po"], False),
    ("apps", "v1", "deployments"): ("Deployment", ["deploy"], True),
    ("apps", "v1", "statefulsets"): ("StatefulSet", ["sts"], True),
    ("autoscaling", "v2", "horizontalpodautoscalers"): ("HorizontalPodAutoscaler", ["hpa"], False),
    ("keda.sh", "v1alpha1", "scaledobjects"): ("ScaledObject", ["so"], False),
    ("serving.kserve.io", "v1beta1", "inferenceservices"): ("InferenceService", ["isvc"], False),
    ("argoproj.io", "v1alpha1", "applications"): ("Application", ["app"], False),
}
DESIRED = "test.breakglass.dev/git-replicas"
"""On an Argo CD Application: the replicas Git holds for each ``Kind/namespace/name``."""

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, test (what clients send for these objects)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if kind == "replace" and isinstance(parent, dict) and last not in parent:
                raise ValueError(f"replace: {op['path']} does not exist")
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        else:
            raise ValueError(f"unsupported op {kind!r}")
    return doc


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for raw in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = raw.strip()
        if not term:
            continue
        if m := re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif m := re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", term):
            key, op, value = m[1], m[2], m[3]
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Subject:
    """Who a bearer token is, and what Role rules apply (``None``: everything)."""

    user: str
    rules: list[tuple[str, dict[str, Any]]] | None = None

    def allows(
        self, verb: str, group: str, resource: str, namespace: str, name: str | None
    ) -> bool:
        if self.rules is None:
            return True
        for ns, rule in self.rules:
            if ns != namespace:
                continue
            if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
                continue
            if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
                continue
            if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames")
            if names and (name is None or name not in names):
                continue
            return True
        return False


@dataclass
class _Pod:
    owner: str
    name: str
    labels: dict[str, str]
    ready_at: float
    remove_at: float | None = None
    created: str = field(default_factory=_now)


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 and its key (PEM): kubectl sends a bearer token only over TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now.replace(year=now.year - 1))
        .not_valid_after(now.replace(year=now.year + 1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class KubeApiServer:
    """The server; objects live in memory, keyed by (group, plural, namespace, name)."""

    def __init__(
        self, *, drain_delay: float = 1.0, start_delay: float = 0.2, self_heal_delay: float = 0.2
    ) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.subjects: dict[str, Subject] = {}
        self.log: list[tuple[str, str, str, int]] = []
        self.conflicts: list[tuple[str, str]] = []
        self.drain_delay, self.start_delay, self.self_heal_delay = (
            drain_delay,
            start_delay,
            self_heal_delay,
        )
        self._drift: dict[str, float] = {}
        self._rv = 1000
        self._stop = threading.Event()
        self.frozen = threading.Event()
        """Set: connections are accepted and requests read, but nothing is answered (a frozen server)."""
        self.hang: tuple[str, str] | None = None
        """(method, path suffix): such requests are read and never answered (until stop)."""
        self.httpd: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> KubeApiServer:
        server = self

        class Handler(_Handler):
            api = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.cert_pem, key_pem = self_signed()
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(self.cert_pem)
            key_file.write_bytes(key_pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, name="kube-api", daemon=True).start()
        threading.Thread(target=self._controllers, name="kube-controllers", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.frozen.clear()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"https://{host!s}:{port}"

    def token(
        self, user: str = "admin", rules: list[tuple[str, dict[str, Any]]] | None = None
    ) -> str:
        """A bearer token for ``user``; with ``rules`` (namespace, Role rule) it is limited to them."""
        token = secrets.token_urlsafe(16)
        self.subjects[token] = Subject(user, rules)
        return token

    def kubeconfig(self, token: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.cert_pem).decode(
                            "ascii"
                        ),
                    },
                }
            ],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "u"}}],
            "current-context": "local",
        }

    # ---------------------------------------------------------------- fixtures

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or overwrite an object (test set-up)."""
        with self.lock:
            group = obj["apiVersion"].rpartition("/")[0]
            plural = next(
                p for (g, _, p), (k, _, _) in RESOURCES.items() if g == group and k == obj["kind"]
            )
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", secrets.token_hex(8))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_rv()
            self.objects[(group, plural, meta["namespace"], meta["name"])] = obj
            self._reconcile()
            return copy.deepcopy(obj)

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            self._reconcile()
            return copy.deepcopy(self.objects[(group, plural, namespace, name)])

    def pod_count(self, namespace: str, selector: str, *, serving_only: bool = True) -> int:
        with self.lock:
            self._reconcile()
            return sum(
                1
                for pod in self._pod_objects(namespace)
                if _selector_matches(selector, pod["metadata"].get("labels", {}))
                and (not serving_only or pod["status"]["phase"] == "Running")
            )

    def inject_conflicts(self, method: str, path_suffix: str, count: int) -> None:
        """The next ``count`` writes of ``method`` on a path ending so answer 409."""
        with self.lock:
            self.conflicts += [(method, path_suffix)] * count

    # ---------------------------------------------------------------- controllers

    def _controllers(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                self._reconcile()

    def _set_replicas(self, obj: dict[str, Any], replicas: int) -> None:
        if obj["spec"].get("replicas", 1) != replicas:
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = self._next_rv()
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1

    def _reconcile(self) -> None:
        now = time.monotonic()
        self._keda()
        self._hpa()
        self._argocd(now)
        for (group, plural, ns, name), obj in list(self.objects.items()):
            if (group, plural) in (("apps", "deployments"), ("apps", "statefulsets")):
                labels = obj["spec"]["template"]["metadata"]["labels"]
                self._pods_for(
                    f"{plural}/{ns}/{name}", ns, name, labels, obj["spec"].get("replicas", 1), now
                )
                live = [p for p in self._owned(f"{plural}/{ns}/{name}") if p.remove_at is None]
                ready = sum(1 for p in live if p.ready_at <= now)
                status = {
                    "replicas": len(live),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "updatedReplicas": len(live),
                    "observedGeneration": obj["metadata"].get("generation", 1),
                }
                # Zero counts are omitted, as the API server does, except where the schema
                # requires them (StatefulSetStatus.replicas).
                required = {"observedGeneration"} | (
                    {"replicas"} if plural == "statefulsets" else set()
                )
                status = {k: v for k, v in status.items() if v or k in required}
                if obj.get("status") != status:
                    obj["status"] = status
            elif (group, plural) == ("serving.kserve.io", "inferenceservices"):
                stopped = (obj["metadata"].get("annotations") or {}).get(
                    "serving.kserve.io/stop"
                ) == "true"
                want = (
                    0
                    if stopped
                    else ((obj.get("spec") or {}).get("predictor") or {}).get("minReplicas", 1)
                )
                labels = {"serving.kserve.io/inferenceservice": name, "component": "predictor"}
                self._pods_for(f"isvc/{ns}/{name}", ns, f"{name}-predictor", labels, want, now)
        for key, pod in list(self.pods.items()):
            if pod.remove_at is not None and pod.remove_at <= now:
                del self.pods[key]

    def _owned(self, owner: str) -> list[_Pod]:
        return [p for p in self.pods.values() if p.owner == owner]

    def _pods_for(
        self, owner: str, ns: str, base: str, labels: dict[str, str], want: int, now: float
    ) -> None:
        live = [p for p in self._owned(owner) if p.remove_at is None]
        for pod in live[want:]:
            pod.remove_at = now + self.drain_delay
        for _ in range(want - len(live)):
            name = f"{base}-{secrets.token_hex(3)}"
            self.pods[(ns, name)] = _Pod(owner, name, dict(labels), now + self.start_delay)

    def _keda(self) -> None:
        for (group, plural, ns, _), so in self.objects.items():
            if (group, plural) != ("keda.sh", "scaledobjects"):
                continue
            ref = so["spec"]["scaleTargetRef"]
            target = self.objects.get(("apps", "deployments", ns, ref["name"]))
            if target is None:
                continue
            ann = so["metadata"].get("annotations") or {}
            if "autoscaling.keda.sh/paused-replicas" in ann:
                self._set_replicas(target, int(ann["autoscaling.keda.sh/paused-replicas"]))
            elif ann.get("autoscaling.keda.sh/paused") != "true":
                low = so["spec"].get("minReplicaCount", 0)
                if target["spec"].get("replicas", 1) < low:
                    self._set_replicas(target, low)

    def _hpa(self) -> None:
        for (group, plural, ns, _), hpa in self.objects.items():
            if (group, plural) != ("autoscaling", "horizontalpodautoscalers"):
                continue
            ref = hpa["spec"]["scaleTargetRef"]
            target = self.objects.get(("apps", f"{ref['kind'].lower()}s", ns, ref["name"]))
            if target is None:
                continue
            low = hpa["spec"].get("minReplicas", 1)
            replicas = target["spec"].get("replicas", 1)
            active = "False" if replicas == 0 and low > 0 else "True"
            status = {
                "currentReplicas": replicas,
                "desiredReplicas": replicas,
                "conditions": [
                    {
                        "type": "ScalingActive",
                        "status": active,
                        "lastTransitionTime": hpa["metadata"]["creationTimestamp"],
                        "reason": "ScalingDisabled" if active == "False" else "ValidMetricFound",
                    }
                ],
            }
            if hpa.get("status") != status:
                hpa["status"] = status
            external = any(
                m.get("type") in ("External", "Object") for m in hpa["spec"].get("metrics") or []
            )
            if replicas == 0 and low > 0:
                continue  # documented: ScalingActive=False until someone sets replicas again
            if replicas == 0 and low == 0 and external:
                self._set_replicas(target, 1)  # scale from zero on demand
            elif 0 < replicas < low:
                self._set_replicas(target, low)

    def _argocd(self, now: float) -> None:
        for (group, plural, _, name), app in self.objects.items():
            if (group, plural) != ("argoproj.io", "applications"):
                continue
            automated = (app["spec"].get("syncPolicy") or {}).get("automated") or {}
            if automated.get("selfHeal") is not True:
                continue
            git = json.loads((app["metadata"].get("annotations") or {}).get(DESIRED, "{}"))
            for ref, replicas in git.items():
                kind, ns, obj_name = ref.split("/")
                ignored = any(
                    rule.get("kind") == kind
                    and "/spec/replicas" in (rule.get("jsonPointers") or [])
                    for rule in app["spec"].get("ignoreDifferences") or []
                )
                target = self.objects.get(("apps", f"{kind.lower()}s", ns, obj_name))
                if ignored or target is None:
                    continue
                key = f"{name}/{ref}"
                if target["spec"].get("replicas", 1) == replicas:
                    self._drift.pop(key, None)
                elif now - self._drift.setdefault(key, now) >= self.self_heal_delay:
                    self._set_replicas(target, replicas)
                    self._drift.pop(key, None)

    def _pod_objects(self, namespace: str) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for (ns, name), pod in sorted(self.pods.items()):
            if ns != namespace:
                continue
            ready = pod.ready_at <= now
            meta: dict[str, Any] = {
                "name": name,
                "namespace": ns,
                "labels": pod.labels,
                "uid": name,
                "creationTimestamp": pod.created,
                "resourceVersion": "1",
            }
            if pod.remove_at is not None:
                meta["deletionTimestamp"] = _now()
                meta["deletionGracePeriodSeconds"] = 30
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": meta,
                    "spec": {"containers": [{"name": "model", "image": "model:1"}]},
                    "status": {
                        "phase": "Running" if ready else "Pending",
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    },
                }
            )
        return out

    # ---------------------------------------------------------------- requests

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        subject = self._authenticate(headers)
        if path == "/version":
            return 200, {
                "major": "1",
                "minor": "30",
                "gitVersion": "v1.30.0-breakglass-test",
                "platform": "linux/amd64",
            }
        if path in ("/api", "/apis") or (path.startswith("/apis/") and path.count("/") in (2, 3)):
            found = self._discovery(path)
            if found is not None:
                return 200, found
        if path == "/api/v1":
            return 200, self._resource_list("", "v1")
        match = _PATH.match(path)
        if not match:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        group = match["group"] or ""
        version = match["version"] or match["core"]
        plural, ns, name, sub = match["plural"], match["ns"], match["name"], match["sub"]
        if (group, version, plural) not in RESOURCES:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        verb = {
            "GET": "get" if name else "list",
            "PATCH": "patch",
            "PUT": "update",
            "POST": "create",
            "DELETE": "delete",
        }[method]
        resource = f"{plural}/{sub}" if sub else plural
        if not subject.allows(verb, group, resource, ns or "", name):
            where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            what = (
                f'{plural}.{group} "{name}"'
                if (name and group)
                else (f'{plural} "{name}"' if name else f"{plural}.{group}" if group else plural)
            )
            raise ApiError(
                403,
                "Forbidden",
                f'{what} is forbidden: User "{subject.user}" cannot {verb} resource "{resource}" in API group "{group}"{where}',
            )
        with self.lock:
            self._reconcile()
            return self._serve(method, group, version, plural, ns, name, sub, query, headers, body)

    def _authenticate(self, headers: Any) -> Subject:
        header = headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        subject = self.subjects.get(header[7:].strip())
        if subject is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return subject

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("https://")}
                ],
            }
        groups: dict[str, list[str]] = {}
        for group, version, _ in RESOURCES:
            if group:
                groups.setdefault(group, [])
                if version not in groups[group]:
                    groups[group].append(version)
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        parts = path.split("/")
        if len(parts) == 4 and parts[2] in groups and parts[3] in groups[parts[2]]:
            return self._resource_list(parts[2], parts[3])
        if len(parts) == 3 and parts[2] in groups:
            g, vs = parts[2], groups[parts[2]]
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
        return None

    @staticmethod
    def _resource_list(group: str, version: str) -> dict[str, Any]:
        resources = []
        for (g, v, plural), (kind, short, scale) in RESOURCES.items():
            if (g, v) != (group, version):
                continue
            resources.append(
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": plural != "namespaces",
                    "kind": kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                    "shortNames": short,
                }
            )
            if scale:
                resources.append(
                    {
                        "name": f"{plural}/scale",
                        "singularName": "",
                        "namespaced": True,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _serve(
        self,
        method: str,
        group: str,
        version: str,
        plural: str,
        ns: str | None,
        name: str | None,
        sub: str | None,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> tuple[int, dict[str, Any]]:
        kind = RESOURCES[(group, version, plural)][0]
        api_version = f"{group}/{version}" if group else version
        if plural == "namespaces":
            return self._namespaces(method, name)
        if name is None:
            return self._collection(
                method, group, plural, ns, kind, api_version, query, headers, body
            )
        key = (group, plural, ns or "", name)
        if plural == "pods" or key not in self.objects:
            resource = f"{plural}.{group}" if group else plural
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
        obj = self.objects[key]
        if sub == "scale":
            return self._scale(method, obj, api_version, plural, name, headers, body)
        if sub is not None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({sub})"
            )
        if method == "GET":
            if "as=Table" in headers.get("Accept", ""):
                return 200, self._table(plural, [obj])
            return 200, copy.deepcopy(obj)
        if method == "PATCH":
            updated = self._patched(obj, headers, body)
        elif method == "PUT":
            updated = json.loads(body)
        else:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        self._precondition(method, obj, updated, plural, group, name, headers)
        updated["metadata"]["resourceVersion"] = self._next_rv()
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):
            updated["metadata"][fixed] = obj["metadata"].get(fixed)
        if updated.get("spec") != obj.get("spec"):
            updated["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        updated["status"] = obj.get("status", {})
        self.objects[key] = updated
        self._reconcile()
        return 200, copy.deepcopy(updated)

    def _collection(
        self,
        method: str,
        group: str,
        plural: str,
        ns: str | None,
        kind: str,
        api_version: str,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
    ) -> tuple[int, dict[str, Any]]:
        if method == "POST":
            obj = json.loads(body)
            obj.setdefault("metadata", {})["namespace"] = ns
            if (group, plural, ns, obj["metadata"].get("name")) in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{plural} "{obj["metadata"].get("name")}" already exists',
                )
            return 201, self.put(obj)
        if method != "GET":
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        selector = (query.get("labelSelector") or [""])[0]
        if plural == "pods":
            items = [
                p
                for p in self._pod_objects(ns or "")
                if _selector_matches(selector, p["metadata"]["labels"])
            ]
        else:
            items = [
                copy.deepcopy(o)
                for (g, p, n, _), o in sorted(self.objects.items())
                if g == group
                and p == plural
                and (ns is None or n == ns)
                and _selector_matches(selector, o["metadata"].get("labels") or {})
            ]
        if "as=Table" in headers.get("Accept", ""):
            return 200, self._table(plural, items)
        return 200, {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _namespaces(self, method: str, name: str | None) -> tuple[int, dict[str, Any]]:
        if method != "GET":
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        known = sorted({"default", "argocd"} | {ns for (_, _, ns, _) in self.objects})

        def namespace(ns: str) -> dict[str, Any]:
            return {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "creationTimestamp": _now()},
                "status": {"phase": "Active"},
            }

        if name is None:
            return 200, {
                "apiVersion": "v1",
                "kind": "NamespaceList",
                "metadata": {},
                "items": [namespace(n) for n in known],
            }
        if name not in known:
            raise ApiError(404, "NotFound", f'namespaces "{name}" not found')
        return 200, namespace(name)

    def _patched(self, obj: dict[str, Any], headers: Any, body: bytes) -> dict[str, Any]:
        content_type = headers.get("Content-Type", "").split(";")[0].strip()
        merge = ("application/merge-patch+json", "application/strategic-merge-patch+json")
        if content_type != "application/json-patch+json" and content_type not in merge:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                f"application/json-patch+json, application/merge-patch+json ({content_type})",
            )
        try:
            patch = json.loads(body)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the patch is not JSON: {exc}") from None
        if content_type in merge and not isinstance(patch, dict):
            raise ApiError(422, "Invalid", "a merge patch is a JSON object")
        if content_type not in merge and not isinstance(patch, list):
            raise ApiError(422, "Invalid", "a JSON patch is a list of operations")
        try:
            result: dict[str, Any] = (
                merge_patch(obj, patch) if content_type in merge else json_patch(obj, patch)
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from None
        return result

    def _precondition(
        self,
        method: str,
        obj: dict[str, Any],
        updated: dict[str, Any],
        plural: str,
        group: str,
        name: str,
        headers: Any,
    ) -> None:
        for i, (m, suffix) in enumerate(self.conflicts):
            if m == method and headers.get("X-Path", "").endswith(suffix):
                del self.conflicts[i]
                break
        else:
            wanted = (updated.get("metadata") or {}).get("resourceVersion")
            if not wanted or wanted == obj["metadata"]["resourceVersion"]:
                return
        resource = f"{plural}.{group}" if group else plural
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )

    def _scale(
        self,
        method: str,
        obj: dict[str, Any],
        api_version: str,
        plural: str,
        name: str,
        headers: Any,
        body: bytes,
    ) -> tuple[int, dict[str, Any]]:
        labels = obj["spec"].get("selector", {}).get("matchLabels", {})

        def view() -> dict[str, Any]:
            return {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    k: obj["metadata"][k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                },
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {
                    "replicas": (obj.get("status") or {}).get("replicas", 0),
                    "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                },
            }

        if method == "GET":
            return 200, view()
        if method == "PATCH":
            updated = self._patched(view(), headers, body)
        elif method == "PUT":
            updated = json.loads(body)
            if updated.get("kind") != "Scale":
                raise ApiError(
                    400, "BadRequest", f"expected kind Scale, got {updated.get('kind')!r}"
                )
        else:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        self._precondition(method, obj, updated, plural, "apps", name, headers)
        replicas = (updated.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0',
            )
        self._set_replicas(obj, replicas)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._reconcile()
        return 200, view()

    def _table(self, plural: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        def age(obj: dict[str, Any]) -> str:
            created = datetime.strptime(
                obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"
            ).replace(tzinfo=UTC)
            return f"{max(0, int((datetime.now(UTC) - created).total_seconds()))}s"

        if plural in ("deployments", "statefulsets"):
            columns = ["Name", "Ready", "Up-to-date", "Available", "Age"]

            def cells(o: dict[str, Any]) -> list[Any]:
                s = o.get("status") or {}
                return [
                    o["metadata"]["name"],
                    f"{s.get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}",
                    s.get("updatedReplicas", 0),
                    s.get("availableReplicas", 0),
                    age(o),
                ]
        elif plural == "pods":
            columns = ["Name", "Ready", "Status", "Restarts", "Age"]

            def cells(o: dict[str, Any]) -> list[Any]:
                ready = o["status"]["phase"] == "Running"
                state = (
                    "Terminating" if "deletionTimestamp" in o["metadata"] else o["status"]["phase"]
                )
                return [o["metadata"]["name"], "1/1" if ready else "0/1", state, 0, age(o)]
        else:
            columns = ["Name", "Age"]

            def cells(o: dict[str, Any]) -> list[Any]:
                return [o["metadata"]["name"], age(o)]

        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "columnDefinitions": [
                {
                    "name": c,
                    "type": "string",
                    "format": "name" if c == "Name" else "",
                    "description": c,
                    "priority": 0,
                }
                for c in columns
            ],
            "rows": [
                {
                    "cells": cells(o),
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    },
                }
                for o in items
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    api: KubeApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: otherwise Nagle's algorithm and delayed ACKs
    # add ~40 ms to every answer on loopback.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        return

    def _do(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        while self.api.frozen.is_set() and not self.api._stop.is_set():
            time.sleep(0.05)
        hang = self.api.hang
        while hang is not None and self.command == hang[0] and parts.path.endswith(hang[1]):
            if self.api._stop.wait(0.05) or self.api.hang is None:
                break
        headers = dict(self.headers.items()) | {"X-Path": parts.path}
        try:
            code, payload = self.api.handle(
                self.command, parts.path, parse_qs(parts.query), _Headers(headers), body
            )
        except ApiError as exc:
            code = exc.code
            payload = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": exc.message,
                "reason": exc.reason,
                "code": exc.code,
            }
        except (ValueError, KeyError) as exc:
            code = 400
            payload = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"bad request: {exc}",
                "reason": "BadRequest",
                "code": 400,
            }
        with self.api.lock:
            self.api.log.append(
                (self.command, parts.path, self.headers.get("Content-Type", ""), code)
            )
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _do  # noqa: N815 -- http.server's names


class _Headers:
    """Case-insensitive header access."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._h = {k.lower(): v for k, v in headers.items()}

    def get(self, key: str, default: str = "") -> str:
        return self._h.get(key.lower(), default)
