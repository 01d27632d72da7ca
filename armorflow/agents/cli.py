"""Command-line verbs of the agents: ``agent``, ``audit`` (and the tracer's ``trace``).

Each feature registers itself with one call in :func:`register`, so that each engineer
adds one line here.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from armorflow.signals import on_stop, stop_requested

if TYPE_CHECKING:
    from armorflow.agents.audit.source import AuditSource

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add this component's verbs to ``app``."""
    register_agent(app)
    register_audit(app)
    register_trace(app)
    register_enforce(app)


# --- armorflow trace (armorflow/agents/trace_cmd.py) ---------------------------------------


def register_trace(app: typer.Typer) -> None:
    from armorflow.agents.trace_cmd import register_trace as register

    register(app)


# --- armorflow enforce (armorflow/agents/enforce.py) ----------------------------------------


def register_enforce(app: typer.Typer) -> None:
    from armorflow.agents.enforce import register as register

    register(app)


# --- armorflow agent ------------------------------------------------------------------------


def register_agent(app: typer.Typer) -> None:
    app.command("agent")(agent_command)


def agent_command(
    bootstrap_servers: Annotated[str | None, typer.Option(
        "--bootstrap-servers", "-b", envvar="ARMORFLOW_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers.")] = None,
    kafka_option: Annotated[list[str] | None, typer.Option(
        "--kafka-option", "-X", help="librdkafka option key=value (TLS, SASL...).")] = None,
    node: Annotated[str | None, typer.Option(
        envvar="NODE_NAME", help="This node's name (default: the host name).")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Spool and checkpoints (default: $ARMORFLOW_STATE_DIR/agent).")] = None,
    audit_log_paths: Annotated[str, typer.Option(
        "--audit-log-paths",
        help="Audit logs to try in order, |-separated; none existing: kernel netlink.")]
        = "/var/log/audit/audit.log|/var/log/kern.log",
    audit: Annotated[bool, typer.Option(help="Read AppArmor/Seccomp audit records.")] = True,
    include_denied: Annotated[bool, typer.Option(
        help="Also model DENIED/enforcement records (normally violation evidence only).")]
        = False,
    audit_from_start: Annotated[bool, typer.Option(
        help="Without a checkpoint, read the existing log from its start (default: its end).")]
        = False,
    local_profile: Annotated[str | None, typer.Option(
        help="Off-cluster: attribute every observation to this profile.")] = None,
    targets_file: Annotated[Path | None, typer.Option(
        help="A JSON list of targets (armorflow.targets values) to start with.")] = None,
    targets_topic: Annotated[bool, typer.Option(
        help="Follow the operator's armorflow.targets topic.")] = True,
    kube: Annotated[bool, typer.Option(
        help="Resolve containers to pods through the Kubernetes API.")] = False,
    kubeconfig: Annotated[Path | None, typer.Option(
        help="Kubeconfig for --kube and --seccomp-root (default: in-cluster, then "
             "~/.kube/config).")] = None,
    seccomp_root: Annotated[Path | None, typer.Option(
        help="Keep the Seccomp profile of every Completed ArmorProfileModel in "
             "ROOT/armorflow/ for pods that ask for it as Localhost (the kubelet's "
             "seccomp directory, e.g. /var/lib/kubelet/seccomp).")] = None,
    seccomp_sync_seconds: Annotated[float, typer.Option(
        min=1.0, help="How often --seccomp-root lists the models.")] = 10.0,
    cri_endpoint: Annotated[str | None, typer.Option(
        envvar="ARMORFLOW_CRI_ENDPOINT",
        help="Resolve containers through the runtime's CRI socket first "
             "(e.g. unix:///run/containerd/containerd.sock).")] = None,
    tracer: Annotated[bool, typer.Option(
        help="Attach the eBPF tracer to the targeted containers (root, BTF).")] = False,
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds (default: run until SIGTERM/Ctrl-C).")] = None,
    metrics_port: Annotated[int, typer.Option(
        min=0, help="Port of /metrics, /healthz and /readyz (0: none).")] = 0,
) -> None:
    """Run the node agent: audit (and tracer) sources -> attribution -> Kafka."""
    from armorflow.agents.agent import AgentOptions, agent_metrics, build_agent
    from armorflow.config import KafkaSettings
    from armorflow.config import state_dir as default_state_dir

    opts = AgentOptions(
        settings=KafkaSettings.from_env(bootstrap_servers, kafka_option),
        state_dir=state_dir or default_state_dir() / "agent",
        node=node or socket.gethostname(),
        audit=audit, audit_log_paths=audit_log_paths, include_denied=include_denied,
        audit_from_start=audit_from_start, local_profile=local_profile,
        targets_file=targets_file, follow_targets_topic=targets_topic, kube=kube,
        kubeconfig=kubeconfig, cri_endpoint=cri_endpoint, tracer=tracer,
    )
    agent = build_agent(opts)
    installer = None
    if seccomp_root is not None:
        from armorflow.agents.agent import kube_api_client
        from armorflow.agents.installer import SeccompInstaller, kube_model_lister

        installer = SeccompInstaller(kube_model_lister(kube_api_client(kubeconfig)),
                                     seccomp_root, seccomp_sync_seconds).start()

    typer.echo(f"agent on {opts.node} publishing to {opts.settings.bootstrap_servers}", err=True)
    server = agent_metrics(agent).serve(metrics_port)
    try:
        with on_stop(lambda _signum: agent.stop()):
            agent.run(duration)
    finally:
        if installer is not None:
            installer.stop()
        agent.close()
        if server is not None:
            server.stop()
    stats = agent.stats()
    if installer is not None:
        stats["seccomp_installer"] = installer.stats()
    typer.echo(json.dumps(stats), err=True)


# --- armorflow audit ------------------------------------------------------------------------


def register_audit(app: typer.Typer) -> None:
    app.command("audit")(audit_command)


def audit_command(
    source: Annotated[Path | None, typer.Option(
        "--from", help="Audit log to parse (auditd, kern.log, dmesg or netlink lines).")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep following (the --from file, else --audit-log-paths/netlink).")]
        = False,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="JSON Lines output ('-': standard output).")] = Path("-"),
    profile: Annotated[str | None, typer.Option(
        help="Profile for records without an AppArmor profile (most SECCOMP records).")] = None,
    include_denied: Annotated[bool, typer.Option(
        help="Also emit DENIED/enforcement records.")] = False,
    node: Annotated[str, typer.Option(help="Node name written into events.")] = "",
    audit_log_paths: Annotated[str, typer.Option(
        "--audit-log-paths", help="With --follow and no --from: logs to try, |-separated.")]
        = "/var/log/audit/audit.log|/var/log/kern.log",
) -> None:
    """Parse an audit log into schema events (JSON Lines), once or following it."""
    import orjson

    from armorflow.agents.audit.source import AuditSource
    from armorflow.events import EventError

    if source is None and not follow:
        raise typer.BadParameter("give --from FILE, --follow, or both")
    if source is not None and not source.is_file():
        raise typer.BadParameter(f"{source} is not a file", param_hint="--from")
    paths = [source] if source is not None else audit_log_paths
    reader = AuditSource(paths, include_denied=include_denied, from_start=source is not None,
                         netlink_fallback=source is None)
    sink: IO[bytes] = sys.stdout.buffer if str(out) == "-" else out.open("wb")
    written = unattributed = invalid = 0
    with stop_requested() as stopping:
        try:
            while not stopping.is_set():
                batch = reader.poll(timeout_s=0.2 if follow else 0.0)
                for obs in batch:
                    name = obs.label or profile
                    if not name:
                        unattributed += 1
                        continue
                    try:
                        event = obs.to_event(name, node=node)
                    except EventError as exc:
                        invalid += 1
                        log.warning("%s: %s", obs.audit_id, exc)
                        continue
                    sink.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
                    written += 1
                if follow:
                    sink.flush()
                elif not batch and _at_end(reader):
                    break
                if not batch and follow:
                    time.sleep(0.05)
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
            else:
                sink.flush()
            reader.close()
    stats = reader.stats()
    stats.update(written=written, unattributed=unattributed, invalid=invalid)
    stats.pop("malformed_samples", None)
    typer.echo(json.dumps(stats), err=True)


def _at_end(reader: AuditSource) -> bool:
    """A one-shot parse is done when the file has nothing more to read."""
    return reader.follower is None or reader.follower.at_eof
