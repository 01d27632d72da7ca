"""One place for the settings every component shares: where Kafka is, how to reach it.

``--bootstrap-servers`` / ``ARMORFLOW_BOOTSTRAP_SERVERS`` names the brokers (default: the
embedded broker's address). Security and tuning options pass through unchanged, in
librdkafka's spelling (``security.protocol=SASL_SSL``), from ``ARMORFLOW_KAFKA_OPTIONS``
(``key=value`` pairs separated by ``;``) or ``--kafka-option key=value``; they are
translated for aiokafka where Faust needs them.
"""

from __future__ import annotations

import os
import ssl
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

    def faust_credentials(self) -> Any | None:
        """The TLS/SASL options as Faust ``broker_credentials`` (None: plaintext).

        Faust hands only ``broker_credentials`` to its Kafka clients: aiokafka keyword
        arguments given to ``faust.App`` are ignored, so a worker would have connected
        to a secured Kafka without them. Raises ValueError for what Faust cannot speak.
        """
        import faust

        opts = self.options
        protocol = opts.get("security.protocol", "PLAINTEXT").upper()
        if protocol == "PLAINTEXT":
            return None
        if protocol not in ("SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ValueError(f"security.protocol {protocol!r} is not one of PLAINTEXT, SSL, "
                             "SASL_PLAINTEXT, SASL_SSL")
        context = self.ssl_context() if protocol in ("SSL", "SASL_SSL") else None
        if protocol == "SSL":
            return faust.SSLCredentials(context)
        mechanism = (opts.get("sasl.mechanism") or opts.get("sasl.mechanisms") or "PLAIN").upper()
        if mechanism == "GSSAPI":
            return faust.GSSAPICredentials(
                kerberos_service_name=opts.get("sasl.kerberos.service.name", "kafka"),
                ssl_context=context)
        if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(f"sasl.mechanism {mechanism!r} is not one of PLAIN, "
                             "SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI")
        return faust.SASLCredentials(username=opts.get("sasl.username"),
                                     password=opts.get("sasl.password"),
                                     ssl_context=context, mechanism=mechanism)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context from librdkafka's ``ssl.*`` options."""
        opts = self.options
        context = ssl.create_default_context(cafile=opts.get("ssl.ca.location"))
        cert = opts.get("ssl.certificate.location")
        if cert:
            context.load_cert_chain(cert, keyfile=opts.get("ssl.key.location"),
                                    password=opts.get("ssl.key.password"))
        if opts.get("enable.ssl.certificate.verification", "true").lower() == "false":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def state_dir() -> Path:
    """Where armorflow keeps local state (spools, broker data, checkpoints)."""
    base = os.environ.get(ENV_STATE_DIR)
    path = Path(base) if base else Path.home() / ".local" / "state" / "armorflow"
    path.mkdir(parents=True, exist_ok=True)
    return path
