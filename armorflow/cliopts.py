"""Command-line options shared by every verb that talks to Kafka."""

from __future__ import annotations

from typing import Annotated

import typer

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers", "-b", envvar="ARMORFLOW_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers (default: the embedded broker's address).",
    ),
]
KafkaOpt = Annotated[
    list[str] | None,
    typer.Option("--kafka-option", "-X", help="librdkafka option key=value (TLS, SASL...)."),
]
