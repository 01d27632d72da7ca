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
from armorflow.cliopts import BootstrapOpt, KafkaOpt
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


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at debug level.")] = False,
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
) -> None:
    """List armorflow's topic layout; with --create, create missing topics on the broker."""
    from armorflow.broker import create_topics
    from armorflow.config import KafkaSettings
    from armorflow.topics import topic_specs

    for spec in topic_specs():
        flag = " compacted" if spec.compacted else ""
        typer.echo(f"{spec.name}\t{spec.partitions}{flag}\t{spec.purpose}")
    if create:
        settings = KafkaSettings.from_env(bootstrap_servers, kafka_option)
        made = create_topics(settings)
        typer.echo(f"created {len(made)} topic(s) on {settings.bootstrap_servers}")


def _register_components() -> None:
    for name in COMPONENTS:
        module = importlib.import_module(name)
        module.register(app)


_register_components()


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
