"""The emulator's object store: the API server's write semantics over plain dicts.

Every write gets the next value of one global revision counter (as etcd's), stored as
``metadata.resourceVersion``; creates add ``uid``, ``creationTimestamp`` and ``generation``;
``generation`` grows when anything outside ``metadata`` and ``status`` changes. Replace and
patch honour ``resourceVersion`` preconditions (409 Conflict), the ``status`` subresource
splits main and status writes, custom resources are pruned and schema-checked (422), and
an object whose JSON exceeds etcd's 1.5 MiB request limit is refused with etcd's error.
Watchers get ADDED/MODIFIED/DELETED events, translated through their label selector.

The store is not thread-safe: the emulator calls it from its own event loop only.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from support.kube_patch import PatchError, UnsupportedPatch, apply_patch
from support.kube_schema import ResourceType, types_from_crd

MIB: Final = 1024 * 1024
#: kube-apiserver's limit on a write request's body (``Request entity too large``).
MAX_REQUEST_BYTES: Final = 3 * MIB
#: etcd's default ``--max-request-bytes``: larger stored objects fail with its error.
MAX_STORED_BYTES: Final = 3 * MIB // 2
ETCD_TOO_LARGE: Final = "etcdserver: request is too large"

TypeKey = tuple[str, str, str]
ObjectKey = tuple[str, str]  # (namespace or "", name)
ObjectMatcher = Callable[[Mapping[str, Any]], bool]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_MESSAGE: Final = ("a lowercase RFC 1123 subdomain must consist of lower case "
                       "alphanumeric characters, '-' or '.'")
_CRD_KEY: Final = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")


class ApiError(Exception):
    """An API failure answered as a ``v1 Status`` with ``code``."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details or {}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclass(frozen=True)
class WatchEvent:
    revision: int
    type: str  # ADDED, MODIFIED, DELETED
    key: TypeKey
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(eq=False)
class Watcher:
    """One watch request's view of the event log: its resource, namespace and selector."""

    key: TypeKey
    namespace: str | None
    matches: ObjectMatcher
    #: Events to send; None ends the stream (the emulator is stopping).
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: WatchEvent) -> None:
        """Queue ``event`` as this watcher sees it (selector transitions become ADDED/DELETED)."""
        if event.key != self.key:
            return
        if self.namespace and event.obj["metadata"].get("namespace") != self.namespace:
            return
        now = self.matches(event.obj)
        before = event.old is not None and self.matches(event.old)
        kind = event.type
        if kind == "MODIFIED":
            kind = ("MODIFIED" if before else "ADDED") if now else ("DELETED" if before else "")
        elif not now:
            kind = ""
        if kind:
            self.queue.put_nowait({"type": kind, "object": event.obj})


class Store:
    """Objects by resource type, with the revision counter and the watch event log."""

    def __init__(self, history: int = 1000) -> None:
        self.types: dict[TypeKey, ResourceType] = {}
        self.revision = 0
        self._objects: dict[TypeKey, dict[ObjectKey, dict[str, Any]]] = {}
        self._log: collections.deque[WatchEvent] = collections.deque(maxlen=history)
        self._watchers: set[Watcher] = set()
        self.closing = False
        #: Called with each newly registered type (the server adds it to discovery).
        self.on_register: list[Callable[[ResourceType], None]] = []

    # --- types ---------------------------------------------------------------------------

    def register(self, rt: ResourceType) -> None:
        self.types[rt.key] = rt
        self._objects.setdefault(rt.key, {})
        for hook in self.on_register:
            hook(rt)

    def register_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        found = types_from_crd(crd)
        for rt in found:
            self.register(rt)
        return found

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    # --- reads ---------------------------------------------------------------------------

    def _not_found(self, rt: ResourceType, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found',
                        {"name": name, "group": rt.group, "kind": rt.plural})

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        return ((namespace or "") if rt.namespaced else "", name)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        found = self._objects[rt.key].get(self._key(rt, namespace, name))
        if found is None:
            raise self._not_found(rt, name)
        return found

    def list_objects(self, rt: ResourceType, namespace: str | None,
             matches: ObjectMatcher) -> dict[str, Any]:
        items = [obj for (ns, _), obj in sorted(self._objects[rt.key].items())
                 if (not namespace or ns == namespace) and matches(obj)]
        return {"apiVersion": rt.api_version, "kind": f"{rt.kind}List",
                "metadata": {"resourceVersion": str(self.revision)}, "items": items}

    # --- writes --------------------------------------------------------------------------

    def _invalid(self, rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
        text = ", ".join(f"{path}: {message}" for path, message in causes)
        return ApiError(
            422, "Invalid", f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {text}',
            {"name": name, "group": rt.group, "kind": rt.kind,
             "causes": [{"reason": "FieldValueInvalid", "message": m, "field": p}
                        for p, m in causes]},
        )

    def _checked(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` pruned, schema-checked and small enough for etcd."""
        name = obj["metadata"].get("name", "")
        obj = rt.prune(obj)
        errors = rt.validation_errors(obj)
        if errors:
            raise self._invalid(rt, name, errors)
        if len(orjson.dumps(obj)) > MAX_STORED_BYTES:
            raise ApiError(500, "InternalError", ETCD_TOO_LARGE)
        return obj

    def _commit(self, rt: ResourceType, kind: str, obj: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        if kind == "DELETED":
            self._objects[rt.key].pop(key, None)
        else:
            self._objects[rt.key][key] = obj
        event = WatchEvent(self.revision, kind, rt.key, obj, old)
        self._log.append(event)
        for watcher in self._watchers:
            watcher.offer(event)
        return obj

    def create(self, rt: ResourceType, namespace: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the request body is not a JSON object")
        obj = copy.deepcopy(body)
        self._check_type(rt, obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name") or ""
        if not name:
            raise self._invalid(rt, "", [("metadata.name", "name or generateName is required")])
        if rt.custom and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
            raise self._invalid(rt, name, [("metadata.name", _DNS_MESSAGE)])
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                                                  "not match the namespace sent on the request")
            meta["namespace"] = namespace or meta.get("namespace") or ""
            if not meta["namespace"]:
                raise ApiError(400, "BadRequest", "a namespace is required")
        else:
            meta.pop("namespace", None)
        if self._key(rt, meta.get("namespace"), name) in self._objects[rt.key]:
            raise ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                           {"name": name, "group": rt.group, "kind": rt.plural})
        if rt.status_subresource:
            obj.pop("status", None)  # a create never sets the status of such a resource
        for server_set in ("deletionTimestamp", "resourceVersion", "managedFields"):
            meta.pop(server_set, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        obj = self._checked(rt, obj)
        if rt.key == _CRD_KEY:
            try:
                types_from_crd(obj)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self._invalid(rt, name, [("spec", f"not a usable CRD: {exc!r}")]) from exc
        created = self._commit(rt, "ADDED", obj, None)
        if rt.key == _CRD_KEY:
            self.register_crd(created)
        return created

    def _check_type(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        api_version, kind = obj.setdefault("apiVersion", rt.api_version), obj.setdefault(
            "kind", rt.kind)
        if api_version != rt.api_version or kind != rt.kind:
            raise ApiError(400, "BadRequest", f"the object {api_version}/{kind} does not "
                                              f"belong to {rt.api_version}/{rt.plural}")

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: Any, *,
                status: bool = False) -> dict[str, Any]:
        """PUT: the whole object (or its status), guarded by ``resourceVersion`` if given."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the request body is not a JSON object")
        return self._update(rt, namespace, name, copy.deepcopy(body), status=status)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, content_type: str,
              body: Any, *, status: bool = False) -> dict[str, Any]:
        current = self.get(rt, namespace, name)
        try:
            patched = apply_patch(content_type, current, body, custom=rt.custom)
        except UnsupportedPatch as exc:
            raise ApiError(415, "UnsupportedMediaType", str(exc)) from exc
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        if not isinstance(patched.get("metadata"), dict):
            raise ApiError(422, "Invalid", "the patch removed metadata")
        return self._update(rt, namespace, name, copy.deepcopy(patched), status=status)

    def _update(self, rt: ResourceType, namespace: str | None, name: str,
                new: dict[str, Any], *, status: bool) -> dict[str, Any]:
        current = self.get(rt, namespace, name)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta['name']}) does "
                                              f"not match the name on the URL ({name})")
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409, "Conflict",
                f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has '
                f"been modified; please apply your changes to the latest version and try again",
                {"name": name, "group": rt.group, "kind": rt.plural},
            )
        if status:
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            self._check_type(rt, new)
            result = new
            if rt.status_subresource:
                result.pop("status", None)
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
            keep = ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name")
            for key in keep:
                if key in current["metadata"]:
                    result["metadata"][key] = current["metadata"][key]
                else:
                    result["metadata"].pop(key, None)
        generation = int(current["metadata"].get("generation", 1))
        if _body_of(result) != _body_of(current):
            generation += 1
        result["metadata"]["generation"] = generation
        result["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        result = self._checked(rt, result)
        if result == current:
            return current  # a no-op write: no new revision, no event (as the API server)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get(
                "finalizers"):
            return self._commit(rt, "DELETED", result, current)
        return self._commit(rt, "MODIFIED", result, current)

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               options: Any = None) -> dict[str, Any]:
        current = self.get(rt, namespace, name)
        pre = (options or {}).get("preconditions") if isinstance(options, dict) else None
        for field_name in ("resourceVersion", "uid"):
            if pre and pre.get(field_name) and pre[field_name] != current["metadata"].get(
                    field_name):
                raise ApiError(409, "Conflict", f"Precondition failed: {field_name} in "
                                                f"precondition: {pre[field_name]}, {field_name}"
                                                f" in object meta: "
                                                f"{current['metadata'].get(field_name)}")
        result = copy.deepcopy(current)
        if result["metadata"].get("finalizers"):
            if result["metadata"].get("deletionTimestamp"):
                return current
            result["metadata"]["deletionTimestamp"] = _now()
            return self._commit(rt, "MODIFIED", result, current)
        return self._commit(rt, "DELETED", result, current)

    # --- watch ---------------------------------------------------------------------------

    def watch(self, rt: ResourceType, namespace: str | None, matches: ObjectMatcher,
              since: str | None) -> Watcher:
        """A registered watcher, with its backlog queued: the current objects as ADDED when
        ``since`` is unset or "0", else the logged events after revision ``since``.

        Raises 410 Gone when ``since`` is older than the retained log.
        """
        watcher = Watcher(rt.key, namespace, matches)
        if not since or since == "0":
            for obj in self.list_objects(rt, namespace, matches)["items"]:
                watcher.queue.put_nowait({"type": "ADDED", "object": obj})
        else:
            try:
                start = int(since)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}") from None
            oldest = self._log[0].revision if self._log else self.revision + 1
            if self._log.maxlen is not None and len(self._log) == self._log.maxlen \
                    and start < oldest - 1:
                raise ApiError(410, "Expired", f"too old resource version: {start} ({oldest})")
            for event in self._log:
                if event.revision > start:
                    watcher.offer(event)
        self._watchers.add(watcher)
        if self.closing:
            watcher.queue.put_nowait(None)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def end_watches(self) -> None:
        """End every open watch stream, and any opened later (so that a stopping server
        is not held by clients that reconnect their watches)."""
        self.closing = True
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)
