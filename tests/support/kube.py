"""A Kubernetes API emulator served over HTTP from its own thread, for tests.

``KubeEmulator`` runs kmock's HTTP server with the project's stateful layer
(:mod:`~support.kube_server`, :mod:`~support.kube_store`) on a free
loopback port, in a thread with its own event loop, so the synchronous ``kubernetes``
client, ``kubectl`` and kopf can all talk to it while the test blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import kmock
import yaml

from support.kube_schema import ResourceType, load_crd_documents
from support.kube_server import EmulatorHandler
from support.kube_store import Store

T = TypeVar("T")

#: The chart's CRDs in a source checkout (where the tests run).
CHART_CRDS = Path(__file__).resolve().parents[2] / "helm" / "armorflow" / "crds"


class KubeEmulator:
    """An in-process Kubernetes API server emulator on ``http://127.0.0.1:PORT``.

    ``crds``: CRD YAML files or directories (every ``*.yaml`` in them) registered before the
    server starts; more can be added later with :meth:`add_crds` or by creating a
    CustomResourceDefinition through the API.
    """

    def __init__(self, crds: Iterable[Path] = (), *, host: str = "127.0.0.1",
                 port: int | None = None, history: int = 1000) -> None:
        self.handler = EmulatorHandler(store=Store(history=history))
        self._crd_paths = [Path(p) for p in crds]
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._server: kmock.Server | None = None
        self.url = ""
        #: Set by :meth:`write_kubeconfig`.
        self.kubeconfig_path: Path | None = None

    @property
    def store(self) -> Store:
        return self.handler.store

    # --- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self.add_crds(self._crd_paths)
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stopping = asyncio.Event()
            self._server = kmock.Server(self.handler, host=self._host, port=self._port)
            try:
                async with self.handler, self._server:
                    self.url = str(self._server.url).rstrip("/")
                    ready.set()
                    await self._stopping.wait()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException:  # reported to start() through `failure`
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise RuntimeError(f"the Kubernetes emulator did not start: {failure}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            stopping = self._stopping

            def shut_down() -> None:
                self.store.end_watches()  # open watches would hold the server's shutdown
                stopping.set()

            self._loop.call_soon_threadsafe(shut_down)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- working with the store from the test's thread ---------------------------------

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the emulator's loop (the store and the handler are not thread-safe)."""
        if self._loop is None or self._thread is None:
            return fn()

        async def run() -> T:
            return fn()

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            run(), self._loop)
        return future.result(timeout)

    def add_crds(self, paths: Iterable[Path]) -> list[ResourceType]:
        """Register the CRDs in ``paths`` (files or directories of YAML)."""
        docs = list(load_crd_documents(Path(p) for p in paths))
        return self.call(lambda: [rt for doc in docs for rt in self.store.register_crd(doc)])

    def objects(self, group: str, version: str, plural: str,
                namespace: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of the stored objects of one resource (for assertions)."""
        def snapshot() -> list[dict[str, Any]]:
            rt = self.store.resource(group, version, plural)
            listed = self.store.list_objects(rt, namespace, lambda _: True)
            items: list[dict[str, Any]] = listed["items"]
            return items
        return self.call(snapshot)

    # --- clients -------------------------------------------------------------------------

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig whose current context points at this emulator."""
        if not self.url:
            raise RuntimeError("the emulator is not running")
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "emulator"}}],
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig()))
        self.kubeconfig_path = path
        return path

    def api_client(self) -> Any:
        """An official ``kubernetes.client.ApiClient`` configured for this emulator."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": "emulator"}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)


def kube_emulator(crds: Iterable[Path] = (CHART_CRDS,), *, workdir: Path | None = None
                  ) -> Iterator[KubeEmulator]:
    """A started emulator (with a kubeconfig in ``workdir`` if given), stopped afterwards.

    The body of a pytest fixture: ``yield from kube_emulator(workdir=tmp_path)``.
    """
    with KubeEmulator(crds) as emulator:
        if workdir is not None:
            emulator.write_kubeconfig(workdir / "kubeconfig")
        yield emulator


FixtureScope = Literal["session", "package", "module", "class", "function"]


def kube_emulator_fixture(crds: Iterable[Path] = (CHART_CRDS,), *,
                          scope: FixtureScope = "function",
                          name: str | None = None) -> Any:
    """A pytest fixture yielding a started :class:`KubeEmulator` for ``crds``.

    In a test module: ``kube = kube_emulator_fixture(scope="module")``; the emulator's
    kubeconfig is written to a fresh temporary directory (``emulator.kubeconfig_path``).
    """
    import pytest

    paths = [Path(p) for p in crds]

    @pytest.fixture(scope=scope, name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
        yield from kube_emulator(paths, workdir=tmp_path_factory.mktemp("kube"))

    return fixture
