"""``armorflow trace``: record what a command does, as a local container, with the eBPF tracer.

The command runs in new mount and pid namespaces (see :mod:`armorflow.agents.localrun`);
its mount namespace is put in the tracer's kernel filter before it execs, so its very
first syscall is captured and nothing outside it is. Events go to a JSON Lines file, or
with ``--bootstrap-servers`` to Kafka through the agent's spooling publisher.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import IO, Annotated, Protocol

import typer

from armorflow.events import Event
from armorflow.signals import on_stop

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def write(self, event: Event) -> None: ...

    def close(self) -> dict[str, object]: ...


class JsonLinesSink:
    """Events as JSON Lines to a file or standard output."""

    def __init__(self, out: Path):
        import orjson

        self._dumps = orjson.dumps
        self._option = orjson.OPT_APPEND_NEWLINE
        self._stream: IO[bytes] = sys.stdout.buffer if str(out) == "-" else out.open("wb")
        self.written = 0

    def write(self, event: Event) -> None:
        self._stream.write(self._dumps(event, option=self._option))
        self.written += 1

    def close(self) -> dict[str, object]:
        self._stream.flush()
        if self._stream is not sys.stdout.buffer:
            self._stream.close()
        return {"written": self.written}


class KafkaSink:
    """Events to Kafka, keyed by profile, through the agent's spooling publisher."""

    def __init__(self, bootstrap_servers: str, options: list[str] | None, spool_dir: Path):
        from armorflow.agents.publish import Publisher
        from armorflow.config import KafkaSettings

        self._publisher = Publisher(KafkaSettings.from_env(bootstrap_servers, options), spool_dir)
        self.written = 0

    def write(self, event: Event) -> None:
        self._publisher.publish(event)
        self._publisher.poll(0)
        self.written += 1

    def close(self) -> dict[str, object]:
        delivered = self._publisher.flush()
        stats = self._publisher.stats()
        self._publisher.close()
        return {"published": self.written, "all_delivered": delivered, **stats}


def trace_command(
    command: Annotated[list[str], typer.Argument(help="The command to run and trace.")],
    profile: Annotated[str, typer.Option(help="Profile the events belong to.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="JSON Lines output ('-': standard output).")] = Path("-"),
    bootstrap_servers: Annotated[str | None, typer.Option(
        "--bootstrap-servers", "-b",
        help="Publish to Kafka instead of writing --out.")] = None,
    kafka_option: Annotated[list[str] | None, typer.Option(
        "--kafka-option", "-X", help="librdkafka option key=value (TLS, SASL...).")] = None,
    spool_dir: Annotated[Path | None, typer.Option(
        help="Spool for events the broker has not taken (default: the state dir).")] = None,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace to record.")] = "local",
    pod: Annotated[str | None, typer.Option(help="Pod name (default: the profile).")] = None,
    container: Annotated[str, typer.Option(help="Container name.")] = "main",
    container_id: Annotated[str | None, typer.Option(
        help="Container id (default: local-<mount namespace inode>).")] = None,
    node: Annotated[str | None, typer.Option(help="Node name (default: host name).")] = None,
) -> None:
    """Run COMMAND as a local container and record its behaviour as schema events."""
    from armorflow.agents.bpf import Attribution, LoadError, Tracer
    from armorflow.agents.localrun import LocalContainer, LocalRunError

    if not command:
        raise typer.BadParameter("give the command after --", param_hint="COMMAND")
    node_name = node or socket.gethostname()
    # Namespaces first (cheap, nothing traced yet), then the slow BPF compile; the command
    # waits before exec until its namespace is in the filter.
    try:
        box = LocalContainer(list(command)).spawn()
    except (LocalRunError, OSError) as exc:
        typer.echo(f"cannot start {command[0]}: {exc}", err=True)
        raise typer.Exit(126) from exc
    sink: EventSink
    try:
        tracer = Tracer(node=node_name).start()
    except LoadError as exc:
        box.kill()
        typer.echo(f"cannot load the tracer: {exc}", err=True)
        raise typer.Exit(2) from exc
    if bootstrap_servers:
        from armorflow.config import state_dir

        sink = KafkaSink(bootstrap_servers, kafka_option,
                         spool_dir or state_dir() / f"trace-spool-{profile}")
    else:
        sink = JsonLinesSink(out)
    attribution = Attribution(
        profile=profile, namespace=namespace, pod=pod or profile, container=container,
        container_id=container_id or f"local-{box.mntns}", node=node_name,
    )
    tracer.add_target(attribution, mntns=box.mntns, pid=box.pid)

    def _forward(signum: int) -> None:
        # Ctrl-C / SIGTERM go to the traced command; we stop when it ends.
        with contextlib.suppress(ProcessLookupError):
            os.kill(box.pid, signum)

    box.release()
    try:
        with on_stop(_forward):
            for event in tracer.iter_events(lambda: box.poll() is not None):
                sink.write(event)
    finally:
        tracer.stop()
        summary = sink.close()
    stats = tracer.stats()
    exit_code = box.poll()
    report = {"exit_code": exit_code, **summary, "tracer": stats.as_dict()}
    typer.echo(json.dumps(report), err=True)
    if stats.drops:
        typer.echo(f"warning: {stats.drops} event record(s) were dropped (ring buffer full)",
                   err=True)
    raise typer.Exit(exit_code if exit_code is not None else 1)


def register_trace(app: typer.Typer) -> None:
    app.command(
        "trace",
        context_settings={"allow_interspersed_args": False},
    )(trace_command)
