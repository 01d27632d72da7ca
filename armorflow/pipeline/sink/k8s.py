"""``k8s://`` sink: ArmorProfileModel resources through the official ``kubernetes`` client.

A write reads the resource; creates it when absent, else merges the stored model with the
new one and replaces the resource with the ``resourceVersion`` it read. A 409 (someone
wrote in between, or created it first) restarts the read-merge-write, so concurrent
writers from several nodes all end up in the model. The status goes through the
``status`` subresource afterwards. The client is synchronous: async callers use
``asyncio.to_thread(sink.write, completed)``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Final

from kubernetes import client as _client
from kubernetes import config as _config
from kubernetes.client.exceptions import ApiException

from armorflow.names import InvalidName, check_namespace, check_profile_name
from armorflow.pipeline.sink.base import SinkError, SinkResult, merge_with_stored
from armorflow.resource import (
    DEFAULT_BUDGET,
    GROUP,
    PLURAL,
    VERSION,
    CompletedModel,
    ResourceError,
    build_resource,
    build_status,
    json_size,
    load_dynamic_result,
)

log = logging.getLogger(__name__)

# The client's modules carry no annotations.
client: Any = _client
config: Any = _config

MAX_ATTEMPTS: Final = 8
#: Where a model too large for the resource goes, unless the URL says ``modelDir``.
MODEL_DIR_ENV: Final = "ARMORFLOW_MODEL_DIR"


def api_client_for(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """In-cluster credentials inside a pod, else the kubeconfig (``$KUBECONFIG``, ~/.kube)."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig, context=context)


class KubernetesSink:
    """Writes ArmorProfileModels to the cluster the ``api_client`` talks to."""

    def __init__(self, api_client: Any, *, url: str = "k8s://", model_dir: Path | None = None,
                 budget: int = DEFAULT_BUDGET, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.url = url
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.model_dir = model_dir
        self.budget = budget
        self.max_attempts = max_attempts

    def close(self) -> None:
        self.api_client.close()

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def _stored_model(self, current: dict[str, Any]) -> dict[str, Any]:
        try:
            return load_dynamic_result(current)
        except ResourceError as exc:
            # Never block the profiles on an unreadable old model; say so loudly.
            log.error("stored model of %s/%s unreadable, replacing it: %s",
                      current["metadata"].get("namespace"), current["metadata"]["name"], exc)
            return {}

    def write(self, completed: CompletedModel) -> SinkResult:
        namespace, name = completed.namespace, completed.profile
        try:
            check_namespace(namespace)
            check_profile_name(name)
        except InvalidName as exc:
            raise SinkError(f"refused to write {namespace!r}/{name!r}: {exc}") from None
        inline_model = True
        for attempt in range(1, self.max_attempts + 1):
            current = self._read(namespace, name)
            merged = merge_with_stored(
                completed, self._stored_model(current) if current is not None else None)
            body, stored = build_resource(
                name, namespace, merged.model, merged.apparmor, merged.seccomp,
                enforcer=completed.enforcer, mode=completed.mode, owner=completed.policy,
                budget=self.budget, model_dir=self.model_dir, inline_model=inline_model,
            )
            try:
                if current is None:
                    written = self.custom.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, body)
                else:
                    meta = body["metadata"]
                    old = current["metadata"]
                    meta["resourceVersion"] = old["resourceVersion"]
                    meta["labels"] = {**(old.get("labels") or {}), **meta["labels"]}
                    if old.get("annotations"):
                        meta["annotations"] = old["annotations"]
                    meta["ownerReferences"] = _owners(old.get("ownerReferences"),
                                                      meta.get("ownerReferences"))
                    if not meta["ownerReferences"]:
                        del meta["ownerReferences"]
                    written = self.custom.replace_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, name, body)
            except ApiException as exc:
                if exc.status == 409 and attempt < self.max_attempts:
                    log.info("conflict writing %s/%s (attempt %d): re-reading and merging",
                             namespace, name, attempt)
                    time.sleep(0.02 * attempt)
                    continue
                if _too_large(exc) and inline_model and attempt < self.max_attempts:
                    # The server's limit is below our budget: keep the model out of the
                    # resource rather than fail the profiles.
                    log.warning("the API server refused %s/%s as too large (%s); writing "
                                "the model outside the resource", namespace, name, exc.status)
                    inline_model = False
                    continue
                raise SinkError(f"writing ArmorProfileModel {namespace}/{name} failed: "
                                f"{exc.status} {exc.reason}") from exc
            status = build_status(completed.enforcer, merged.apparmor, merged.seccomp, stored,
                                  previous=(current or {}).get("status"))
            try:
                written = self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, {"status": status})
            except ApiException as exc:
                raise SinkError(f"writing the status of {namespace}/{name} failed: "
                                f"{exc.status} {exc.reason}") from exc
            return SinkResult(
                location=f"k8s://{namespace}/{name}", namespace=namespace, name=name,
                storage_type=body["storageType"], stored=stored, merged=merged.merged,
                attempts=attempt, size=json_size(body),
                resource_version=written["metadata"].get("resourceVersion"),
            )
        raise SinkError(f"writing ArmorProfileModel {namespace}/{name}: no attempts left")


def _too_large(exc: ApiException) -> bool:
    """kube-apiserver's 413, or etcd's "request is too large" passed on as a 500."""
    return exc.status == 413 or (exc.status == 500 and "too large" in str(exc.body or ""))


def _owners(old: list[dict[str, Any]] | None,
            new: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The stored owner references plus ours (one per uid)."""
    by_uid = {ref.get("uid"): ref for ref in old or []}
    for ref in new or []:
        by_uid[ref.get("uid")] = ref
    return list(by_uid.values())
