"""``file://DIR`` sink: the same ArmorProfileModel as YAML, for offline runs and the demo.

Per profile, under ``DIR/NAMESPACE/``: ``NAME.yaml`` (the resource with its status, what
``kubectl apply -f`` takes), ``NAME.model.json`` (the full model, with the collapsed-path
examples), and the decoded profiles ``NAME.apparmor`` and ``NAME.seccomp.json`` for
``apparmor_parser`` and runtimes. A model too large for the resource goes to
``DIR/models/``. An existing YAML is merged with, as the k8s sink merges; one that cannot
be read is moved aside (``NAME.yaml.unreadable-NS``), logged, and replaced.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from armorflow.names import InvalidName, check_namespace, check_profile_name, path_under
from armorflow.pipeline.sink.base import SinkError, SinkResult, merge_with_stored
from armorflow.render.seccomp import seccomp_json
from armorflow.resource import (
    NO_BUDGET,
    CompletedModel,
    ResourceError,
    build_resource,
    build_status,
    json_size,
    load_dynamic_result,
)

log = logging.getLogger(__name__)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileSink:
    """Writes each profile's files under ``root``; never outside it.

    No size budget by default: etcd's object limit is the Kubernetes sink's concern, and a
    model of many literal rules must still reach a file (``budget`` imposes one, e.g. to
    preview what the Kubernetes sink would store).
    """

    def __init__(self, root: Path, *, url: str | None = None,
                 budget: int | None = None) -> None:
        self.root = root
        self.url = url or f"file://{root}"
        self.budget = budget

    def close(self) -> None:
        pass

    def paths(self, namespace: str, name: str) -> dict[str, Path]:
        """The files of one profile; :class:`SinkError` for names that would leave root."""
        try:
            folder = path_under(self.root, check_namespace(namespace))
            check_profile_name(name)
        except InvalidName as exc:
            raise SinkError(f"refused to write {namespace!r}/{name!r}: {exc}") from None
        return {"resource": folder / f"{name}.yaml", "model": folder / f"{name}.model.json",
                "apparmor": folder / f"{name}.apparmor",
                "seccomp": folder / f"{name}.seccomp.json"}

    def write(self, completed: CompletedModel) -> SinkResult:
        namespace, name = completed.namespace, completed.profile
        paths = self.paths(namespace, name)
        paths["resource"].parent.mkdir(parents=True, exist_ok=True)
        stored_model, previous = None, None
        if paths["resource"].exists():
            try:
                existing = yaml.safe_load(paths["resource"].read_text())
                previous = existing.get("status")
                stored_model = load_dynamic_result(existing)
            except (ResourceError, yaml.YAMLError, AttributeError, UnicodeDecodeError) as exc:
                # Keep the unreadable file for a human, and still deliver the profiles.
                aside = paths["resource"].with_name(
                    f"{paths['resource'].name}.unreadable-{time.time_ns()}")
                os.replace(paths["resource"], aside)
                log.error("%s cannot be merged with (%s): moved to %s", paths["resource"],
                          exc, aside.name)
                stored_model, previous = None, None
        merged = merge_with_stored(completed, stored_model)
        resource, stored = build_resource(
            name, namespace, merged.model, merged.apparmor, merged.seccomp,
            enforcer=completed.enforcer, mode=completed.mode, owner=completed.policy,
            budget=self.budget if self.budget is not None else NO_BUDGET,
            model_dir=self.root / "models",
        )
        resource["status"] = build_status(completed.enforcer, merged.apparmor,
                                          merged.seccomp, stored, previous=previous)
        _write_atomic(paths["resource"],
                      yaml.safe_dump(resource, sort_keys=False, width=120).encode("utf-8"))
        _write_atomic(paths["model"], orjson.dumps(
            merged.model.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        if merged.apparmor is not None:
            _write_atomic(paths["apparmor"], merged.apparmor.encode("utf-8"))
        if merged.seccomp is not None:
            _write_atomic(paths["seccomp"], seccomp_json(merged.seccomp).encode("utf-8"))
        return SinkResult(
            location=str(paths["resource"]), namespace=namespace, name=name,
            storage_type=resource["storageType"], stored=stored, merged=merged.merged,
            attempts=1, size=json_size(resource),
        )
