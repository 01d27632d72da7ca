"""Sinks: where completed models and their profiles go, chosen by URL.

``open_sink(url).write(completed) -> SinkResult`` for a
:class:`~armorflow.resource.CompletedModel` (``completed_from_window(closed)`` makes one
from the pipeline's rendered ``ClosedWindow``); writes are synchronous (async code calls
``await asyncio.to_thread(sink.write, completed)``).

- ``k8s://`` — ArmorProfileModel resources through the official client, with in-cluster
  credentials or ``$KUBECONFIG``; ``k8s://?kubeconfig=PATH&context=NAME`` explicit.
  ``modelDir=DIR`` (else ``$ARMORFLOW_MODEL_DIR``) is where models too large for the
  resource are written (``storageType: LocalDisk``); ``budget=BYTES`` the resource size
  limit (default 1,400,000).
- ``file://DIR`` — the same resource as YAML per profile, plus the model JSON and the
  decoded profiles (``file:///abs/dir`` or ``file://relative/dir``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from armorflow.control import PolicyRef
from armorflow.model import BehaviourModel
from armorflow.pipeline.sink.base import Merged, Sink, SinkError, SinkResult, merge_with_stored
from armorflow.resource import DEFAULT_BUDGET, CompletedModel, resource_namespace


class RenderedWindow(Protocol):
    """What :func:`completed_from_window` reads (the pipeline's ``ClosedWindow`` has it)."""

    profile: str
    namespace: str
    policy: dict[str, str]
    enforcer: str
    model: BehaviourModel
    apparmor: str | None
    seccomp: dict[str, Any] | None


def completed_from_window(window: RenderedWindow) -> CompletedModel:
    """A sink's input from a closed, rendered window (its namespace, else the policy's)."""
    policy = PolicyRef.parse(window.policy)
    return CompletedModel(
        profile=window.profile, namespace=window.namespace or resource_namespace(policy),
        policy=policy, enforcer=window.enforcer, model=window.model,
        apparmor=window.apparmor, seccomp=window.seccomp,
    )


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def open_sink(url: str) -> Sink:
    """The sink named by ``url``; raises ValueError for an unknown or malformed URL."""
    if url.startswith("file://"):
        from armorflow.pipeline.sink.files import FileSink

        path = url.removeprefix("file://").split("?", 1)[0]
        if not path:
            raise ValueError(f"file sink needs a directory: {url!r}")
        return FileSink(Path(path), url=url)
    if url.startswith("k8s://"):
        from armorflow.pipeline.sink.k8s import MODEL_DIR_ENV, KubernetesSink, api_client_for

        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"k8s sink takes only query parameters: {url!r}")
        query = parse_qs(parts.query)
        unknown = set(query) - {"kubeconfig", "context", "modelDir", "budget"}
        if unknown:
            raise ValueError(f"unknown k8s sink parameters {sorted(unknown)} in {url!r}")
        model_dir = _param(query, "modelDir") or os.environ.get(MODEL_DIR_ENV)
        budget = int(_param(query, "budget") or DEFAULT_BUDGET)
        api = api_client_for(_param(query, "kubeconfig"), _param(query, "context"))
        return KubernetesSink(api, url=url, model_dir=Path(model_dir) if model_dir else None,
                              budget=budget)
    raise ValueError(f"unknown sink URL {url!r} (expected k8s://... or file://DIR)")


__all__ = [
    "CompletedModel",
    "Merged",
    "PolicyRef",
    "RenderedWindow",
    "Sink",
    "SinkError",
    "SinkResult",
    "completed_from_window",
    "merge_with_stored",
    "open_sink",
]
