"""One place for the settings every component shares: where Kafka is, how to reach it.

``--bootstrap-servers`` / ``ARMORFLOW_BOOTSTRAP_SERVERS`` names the brokers (default: the
embedded broker's address). Security and tuning options pass through unchanged, in
librdkafka's spelling (``security.protocol=SASL_SSL``), from ``ARMORFLOW_KAFKA_OPTIONS``
(``key=value`` pairs separated by ``;``) or ``--kafka-option key=value``; they are
translated for aiokafka where Faust needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"
ENV_BOOTSTRAP: Final = "ARMORFLOW_BOOTSTRAP_SERVERS"
ENV_OPTIONS: Final = "ARMORFLOW_KAFKA_OPTIONS"
ENV_STATE_DIR: Final = "ARMORFLOW_STATE_DIR"


def parse_options(pairs: list[str] | str | None) -> dict[str, str]:
    """Parse ``key=value`` pairs (a list, or one string separated by ``;``)."""
    if not pairs:
        return {}
    items = pairs.split(";") if isinstance(pairs, str) else pairs
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Kafka option {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, bootstrap_servers: str | None = None, options: list[str] | None = None
    ) -> KafkaSettings:
        merged = parse_options(os.environ.get(ENV_OPTIONS))
        merged.update(parse_options(options))
        return cls(
            bootstrap_servers=bootstrap_servers
            or os.environ.get(ENV_BOOTSTRAP)
            or DEFAULT_BOOTSTRAP,
            options=merged,
        )

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """A confluent-kafka configuration dict."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.options)
        conf.update(extra)
        return conf

    def aiokafka(self) -> dict[str, Any]:
        """The pass-through options in aiokafka/Faust keyword spelling."""
        mapping = {
            "security.protocol": "security_protocol",
            "sasl.mechanism": "sasl_mechanism",
            "sasl.mechanisms": "sasl_mechanism",
            "sasl.username": "sasl_plain_username",
            "sasl.password": "sasl_plain_password",
            "ssl.ca.location": "ssl_cafile",
            "ssl.certificate.location": "ssl_certfile",
            "ssl.key.location": "ssl_keyfile",
        }
        return {mapping[k]: v for k, v in self.options.items() if k in mapping}


def state_dir() -> Path:
    """Where armorflow keeps local state (spools, broker data, checkpoints)."""
    base = os.environ.get(ENV_STATE_DIR)
    path = Path(base) if base else Path.home() / ".local" / "state" / "armorflow"
    path.mkdir(parents=True, exist_ok=True)
    return path
