"""``meta.k8s.io/v1 Table`` answers, as ``kubectl get`` asks for them.

Custom resources get a ``Name`` column, then their CRD's ``additionalPrinterColumns``
(simple ``.a.b.c`` JSONPaths; ``date`` cells become ages such as ``5s``/``3m``/``2h``);
other resources get ``Name`` and ``Age``.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from support.kube_schema import ResourceType

AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def wants_table(accept: str) -> bool:
    """True when the client's ``Accept`` prefers the Table form (as kubectl's does)."""
    first = accept.split(",")[0]
    return "as=Table" in first


def _lookup(obj: Any, path: str) -> Any:
    for part in path.strip().lstrip(".").split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _age(stamp: str, now: datetime.datetime) -> str:
    try:
        then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, kind: str, now: datetime.datetime) -> Any:
    if value is None:
        return "<none>"  # what kubectl shows for an unset column of a real API server
    if kind == "date" and isinstance(value, str):
        return _age(value, now)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def to_table(rt: ResourceType, objects: list[dict[str, Any]],
             resource_version: str) -> dict[str, Any]:
    columns = list(rt.printer_columns) if rt.custom and rt.printer_columns else [AGE_COLUMN]
    now = datetime.datetime.now(tz=datetime.UTC)
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c["name"], "type": c.get("type", "string"),
                     "format": c.get("format", ""), "priority": c.get("priority", 0),
                     "description": c.get("description", "")} for c in columns]
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]]
        cells += [_cell(_lookup(obj, c["jsonPath"]), c.get("type", "string"), now)
                  for c in columns]
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj["metadata"]}
        rows.append({"cells": cells, "object": partial})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
