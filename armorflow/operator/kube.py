"""The operator's few Kubernetes calls, through the official ``kubernetes`` client.

Objects travel as plain JSON dicts (``_preload_content=False``): the policies are custom
resources anyway, and the workloads are only matched on labels and patched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException

from armorflow import __version__
from armorflow.resource import PLURAL as MODEL_PLURAL

from .policy import GROUP, KIND_CLUSTER_POLICY, PLURALS, VERSION
from .workloads import WorkloadRef, restart_patch

log = logging.getLogger(__name__)

# The client's loaders carry no annotations; Any keeps mypy --strict quiet about that only.
config: Any = _config


class WatchError(RuntimeError):
    """The API server ended a watch with an error event (e.g. 410 Gone)."""


class PolicyWatch:
    """One streaming watch response; :meth:`close` from another thread ends the iteration
    at once (a blocked read is woken by shutting the socket down)."""

    def __init__(self, kind: str, response: Any) -> None:
        self.kind = kind
        self._response = response

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        pending = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        yield self._event(line)
            if pending.strip():
                yield self._event(pending)
        finally:
            self._response.release_conn()

    def _event(self, line: bytes) -> tuple[str, dict[str, Any]]:
        event = json.loads(line)
        type_ = str(event.get("type"))
        obj = event.get("object")
        if type_ == "ERROR" or not isinstance(obj, dict):
            message = obj.get("message") if isinstance(obj, dict) else obj
            raise WatchError(f"watch of {self.kind} ended: {message}")
        obj.setdefault("kind", self.kind)
        return type_, obj

    def close(self) -> None:
        try:
            self._response.shutdown()
        except Exception as exc:  # already closed: nothing left to wake
            log.debug("closing the %s watch: %s", self.kind, exc)

USER_AGENT: Final = f"armorflow-operator/{__version__}"

#: Server-side watch timeout: each reconnect re-lists every object (a periodic resync).
WATCH_TIMEOUT_S: Final = 300


def make_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """In-cluster credentials inside a pod, else the kubeconfig (``$KUBECONFIG``, ~/.kube)."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def _decode(response: Any) -> Any:
    return json.loads(response.data or b"null")


@dataclass
class Kube:
    """Policies and workloads, read and written as dicts."""

    api: Any  # kubernetes.client.ApiClient

    def __post_init__(self) -> None:
        # Named in the API server's audit log (and the tests' RBAC check) as itself.
        self.api.user_agent = USER_AGENT
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)

    def list_policies(self, kind: str) -> list[dict[str, Any]]:
        raw = _decode(self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURALS[kind], _preload_content=False,
        ))
        items = raw.get("items") if isinstance(raw, dict) else None
        out = [i for i in items or [] if isinstance(i, dict)]
        for item in out:
            item.setdefault("kind", kind)  # list items may omit their kind
        return out

    def watch_policies(self, kind: str, timeout_s: int = WATCH_TIMEOUT_S) -> PolicyWatch:
        """A watch of every object of ``kind``: iterate it for (event type, object)."""
        response = self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURALS[kind], watch=True, timeout_seconds=timeout_s,
            _preload_content=False,
            # A silent connection (a lost peer, a server ignoring timeoutSeconds) must not
            # block the watch forever: the client gives up a little after the server would.
            _request_timeout=timeout_s + 30,
        )
        return PolicyWatch(kind, response)

    def get_policy(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            if kind == KIND_CLUSTER_POLICY:
                resp = self.custom.get_cluster_custom_object(
                    GROUP, VERSION, PLURALS[kind], name, _preload_content=False,
                )
            else:
                resp = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURALS[kind], name, _preload_content=False,
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj = _decode(resp)
        if not isinstance(obj, dict):
            return None
        obj.setdefault("kind", kind)
        return obj

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write ``.status`` through the status subresource (a JSON merge patch)."""
        body = {"status": status}
        if kind == KIND_CLUSTER_POLICY:
            self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, PLURALS[kind], name, body, _preload_content=False,
            )
        else:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURALS[kind], name, body, _preload_content=False,
            )

    def list_workloads(self, kind: str, namespace: str | None,
                       selector: str | None = None) -> list[dict[str, Any]]:
        """Workloads of one kind with the labels ``selector`` names (the opt-in label; the
        caller re-checks it, and the target)."""
        plural = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                  "DaemonSet": "daemon_set", "Pod": "pod"}[kind]
        api = self.core if kind == "Pod" else self.apps
        options: dict[str, Any] = {"_preload_content": False}
        if selector:
            options["label_selector"] = selector
        if namespace is None:
            fn = getattr(api, f"list_{plural}_for_all_namespaces")
            resp = fn(**options)
        else:
            fn = getattr(api, f"list_namespaced_{plural}")
            resp = fn(namespace, **options)
        raw = _decode(resp)
        items = raw.get("items") if isinstance(raw, dict) else None
        return [i for i in items or [] if isinstance(i, dict)]

    def restart_workload(self, ref: WorkloadRef, stamp: str) -> None:
        self.patch_workload(ref, restart_patch(stamp))

    def patch_workload(self, ref: WorkloadRef, body: dict[str, Any] | list[dict[str, Any]]
                       ) -> None:
        """Patch a Deployment, StatefulSet or DaemonSet: a dict goes as a strategic merge
        patch (nested objects only, so any merge type agrees), a list as a JSON patch."""
        plural = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                  "DaemonSet": "daemon_set"}[ref.kind]
        fn = getattr(self.apps, f"patch_namespaced_{plural}")
        fn(ref.name, ref.namespace, body, _preload_content=False)

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An ArmorProfileModel as a dict, or None when there is none."""
        try:
            resp = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, MODEL_PLURAL, name, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj = _decode(resp)
        return obj if isinstance(obj, dict) else None
