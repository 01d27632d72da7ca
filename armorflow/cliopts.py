"""Command-line options shared by every verb that talks to Kafka."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from armorflow.config import KafkaSettings

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


def kafka_settings(bootstrap_servers: str | None, kafka_option: list[str] | None, *,
                   probe_first: bool = True) -> KafkaSettings:
    """The verb's Kafka settings; with ``probe_first``, one short metadata request, and on
    failure one line naming the address and the setting to change, and exit status
    :data:`~armorflow.kafka.EXIT_KAFKA_UNREACHABLE` (no client log, no traceback)."""
    from armorflow.kafka import EXIT_KAFKA_UNREACHABLE, KafkaUnreachable, probe

    try:
        settings = KafkaSettings.from_env(bootstrap_servers, kafka_option)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--kafka-option") from None
    if probe_first:
        try:
            probe(settings)
        except KafkaUnreachable as exc:
            typer.echo(f"armorflow: {exc}", err=True)
            raise typer.Exit(EXIT_KAFKA_UNREACHABLE) from None
    return settings


def duration_seconds(value: str | float) -> float:
    """One duration syntax for every verb: seconds (``90``, ``1.5``) or a number with a
    unit (``250ms``, ``90s``, ``5m``, ``2h``); finite and not negative."""
    from armorflow.users.timespec import parse_duration

    if isinstance(value, int | float):
        seconds: float | None = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = parse_duration(text)
    if seconds is None:
        raise typer.BadParameter(f"{value!r} is not a duration: use seconds (90) or a "
                                 "number with a unit (250ms, 90s, 5m, 2h)")
    if not math.isfinite(seconds) or seconds < 0:
        raise typer.BadParameter(f"{value!r} is not a finite duration >= 0")
    return seconds


def duration_option(*names: str, help: str, **kwargs: Any) -> Any:
    """A typer option read by :func:`duration_seconds` (``--grace 30s``)."""
    return typer.Option(*names, parser=duration_seconds, metavar="DURATION",
                        help=f"{help} (90, 90s, 5m, 1h).", **kwargs)
