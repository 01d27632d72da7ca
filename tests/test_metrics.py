"""Prometheus metrics and probes (armorflow/metrics.py) of the real components.

Each component runs as the real ``armorflow`` process, gets real input (a null-value
message on an event topic, a control message, audit log lines, a policy created in the
Kubernetes API emulator) and is scraped over HTTP: its counters move by exactly what the
input should cause, ``/healthz`` and ``/readyz`` answer, any other path is 404.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from armorflow.broker import EmbeddedBroker, free_port
from armorflow.cli import app
from armorflow.counters import CounterSet
from armorflow.metrics import ComponentMetrics, SnapshotCollector, one
from armorflow.pipeline.ingest import IngestStats
from armorflow.signals import stop_process_group
from armorflow.topics import CONTROL_TOPIC, event_topic
from support.kube import KubeEmulator, kube_emulator
from support.pipeline import WorkerProcess, control, unique
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "helm" / "armorflow" / "crds"
ARMORFLOW = [sys.executable, "-m", "armorflow.cli"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- HTTP helpers -------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path; (0, "", why) when
    nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, "", str(exc)


def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client's own parser."""
    status, content_type, body = get(port, "/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def reaches(port: int, name: str, expected: float, **labels: str) -> bool:
    return value(scrape(port), name, **labels) == expected


def probes_answer(port: int) -> None:
    """/healthz and /readyz say ok; anything else is 404 (not a second /healthz)."""
    for path in ("/healthz", "/readyz"):
        status, _, body = get(port, path)
        assert (status, body) == (200, "ok\n"), path
    for path in ("/", "/health", "/metricsx", "/healthz/more"):
        status, _, _ = get(port, path)
        assert status == 404, path


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc)
        print(log.read_text(errors="replace")[-4000:])  # shown when the test failed


# --- the exporter on its own ------------------------------------------------------------------


def test_counter_sets_export_as_they_are_and_probes_report_problems() -> None:
    """A CounterSet's int fields are counters, its Counter field one labelled counter,
    read at scrape time; a failing probe answers 503 with its reason."""
    stats = IngestStats()
    problems: list[str] = []
    metrics = (ComponentMetrics()
               .counters(SnapshotCollector("armorflow_test", one(stats.as_dict)))
               .counters(SnapshotCollector("armorflow_test", one(lambda: {"open": 2}),
                                           gauges=frozenset({"open"})))
               .liveness(lambda: list(problems)))
    server = metrics.serve(free_port(), host="127.0.0.1")
    assert server is not None
    try:
        before = scrape(server.port)
        assert value(before, "armorflow_test_messages_total") == 0
        assert value(before, "armorflow_test_skipped_total", reason="null_value") is None
        stats.messages += 3
        stats.skipped_by["null_value"] += 2
        after = scrape(server.port)
        assert value(after, "armorflow_test_messages_total") == 3
        assert value(after, "armorflow_test_skipped_total", reason="null_value") == 2
        assert value(after, "armorflow_test_open") == 2
        assert value(after, "process_cpu_seconds_total") is not None
        probes_answer(server.port)
        problems.append("the loop is stuck")
        assert get(server.port, "/healthz")[::2] == (503, "the loop is stuck\n")
        assert get(server.port, "/readyz")[0] == 200  # no readiness check was given
    finally:
        server.stop()
    assert ComponentMetrics().serve(0) is None  # port 0: metrics off


def test_every_counter_set_of_the_components_exports() -> None:
    """Every CounterSet dataclass in the package yields only valid samples (the parser
    refuses a malformed exposition), whatever its field types."""
    from armorflow.agents.agent import AgentCounters
    from armorflow.agents.audit.parser import ParseStats
    from armorflow.operator.service import OperatorCounters

    sets: list[CounterSet] = [IngestStats(), AgentCounters(), ParseStats(), OperatorCounters()]
    for counters in sets:
        metrics = ComponentMetrics().counters(
            SnapshotCollector("armorflow_x", one(counters.as_dict)))
        server = metrics.serve(free_port(), host="127.0.0.1")
        assert server is not None
        try:
            samples = scrape(server.port)
        finally:
            server.stop()
        ints = [k for k, v in counters.as_dict().items() if type(v) is int]
        for name in ints:
            assert value(samples, f"armorflow_x_{name}_total") == 0, (type(counters), name)


# --- the pipeline worker -----------------------------------------------------------------------


@pytest.mark.broker
@pytest.mark.slow
def test_pipeline_worker_counts_what_it_skips(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A null value on an event topic moves armorflow_pipeline_skipped_total{reason=
    "null_value"} by one; a start control opens one window."""
    monkeypatch.setenv("ARMORFLOW_FETCH_PACING", "1")  # the embedded broker
    port = free_port()
    profile = unique("metrics")
    worker = WorkerProcess(broker, unique("metrics-app"), tmp_path,
                           extra=["--metrics-port", str(port)]).start()
    try:
        assert worker.proc is not None
        wait_for("the worker's /readyz", lambda: get(port, "/readyz")[0] == 200,
                 timeout_s=90, interval_s=0.5, proc=worker.proc)
        before = scrape(port)
        assert value(before, "armorflow_pipeline_skipped_total", reason="null_value") is None
        assert value(before, "armorflow_pipeline_windows_open") == 0

        producer = Producer(broker.settings().librdkafka())
        producer.produce(event_topic("file"), key=profile.encode(), value=None)
        assert producer.flush(10) == 0
        wait_for("the null value counted", lambda: reaches(
            port, "armorflow_pipeline_skipped_total", 1, reason="null_value"),
            timeout_s=30, interval_s=0.3, proc=worker.proc)

        control(broker, "start", profile, duration_s=3600, namespace="varmor")
        wait_for("the window open", lambda: reaches(port, "armorflow_pipeline_windows_open", 1),
                 timeout_s=30, interval_s=0.3, proc=worker.proc)
        samples = scrape(port)
        assert value(samples, "armorflow_pipeline_controls_total") == 1
        assert value(samples, "armorflow_pipeline_skipped_total", reason="null_value") == 1
        assert value(samples, "armorflow_pipeline_source_partitions") == \
            len(_source_topics()) * 4
        probes_answer(port)
    finally:
        worker.stop()
    assert CONTROL_TOPIC in _source_topics()


def _source_topics() -> list[str]:
    from armorflow.topics import EVENT_TOPICS

    return [*EVENT_TOPICS, CONTROL_TOPIC]


# --- the agent -------------------------------------------------------------------------------


def seccomp_line(serial: int, syscall: int) -> bytes:
    return (
        f"type=SECCOMP msg=audit(1700000000.{serial:03d}:{serial}): auid=4294967295 uid=0 "
        f'gid=0 ses=4294967295 pid={1000 + serial} comm="w" exe="/usr/bin/w" sig=0 '
        f"arch=c000003e syscall={syscall} compat=0 ip=0x7f0000000000 code=0x7ffc0000\n"
    ).encode()


@pytest.mark.broker
@pytest.mark.slow
def test_agent_counts_the_audit_records_it_publishes(
    noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Three audit records of distinct syscalls and one malformed line: three
    observations published, one malformed line counted, by the agent's own counters."""
    port = free_port()
    audit_log = tmp_path / "audit.log"
    audit_log.write_bytes(b"")
    args = [*ARMORFLOW, "agent", "-b", noida_broker.bootstrap_servers,
            "--state-dir", str(tmp_path / "state"), "--audit-log-paths", str(audit_log),
            "--local-profile", unique("agent-metrics"), "--node", "n-metrics",
            "--metrics-port", str(port)]
    with process(args, tmp_path / "agent.log") as proc:
        wait_for("the agent's /readyz", lambda: get(port, "/readyz")[0] == 200,
                 timeout_s=60, interval_s=0.3, proc=proc)
        before = scrape(port)
        assert value(before, "armorflow_agent_observations_total") == 0
        with audit_log.open("ab") as f:
            for serial, syscall in enumerate((0, 1, 2)):
                f.write(seccomp_line(serial, syscall))
            f.write(b"type=SECCOMP msg=audit(1700000000.000:9): uid=0 pid=oops syscall=0\n")
        wait_for("three observations published", lambda: reaches(
            port, "armorflow_agent_published_total", 3), timeout_s=30, interval_s=0.3,
            proc=proc)
        samples = scrape(port)
        assert value(samples, "armorflow_agent_observations_total") == 3
        assert value(samples, "armorflow_agent_audit_lines_total", source="0") == 4
        assert value(samples, "armorflow_agent_audit_malformed_total", source="0") == 1
        by_kind = {dict(labels)["kind"]: v for (name, labels), v in samples.items()
                   if name == "armorflow_agent_published_by_kind_total"}
        assert sum(by_kind.values()) == 3
        assert value(samples, "armorflow_agent_publisher_spooling") == 0
        assert value(samples, "armorflow_agent_publisher_spool_messages") == 0
        probes_answer(port)


@pytest.mark.slow
def test_agent_that_cannot_reach_kafka_is_alive_but_not_ready(tmp_path: Path) -> None:
    """Following the targets topic on an address where no broker listens: the loop runs
    (/healthz 200) but /readyz says what it waits for."""
    port = free_port()
    audit_log = tmp_path / "audit.log"
    audit_log.write_bytes(b"")
    args = [*ARMORFLOW, "agent", "-b", f"127.0.0.1:{free_port()}",
            "--state-dir", str(tmp_path / "state"), "--audit-log-paths", str(audit_log),
            "--node", "n-away", "--metrics-port", str(port)]
    with process(args, tmp_path / "agent.log") as proc:
        wait_for("the agent's /healthz", lambda: get(port, "/healthz")[0] == 200,
                 timeout_s=60, interval_s=0.3, proc=proc)
        time.sleep(3)  # several attempts at the topic's metadata
        status, _, body = get(port, "/readyz")
        assert status == 503
        assert "armorflow.targets topic is not assigned" in body
        assert get(port, "/healthz")[0] == 200


# --- the operator ------------------------------------------------------------------------------


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KubeEmulator]:
    yield from kube_emulator([CRDS], workdir=tmp_path / "kube")


def cluster_policy(name: str) -> dict[str, object]:
    return {
        "apiVersion": "crd.varmor.org/v1beta1", "kind": "VarmorClusterPolicy",
        "metadata": {"name": name},
        "spec": {"target": {"kind": "Deployment", "selector": {"matchLabels": {"app": name}}},
                 "policy": {"enforcer": "AppArmorSeccomp", "mode": "BehaviorModeling",
                            "modelingOptions": {"duration": 30}}},
    }


@pytest.mark.broker
@pytest.mark.slow
def test_operator_counts_the_controls_it_sends(
    emulator: KubeEmulator, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A policy created in the API: one reconcile at least, one `start` control, one
    status write, seen on /metrics; the probes answer on the same port."""
    from kubernetes import client

    (tmp_path / "kube").mkdir(exist_ok=True)
    assert emulator.kubeconfig_path is not None
    port = free_port()
    args = [*ARMORFLOW, "operator", "--kubeconfig", str(emulator.kubeconfig_path),
            "--resync-seconds", "2", "--system-namespace", "varmor",
            "--metrics-port", str(port)]
    env = {"ARMORFLOW_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    with process(args, tmp_path / "operator.log", env) as proc:
        wait_for("the operator's /readyz", lambda: get(port, "/readyz")[0] == 200,
                 timeout_s=60, interval_s=0.3, proc=proc)
        before = scrape(port)
        assert value(before, "armorflow_operator_control_messages_total", type="start") is None
        assert value(before, "armorflow_operator_synced") == 1
        client.CustomObjectsApi(emulator.api_client()).create_cluster_custom_object(
            "crd.varmor.org", "v1beta1", "varmorclusterpolicies", cluster_policy("metrics"))
        # The control goes first, then the status patch: the patch counted, both are.
        wait_for("the status write counted", lambda: reaches(
            port, "armorflow_operator_status_writes_total", 1), timeout_s=30,
            interval_s=0.3, proc=proc)
        samples = scrape(port)
        assert value(samples, "armorflow_operator_control_messages_total", type="start") == 1
        assert value(samples, "armorflow_operator_controls_total") == 1
        assert value(samples, "armorflow_operator_targets_total") == 1
        assert (value(samples, "armorflow_operator_reconciles_total") or 0) >= 1
        assert value(samples, "armorflow_operator_errors_total") == 0
        probes_answer(port)


def test_operator_health_port_is_the_metrics_port() -> None:
    """The former --health-port still parses, as the metrics port."""
    command = typer.main.get_command(app).commands["operator"]  # type: ignore[attr-defined]
    for flag in ("--health-port", "--metrics-port"):
        with command.make_context("operator", [flag, "8081"]) as ctx:
            assert ctx.params["metrics_port"] == 8081


@pytest.mark.slow
def test_deleted_windows_free_their_state_in_a_running_worker(
    fresh_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """#19: state follows the open windows. 3,000 windows with a model each, then a
    delete for each: the worker holds no window and no model afterwards."""
    from armorflow.control import make_control
    from armorflow.events import make_event
    from armorflow.kafka import EventProducer
    from armorflow.topics import CONTROL_TOPIC


    port = free_port()
    worker = WorkerProcess(fresh_broker, unique("many-app"), tmp_path,
                           extra=["--metrics-port", str(port)]).start()
    try:
        assert worker.proc is not None
        wait_for("the worker's /readyz", lambda: get(port, "/readyz")[0] == 200,
                 timeout_s=90, interval_s=0.5, proc=worker.proc)
        base = unique("many")
        profiles = [f"{base}-{i}" for i in range(3_000)]
        start = time.time_ns()
        producer = EventProducer(fresh_broker.settings())
        for p in profiles:
            producer.produce_raw(CONTROL_TOPIC, p, make_control(
                "start", p, duration_s=3600, start_ts=start).encode())
        producer.publish_many(make_event("syscall", ts=start + 1, profile=p, name="read")
                              for p in profiles)
        producer.flush()
        wait_for("3,000 models", lambda: reaches(
            port, "armorflow_pipeline_models_in_memory", 3_000), timeout_s=120,
            interval_s=1.0, proc=worker.proc)
        for p in profiles:
            producer.produce_raw(CONTROL_TOPIC, p, make_control("delete", p).encode())
        producer.flush()
        wait_for("every window forgotten", lambda: reaches(
            port, "armorflow_pipeline_windows_open", 0) and reaches(
            port, "armorflow_pipeline_models_in_memory", 0), timeout_s=120,
            interval_s=1.0, proc=worker.proc)
    finally:
        worker.stop()
        print(worker.log()[-6000:])  # shown by pytest when the test failed


def test_the_workers_probes_make_no_faust_service(tmp_path: Path) -> None:
    """The probes run in the metrics thread. Faust makes its Recovery service and its
    consumer on first access; made from that thread while the worker started, a second
    Recovery was signalled instead of the one running, and the worker hung at
    "Recovery: Starting..." (seen under load in CI). Asked before the worker runs, the
    probes answer without making either."""
    from armorflow.config import KafkaSettings
    from armorflow.pipeline.worker import (
        PipelineConfig,
        PipelineWorker,
        _worker_gauges,
        _worker_unready,
    )

    worker = PipelineWorker(PipelineConfig(settings=KafkaSettings("127.0.0.1:1"),
                                           app_id="probe-only", data_dir=tmp_path))
    assert _worker_unready(worker) == ["not started: joining the group or recovering the "
                                       "tables"]
    assert _worker_gauges(worker)["source_partitions"] == 0
    assert worker.app.tables._recovery is None  # type: ignore[attr-defined]
    assert worker.app._consumer is None  # type: ignore[attr-defined]
