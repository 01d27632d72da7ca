"""Prometheus metrics and health probes of a component, on one small HTTP server.

Every component (agent, pipeline worker, operator) already keeps its counters in
dataclasses (:class:`armorflow.counters.CounterSet`) and prints them with ``as_dict``. This
module exports those snapshots as they are, read at scrape time, instead of a second,
hand-kept list of Prometheus objects that could drift from them:

- an ``int`` field ``name`` becomes the counter ``<prefix>_<name>_total``;
- a mapping field (a ``Counter`` of reasons, kinds, types) becomes one labelled counter,
  ``skipped_by`` -> ``<prefix>_skipped_total{reason="..."}``, ``by_kind`` ->
  ``<prefix>_by_kind_total{kind="..."}`` (or a name the component chooses);
- fields the component names as gauges (open windows, spool bytes...) become gauges;
- anything else (strings, samples, lists) is left out.

The server answers ``GET /metrics`` (the Prometheus text format), ``GET /healthz``
(liveness: the component's loops still turn) and ``GET /readyz`` (readiness: e.g. it
reached Kafka, has its partitions, has listed the policies), and 404 for anything else.
A probe answers 200 ``ok`` or 503 with one line per problem, so ``kubectl describe pod``
shows why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

#: A probe: the problems it sees now (empty: healthy / ready).
Check = Callable[[], list[str]]
#: Labelled snapshots of one kind of counters: (instance labels, ``as_dict()``-like mapping).
Instances = Callable[[], Iterable[tuple[Mapping[str, str], Mapping[str, Any]]]]

_Family = CounterMetricFamily | GaugeMetricFamily
#: Tries at reading a snapshot that another thread changed while it was read.
_READ_TRIES: Final = 3


def _label_of(field_name: str) -> tuple[str, str]:
    """Metric stem and label name of a mapping field: ``skipped_by`` counts by reason,
    ``by_kind`` by kind, any other mapping (``ignored``, ``skipped``) by reason."""
    if field_name.endswith("_by"):
        return field_name.removesuffix("_by"), "reason"
    if field_name.startswith("by_"):
        return field_name, field_name.removeprefix("by_")
    return field_name, "reason"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(eq=False)  # the registry keys its collectors by identity
class SnapshotCollector:
    """A Prometheus collector over counter snapshots, read when Prometheus scrapes.

    ``read`` returns the instances to export: usually one, ``({}, counters.as_dict())``;
    several when a component has more than one source of the same kind (they differ in
    their labels). ``gauges`` names the fields that are levels, not counts (a bool there
    exports as 0/1); ``names`` renames a field's metric stem (``by_kind`` ->
    ``published_events``).
    """

    prefix: str
    read: Instances
    gauges: frozenset[str] = frozenset()
    names: Mapping[str, str] = field(default_factory=dict)
    documentation: str = ""

    def collect(self) -> Iterator[Metric]:
        families: dict[str, _Family] = {}
        for labels, values in self._snapshot():
            for name, value in values.items():
                self._add(families, name, value, labels)
        yield from families.values()

    def _snapshot(self) -> list[tuple[Mapping[str, str], Mapping[str, Any]]]:
        # Counters belong to a loop in another thread; a mapping it grows while it is
        # copied raises RuntimeError, and the next copy is consistent again.
        for attempt in range(_READ_TRIES):
            try:
                return [(dict(labels), dict(values)) for labels, values in self.read()]
            except RuntimeError:
                if attempt == _READ_TRIES - 1:
                    raise
        return []

    def _add(self, families: dict[str, _Family], name: str, value: Any,
             labels: Mapping[str, str]) -> None:
        keys = sorted(labels)
        base = [labels[k] for k in keys]
        if name in self.gauges and (_is_number(value) or isinstance(value, bool)):
            family = self._family(families, name, keys, gauge=True)
            family.add_metric(base, float(value))
        elif _is_number(value):
            family = self._family(families, name, keys, gauge=False)
            family.add_metric(base, float(value))
        elif isinstance(value, Mapping) and all(_is_number(v) for v in value.values()):
            stem, label = _label_of(name)
            family = self._family(families, name, [*keys, label], gauge=False, stem=stem)
            for key, count in sorted(value.items(), key=lambda item: str(item[0])):
                family.add_metric([*base, str(key)], float(count))

    def _family(self, families: dict[str, _Family], name: str, labels: list[str], *,
                gauge: bool, stem: str | None = None) -> _Family:
        found = families.get(name)
        if found is not None:
            return found
        metric = f"{self.prefix}_{self.names.get(name, stem or name)}"
        doc = self.documentation or f"{name} ({self.prefix})"
        family: _Family = (GaugeMetricFamily(metric, doc, labels=labels) if gauge
                           else CounterMetricFamily(metric, doc, labels=labels))
        families[name] = family
        return family


def one(read: Callable[[], Mapping[str, Any]]) -> Instances:
    """The instances of a component with one snapshot of this kind and no labels."""
    return lambda: [({}, read())]


@dataclass
class Probes:
    """What ``/healthz`` and ``/readyz`` ask: every check must report no problem."""

    liveness: list[Check] = field(default_factory=list)
    readiness: list[Check] = field(default_factory=list)

    @staticmethod
    def problems(checks: Iterable[Check]) -> list[str]:
        out: list[str] = []
        for check in checks:
            try:
                out += check()
            except Exception as exc:  # a probe that breaks is a problem, not a crash
                out.append(f"check failed: {type(exc).__name__}: {exc}")
        return out


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of one component, in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, probes: Probes, port: int,
                 host: str = "0.0.0.0") -> None:
        self.registry = registry
        self.probes = probes
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics and probes on :%d (/metrics, /healthz, /readyz)", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    checks = (server.probes.liveness if path == "/healthz"
                              else server.probes.readiness)
                    problems = Probes.problems(checks)
                    body = "".join(f"{p}\n" for p in problems) or "ok\n"
                    self._send(503 if problems else 200, body.encode(), "text/plain")
                else:
                    self._send(404, b"not found: /metrics, /healthz or /readyz\n",
                               "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes and scrapes every few seconds are not news

        return Handler


@dataclass
class ComponentMetrics:
    """What one component exports: its collectors and its probes.

    ``serve(port)`` starts the server (``None`` for port 0: metrics off).
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    probes: Probes = field(default_factory=Probes)

    def __post_init__(self) -> None:
        # The process's CPU, memory and open files, as every Prometheus exporter has them.
        ProcessCollector(registry=self.registry)

    def counters(self, collector: SnapshotCollector) -> ComponentMetrics:
        self.registry.register(collector)
        return self

    def liveness(self, check: Check) -> ComponentMetrics:
        self.probes.liveness.append(check)
        return self

    def readiness(self, check: Check) -> ComponentMetrics:
        self.probes.readiness.append(check)
        return self

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsServer | None:
        if not port:
            return None
        return MetricsServer(self.registry, self.probes, port, host).start()


def stalled(what: str, age_s: Callable[[], float], limit_s: float) -> Check:
    """A liveness check: ``what`` has not turned for more than ``limit_s`` seconds."""

    def check() -> list[str]:
        age = age_s()
        return [f"{what} has not run for {age:.0f} s (limit {limit_s:.0f} s)"] \
            if age > limit_s else []

    return check
