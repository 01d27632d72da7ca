"""``armorflow <verb>``: the one command line of every component.

Each component registers its own verbs (``register(app)``) so that this module stays a
table of contents.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated

import typer

from armorflow import __version__
from armorflow.cliopts import BootstrapOpt, KafkaOpt, kafka_settings
from armorflow.config import KafkaSettings
from armorflow.signals import stop_requested

app = typer.Typer(
    name="armorflow",
    help="Learn how workloads behave; emit deny-by-default AppArmor and Seccomp profiles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that add verbs to the CLI, in the order of the data flow.
COMPONENTS = (
    "armorflow.agents.cli",
    "armorflow.pipeline.cli",
    "armorflow.pipeline.classifier.cli",
    "armorflow.operator.cli",
    "armorflow.users",
    "armorflow.demo",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"armorflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at debug level.")] = False,
    _version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print armorflow's version and exit.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def version() -> None:
    """Print armorflow's version."""
    typer.echo(__version__)


@app.command()
def broker(
    impl: Annotated[str, typer.Option(help="Broker implementation: noida or tansu.")] = "noida",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9092,
    host: Annotated[
        str, typer.Option(help="Address to listen on and advertise (e.g. a pod IP).")
    ] = "127.0.0.1",
    data_dir: Annotated[
        str | None, typer.Option(help="Data directory (default: the state dir).")
    ] = None,
    partitions: Annotated[int, typer.Option(help="Partitions per profile-keyed topic.")] = 4,
) -> None:
    """Start an embedded Kafka-protocol broker (loopback by default), create the topics,
    wait for Ctrl-C."""
    from pathlib import Path

    from armorflow.broker import IMPLS, BrokerImpl, EmbeddedBroker
    from armorflow.config import state_dir

    if impl not in IMPLS:
        raise typer.BadParameter(f"choose one of {', '.join(IMPLS)}", param_hint="--impl")
    directory = Path(data_dir) if data_dir else state_dir() / f"broker-{impl}"
    chosen: BrokerImpl = "tansu" if impl == "tansu" else "noida"
    emb = EmbeddedBroker(
        impl=chosen, port=port, data_dir=directory, partitions=partitions, host=host
    )
    emb.start()
    typer.echo(f"bootstrap servers: {emb.bootstrap_servers}")
    typer.echo(f"export ARMORFLOW_BOOTSTRAP_SERVERS={emb.bootstrap_servers}")
    if chosen == "noida":  # it answers empty fetches at once: see docs/brokers.md
        typer.echo("export ARMORFLOW_FETCH_PACING=1")
    sys.stdout.flush()
    try:
        with stop_requested() as stopping:
            while not stopping.wait(0.2):
                if emb.process is None or emb.process.poll() is not None:
                    typer.echo("broker exited unexpectedly", err=True)
                    raise typer.Exit(1)
    finally:
        emb.stop()
        typer.echo("broker stopped")


@app.command()
def topics(
    bootstrap_servers: BootstrapOpt = None,
    kafka_option: KafkaOpt = None,
    create: Annotated[bool, typer.Option(help="Create missing topics.")] = False,
    check: Annotated[bool, typer.Option(
        help="Exit 1 unless every topic exists with its partition count.")] = False,
    wait: Annotated[float | None, typer.Option(
        metavar="SECONDS", min=0.0,
        help="Like --check, but ask again until the topics exist or SECONDS passed (0: "
             "forever): the chart's init containers wait for the topics Job with it.")] = None,
) -> None:
    """List armorflow's topic layout; with --create, create missing topics on the broker;
    with --check or --wait, say whether they all exist."""
    from armorflow.broker import create_topics
    from armorflow.topics import topic_specs

    for spec in topic_specs():
        flag = " compacted" if spec.compacted else ""
        typer.echo(f"{spec.name}\t{spec.partitions}{flag}\t{spec.purpose}")
    if create:
        settings = kafka_settings(bootstrap_servers, kafka_option)
        made = create_topics(settings)
        typer.echo(f"created {len(made)} topic(s) on {settings.bootstrap_servers}")
    if check or wait is not None:
        # Waiting starts before Kafka answers (a broker pod still starting): no probe.
        settings = kafka_settings(bootstrap_servers, kafka_option, probe_first=wait is None)
        _await_topics(settings, wait)


def _await_topics(settings: KafkaSettings, wait_s: float | None) -> None:
    """Return once every topic exists with its partitions; exit 1 with what is missing when
    ``wait_s`` is None (one look) or has passed (0: wait forever)."""
    import time

    deadline = None if not wait_s else time.monotonic() + wait_s
    said = ""
    while True:
        left = 10.0 if deadline is None else max(1.0, deadline - time.monotonic())
        problems = _topic_problems(settings, timeout_s=min(10.0, left))
        if not problems:
            typer.echo(f"all topics ready on {settings.bootstrap_servers}")
            return
        news = "; ".join(problems)
        if news != said:  # one line per change, not one per attempt
            typer.echo(f"waiting for topics on {settings.bootstrap_servers}: {news}", err=True)
            said = news
        if wait_s is None or (deadline is not None and time.monotonic() >= deadline):
            typer.echo(f"topics not ready: {news}", err=True)
            raise typer.Exit(1)
        time.sleep(2.0)


def _topic_problems(settings: KafkaSettings, timeout_s: float) -> list[str]:
    """Topics missing or with fewer partitions than armorflow's layout; or why Kafka
    could not be asked."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from armorflow.topics import topic_specs

    # librdkafka's own connection errors would repeat what the problem line says.
    admin = AdminClient(settings.librdkafka(log_level=0))
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        return [f"Kafka unreachable ({exc.args[0].str() if exc.args else exc})"]
    problems = []
    for spec in topic_specs():
        have = existing.get(spec.name)
        if have is None or have.error is not None:
            problems.append(f"{spec.name} missing")
        elif len(have.partitions) < spec.partitions:
            problems.append(f"{spec.name} has {len(have.partitions)} partition(s), needs "
                            f"{spec.partitions}")
    return problems


def _register_components() -> None:
    for name in COMPONENTS:
        module = importlib.import_module(name)
        module.register(app)


_register_components()


def _add_examples(typer_app: typer.Typer, prefix: str = "") -> None:
    """Attach armorflow.examples' block to every verb's --help (sub-apps included)."""
    from armorflow.examples import epilog

    for command in typer_app.registered_commands:
        verb = command.name or (command.callback.__name__ if command.callback else "")
        command.epilog = command.epilog or epilog(f"{prefix}{verb.replace('_', '-')}")
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        # The name may be the add_typer() argument or the sub-app's own.
        group_name = group.name if isinstance(group.name, str) else sub.info.name
        if isinstance(group_name, str):
            if not isinstance(sub.info.epilog, str):
                sub.info.epilog = epilog(f"{prefix}{group_name}")
            _add_examples(sub, f"{prefix}{group_name} ")


_add_examples(app)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
