"""The HTTP side: a kmock ``KubernetesScaffold`` that answers resource requests from the store.

kmock provides the HTTP server, the request parsing (group, version, plural, namespace,
name, subresource), discovery (``/api``, ``/apis``, ``/apis/G/V``, ``/version``), ``v1
Status`` error bodies, the request log and its routing DSL (reactions a test adds with
``handler[...] << ...`` take priority over the store, e.g. to inject a failure). This
layer adds the stateful part in place of kmock's ``KubernetesEmulator``, whose store merges
every write and has no resource versions: it routes GET/LIST/WATCH/POST/PUT/PATCH/DELETE
(and ``/status``) to :class:`~support.kube_store.Store`, answers create with
201, streams watches with ``timeoutSeconds``, serves Tables for ``kubectl get``, and
refuses bodies over 3 MiB with 413 as kube-apiserver does. URLs are parsed here again
(:func:`parse_route`): kmock 0.8 takes ``/api/v1/namespaces/NAME`` for a namespace and
fails on ``/api/v1/namespaces``, so the Namespace collection is answered before kmock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
import orjson

# Not re-exported by kmock's __init__ (but imported there): a reaction's status + payload.
from kmock._internal.rendering import Response

from support.kube_schema import BUILTINS, VERBS, ResourceType
from support.kube_selectors import SelectorError, object_matcher
from support.kube_store import MAX_REQUEST_BYTES, ApiError, Store
from support.kube_table import to_table, wants_table

#: Bodies above this are not even read (aiohttp answers its own 413).
_READ_LIMIT = 64 * 1024 * 1024


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}


@dataclass(frozen=True)
class Route:
    """A resource request as the API server reads its URL."""

    method: str
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    params: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    data: Any

    @property
    def watch(self) -> bool:
        return self.method == "GET" and self.params.get("watch") in ("true", "1")


def parse_route(method: str, path: str, params: Mapping[str, str],
                headers: Mapping[str, str], data: Any) -> Route | None:
    """The resource addressed by ``path``, or None for discovery and other URLs."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    namespace_own = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_own:
        namespace, rest = rest[1], rest[2:]
    return Route(
        method=method.upper(), group=group, version=version, plural=rest[0],
        namespace=namespace, name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None, params=params,
        headers={k.lower(): str(v) for k, v in headers.items()}, data=data,
    )


def _route_of(request: kmock.Request) -> Route | None:
    return parse_route(str(request.method.value), request.url.path, request.params,
                       request.headers, request.data)


def _kube_error(exc: ApiError) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=exc.code, reason=exc.reason, message=exc.message,
                                 details=exc.details)


@attrs.define(kw_only=True)
class EmulatorHandler(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with the store behind its resource URLs."""

    store: Store = attrs.field(factory=Store)
    max_request_bytes: int = MAX_REQUEST_BYTES

    #: The number of reactions kmock's scaffold and this class register themselves.
    _own_reactions: int = attrs.field(default=0, init=False)
    #: Requests kept in kmock's log (for assertions, with their bodies); older ones are
    #: forgotten.
    request_log: int = 1000

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Fallbacks: reactions a test declares on the handler still come first.
        self.fallback[self._is_watch] << self._serve_watch
        self.fallback[self._is_resource_request] << self._serve
        self._own_reactions = len(self._payloads)
        self.store.on_register.append(self._declare)
        for rt in BUILTINS:
            self.store.register(rt)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock matches each request against every earlier one per reaction (quadratic in
        # the request count: 88 ms per GET after 200 requests). Without a test's own active
        # reactions, route directly; with them, kmock's DSL decides as usual.
        if len(self._requests) > self.request_log:
            del self._requests[: len(self._requests) - self.request_log]
        for errors in self._errors:  # kmock keeps every answered error (404s, 409s...)
            del errors[: -self.request_log]
        injected = self._payloads[self._own_reactions:]
        if any(not reaction._disabled.is_set() for reaction in injected):
            response: aiohttp.web.StreamResponse = await super()._handle(request)
            return response
        raw = request._raw_request
        assert raw is not None
        route = _route_of(request)
        if route is None:
            return await self._discovery(request)
        try:
            return await self._respond(raw, route)
        except ApiError as exc:
            raise _kube_error(exc) from None

    async def _discovery(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        serve: Any
        if request.method.value != "GET":
            raise kmock.KubernetesEndpointNotFoundError()
        if path == "/":
            serve = self._serve_root
        elif path == "/version":
            serve = self._serve_server_version
        elif path == "/api":
            serve = self._serve_api
        elif path == "/apis":
            serve = self._serve_apis
        elif parts[0] == "apis" and len(parts) == 2:
            serve = self._serve_group
        elif (parts[0], len(parts)) in (("apis", 3), ("api", 2)):
            serve = self._serve_version
        else:
            raise kmock.KubernetesEndpointNotFoundError()
        return aiohttp.web.json_response(await serve(request))

    async def _respond(self, raw: aiohttp.web.BaseRequest,
                       route: Route) -> aiohttp.web.StreamResponse:
        """Answer a resource request; raises :class:`ApiError`."""
        if route.watch:
            self._resource(route)  # a 404 before the stream starts
            response = aiohttp.web.StreamResponse()
            response.content_type = "application/json"
            await response.prepare(raw)
            # aclosing: a client gone mid-write must still unregister the watcher.
            async with contextlib.aclosing(self._watch(route)) as events:
                async for event in events:
                    if isinstance(event, dict):
                        await response.write(orjson.dumps(event) + b"\n")
            await response.write_eof()
            return response
        code, payload = self._dispatch(route)
        return aiohttp.web.Response(body=orjson.dumps(payload), status=code,
                                    content_type="application/json")

    def _declare(self, rt: ResourceType) -> None:
        """Make ``rt`` discoverable (kubectl, kopf and the client find resources this way)."""
        self.resources[f"{rt.api_version}/{rt.plural}"] = kmock.ResourceInfo(
            kind=rt.kind, singular=rt.singular, namespaced=rt.namespaced, verbs=set(VERBS),
            shortnames=set(rt.short_names), categories=set(rt.categories),
            subresources={"status"} if rt.status_subresource else set(),
        )

    async def _serve_version(self, request: kmock.Request) -> Any:
        # kmock 0.8 names the core group version "/v1"; clients expect "v1".
        # Subresources get no short names or categories (else kubectl warns of ambiguity).
        listing = await super()._serve_version(request)
        if isinstance(listing, dict):
            if str(listing.get("groupVersion", "")).startswith("/"):
                listing["groupVersion"] = listing["groupVersion"][1:]
            for entry in listing.get("resources", []):
                if "/" in entry.get("name", ""):
                    entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return listing

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # aiohttp reads at most 1 MiB by default; read up to our own limit and answer 413
        # the way kube-apiserver does above 3 MiB.
        path = raw_request.rel_url
        if len(path.path) > 1 and path.path.endswith("/"):  # "/api/v1/" is "/api/v1"
            path = path.with_path(path.path.rstrip("/"))
        request = raw_request.clone(client_max_size=_READ_LIMIT, rel_url=path)
        body = await request.read()
        if len(body) > self.max_request_bytes:
            message = f"Request entity too large: limit is {self.max_request_bytes}"
            return aiohttp.web.json_response(
                _status_body(413, "RequestEntityTooLarge", message), status=413)
        if "protobuf" in request.headers.get("Content-Type", ""):
            # kubectl's typed generators (`kubectl create namespace X`) send protobuf, which
            # is not emulated; `kubectl create -f` sends JSON.
            return aiohttp.web.json_response(_status_body(
                415, "UnsupportedMediaType", "protobuf bodies are not emulated: send JSON "
                                             "(e.g. kubectl create -f FILE)"), status=415)
        if request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(request, body)
        response: aiohttp.web.StreamResponse = await super().__call__(request)
        return response

    async def _serve_namespaces(self, request: aiohttp.web.BaseRequest,
                                body: bytes) -> aiohttp.web.StreamResponse:
        """The Namespace collection, which kmock 0.8 cannot parse."""
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        route = parse_route(request.method, request.path, dict(request.query),
                            dict(request.headers), data)
        assert route is not None
        try:
            return await self._respond(request, route)
        except ApiError as exc:
            return aiohttp.web.json_response(
                _status_body(exc.code, exc.reason, exc.message), status=exc.code)

    # --- routing -------------------------------------------------------------------------

    @staticmethod
    def _is_resource_request(request: kmock.Request) -> bool:
        return _route_of(request) is not None

    @staticmethod
    def _is_watch(request: kmock.Request) -> bool:
        route = _route_of(request)
        return route is not None and route.watch

    def _resource(self, route: Route) -> ResourceType:
        rt = self.store.resource(route.group, route.version, route.plural)
        if route.namespace and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource not in (None, "status") or (
                route.subresource == "status" and not rt.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    @staticmethod
    def _matcher(route: Route) -> Any:
        fields = route.params.get("fieldSelector") or ""
        if route.name:
            fields = ",".join(f for f in (fields, f"metadata.name={route.name}") if f)
        try:
            return object_matcher(route.params.get("labelSelector"), fields)
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from exc

    async def _serve(self, request: kmock.Request) -> Response:
        route = _route_of(request)
        assert route is not None
        try:
            code, payload = self._dispatch(route)
        except ApiError as exc:
            raise _kube_error(exc) from None
        return Response(status=code, payload=payload)

    def _dispatch(self, route: Route) -> tuple[int, Any]:
        rt = self._resource(route)
        method, ns, name = route.method, route.namespace, route.name
        status = route.subresource == "status"
        store = self.store
        table = wants_table(route.headers.get("accept", ""))
        if method == "GET":
            if name:
                found = store.get(rt, ns, name)
                if table:
                    return 200, to_table(rt, [found], found["metadata"]["resourceVersion"])
                return 200, found
            listed = store.list_objects(rt, ns, self._matcher(route))
            if table:
                return 200, to_table(rt, listed["items"], listed["metadata"]["resourceVersion"])
            return 200, listed
        if method == "POST" and not name:
            return 201, store.create(rt, ns, route.data)
        if method == "PUT" and name:
            return 200, store.replace(rt, ns, name, route.data, status=status)
        if method == "PATCH" and name:
            content_type = route.headers.get("content-type", "")
            return 200, store.patch(rt, ns, name, content_type, route.data, status=status)
        if method == "DELETE" and name:
            return 200, store.delete(rt, ns, name, route.data)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    # --- watch ---------------------------------------------------------------------------

    def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        route = _route_of(request)
        assert route is not None
        try:
            self._resource(route)
        except ApiError as exc:
            raise _kube_error(exc) from None
        return self._watch(route)

    async def _watch(self, route: Route) -> AsyncGenerator[Any, None]:
        """The watch stream: b"" first (kmock sends headers on the first chunk), then events
        until ``timeoutSeconds``; a too-old resourceVersion is one ERROR event (410)."""
        rt = self._resource(route)
        try:
            watcher = self.store.watch(rt, route.namespace, self._matcher(route),
                                       route.params.get("resourceVersion"))
        except ApiError as exc:
            yield b""
            yield {"type": "ERROR", "object": _status_body(exc.code, exc.reason, exc.message)}
            return
        timeout = route.params.get("timeoutSeconds")
        loop = asyncio.get_running_loop()
        deadline = None if not timeout else loop.time() + float(timeout)
        try:
            yield b""
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if event is None:
                    return
                yield event
        finally:
            self.store.unwatch(watcher)
