"""The agent's half of enforcement: every Completed model's Seccomp profile on this node.

A pod that asks for ``localhostProfile: armorflow/PROFILE.json`` can start only on a node
where the kubelet finds that file, so each node's agent (``armorflow agent
--seccomp-root``) keeps ``ROOT/armorflow/`` holding the Seccomp profile of every Completed
ArmorProfileModel: it lists them every few seconds and (re)writes a file whose content
changed, atomically. A file does nothing until a pod names it; the operator names it in
the target workloads of a policy that opted in (``operator/enforcement.py``).

Files are never deleted: a running pod's next container restart reads the file again,
and a missing one would keep that container from starting. The folder holds only
profiles armorflow wrote, so removing stale ones by hand is safe once no pod names them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armorflow.counters import CounterSet
from armorflow.render.seccomp import seccomp_json
from armorflow.resource import ResourceError, read_resource

from .enforce import EnforceError, install_seccomp, localhost_path, seccomp_of

log = logging.getLogger(__name__)

ModelLister = Callable[[], list[dict[str, Any]]]


@dataclass
class InstallerCounters(CounterSet):
    syncs: int = 0
    installed: int = 0
    unchanged: int = 0
    #: models still being modeled (not Completed): nothing to install yet
    not_ready: int = 0
    #: Completed models whose profile cannot be enforced (no Seccomp, no namespace
    #: filters, a name unsafe as a file name, an unreadable resource)
    skipped: int = 0
    #: one profile name claimed by models in several namespaces: none of them installed
    conflicts: int = 0
    errors: int = 0
    profiles: dict[str, str] = field(default_factory=dict)  # name -> "ns/name" installed


class SeccompInstaller:
    """``sync()`` once, or ``start()`` a thread that syncs every ``interval_s``."""

    def __init__(self, list_models: ModelLister, root: Path, interval_s: float = 10.0) -> None:
        self.list_models = list_models
        self.root = root
        self.interval_s = interval_s
        self.counters = InstallerCounters()
        self._told: set[tuple[str, str]] = set()  # (model, why): each problem logged once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """Install what changed; a bad model is skipped and logged, never fatal."""
        self.counters.syncs += 1
        by_name: dict[str, list[dict[str, Any]]] = {}
        for obj in self.list_models():
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if isinstance(name, str):
                by_name.setdefault(name, []).append(obj)
        for name, objs in sorted(by_name.items()):
            if len(objs) > 1:
                where = sorted(str(o["metadata"].get("namespace") or "") for o in objs)
                self.counters.conflicts += 1
                self._tell(name, f"profile {name!r} is claimed in several namespaces "
                                 f"({', '.join(where)}): none installed")
                continue
            self._install(name, objs[0])

    def _install(self, name: str, obj: dict[str, Any]) -> None:
        where = f"{(obj.get('metadata') or {}).get('namespace') or ''}/{name}"
        if (obj.get("status") or {}).get("ready") is not True:
            self.counters.not_ready += 1
            return
        try:
            path, _ = localhost_path(self.root, name)
            seccomp, _rendered = seccomp_of(read_resource(obj), render=False)
        except (EnforceError, ResourceError) as exc:
            self.counters.skipped += 1
            self._tell(name, f"{where}: not installed: {exc}")
            return
        text = seccomp_json(seccomp).encode("utf-8")
        try:
            if path.is_file() and path.read_bytes() == text:
                self.counters.unchanged += 1
                return
            install_seccomp(self.root, name, seccomp)
        except OSError as exc:
            self.counters.errors += 1
            self._tell(name, f"{where}: cannot write {path}: {exc}")
            return
        self.counters.installed += 1
        self.counters.profiles[name] = where
        log.info("installed the Seccomp profile of %s as %s", where, path)

    def _tell(self, name: str, why: str) -> None:
        if (name, why) not in self._told:
            self._told.add((name, why))
            log.warning("%s", why)

    # -- the background thread ------------------------------------------------------------

    def start(self) -> SeccompInstaller:
        self._thread = threading.Thread(target=self._run, name="seccomp-installer",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # the API server away: try again next round
                self.counters.errors += 1
                log.warning("listing ArmorProfileModels failed (%s); retrying", exc)
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stats(self) -> dict[str, Any]:
        return self.counters.as_dict()


def kube_model_lister(api_client: Any) -> ModelLister:
    """Every ArmorProfileModel in the cluster, as JSON dicts."""
    import orjson
    from kubernetes import client

    from armorflow.resource import GROUP, PLURAL, VERSION

    api = client.CustomObjectsApi(api_client)

    def list_models() -> list[dict[str, Any]]:
        resp: Any = api.list_cluster_custom_object(GROUP, VERSION, PLURAL,
                                                   _preload_content=False)
        items = orjson.loads(resp.data).get("items")
        return [i for i in items or [] if isinstance(i, dict)]

    return list_models
