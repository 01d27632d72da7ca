"""TLS and SASL reach every client: librdkafka options for agents and tools, Faust's own
``broker_credentials`` for the pipeline worker (Faust ignores aiokafka keyword arguments,
so a worker would otherwise connect to a secured Kafka without them)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from armorflow.config import KafkaSettings
from armorflow.kafka import producer_config
from armorflow.pipeline.worker import PipelineConfig, PipelineWorker


def _worker(options: dict[str, str]) -> PipelineWorker:
    settings = KafkaSettings("kafka-1:9093", options)
    return PipelineWorker(PipelineConfig(settings=settings, app_id="creds", render=False,
                                         classify=False))


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real self-signed CA certificate (openssl), as a cluster's CA bundle would be."""
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=armorflow-test-ca", "-keyout", str(d / "ca.key"),
                    "-out", str(d / "ca.pem")], check=True, capture_output=True)
    return d / "ca.pem"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_reaches_the_faust_clients(ca_file: Path, mechanism: str) -> None:
    options = {"security.protocol": "SASL_SSL", "sasl.mechanism": mechanism,
               "sasl.username": "armorflow", "sasl.password": "s3cret",
               "ssl.ca.location": str(ca_file)}
    worker = _worker(options)
    creds = worker.app.conf.broker_credentials
    assert isinstance(creds, SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)  # what Faust gives aiokafka
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("armorflow", "s3cret")
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] == ((("commonName", "armorflow-test-ca"),),)
               for c in context.get_ca_certs())
    # and the same options, unchanged, for librdkafka
    conf = producer_config(KafkaSettings("kafka-1:9093", options))
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.username"] == "armorflow"


def test_tls_only_and_plaintext() -> None:
    tls = _worker({"security.protocol": "SSL"}).app.conf.broker_credentials
    assert isinstance(tls, SSLCredentials)
    assert credentials_to_aiokafka_auth(tls)["security_protocol"] == "SSL"
    assert _worker({}).app.conf.broker_credentials is None
    sasl = _worker({"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u",
                    "sasl.password": "p"}).app.conf.broker_credentials
    assert credentials_to_aiokafka_auth(sasl)["security_protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize("options", [{"security.protocol": "KERBEROS"},
                                     {"security.protocol": "SASL_SSL", "sasl.mechanism": "MD5"}])
def test_unsupported_security_settings_are_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        _worker(options)
