"""``armorflow operator``: run the policy operator against a cluster and a Kafka."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt
from armorflow.signals import stop_requested

log = logging.getLogger(__name__)


def _serve_health(port: int, healthy: Any) -> ThreadingHTTPServer:
    """``GET /healthz``: 200 while every operator thread runs (the liveness probe)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = bool(healthy())
            body = b"ok\n" if ok else b"unhealthy\n"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds are not news

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def register(app: typer.Typer) -> None:
    """Add the ``operator`` verb to ``app``."""

    @app.command("operator")
    def operator(
        bootstrap_servers: BootstrapOpt = None,
        kafka_option: KafkaOpt = None,
        kubeconfig: Annotated[
            str | None,
            typer.Option(help="kubeconfig file (default: in-cluster, then $KUBECONFIG)."),
        ] = None,
        context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
        system_namespace: Annotated[
            str,
            typer.Option(envvar="ARMORFLOW_SYSTEM_NAMESPACE",
                         help="Namespace of cluster policies' profiles (vArmor's: varmor)."),
        ] = "varmor",
        resync_seconds: Annotated[
            float, typer.Option(help="Re-list every policy this often.")
        ] = 60.0,
        health_port: Annotated[
            int, typer.Option(help="Port of the /healthz endpoint (0: none).")
        ] = 0,
        match_label: Annotated[
            str,
            typer.Option(help="Label key=value a workload opts in with (vArmor's "
                              "--webhookMatchLabel); empty: every workload may be a target."),
        ] = "sandbox.varmor.org/enable=true",
    ) -> None:
        """Watch VarmorPolicy/VarmorClusterPolicy objects and drive their modeling."""
        from armorflow.config import KafkaSettings

        from .kube import Kube, make_api_client
        from .service import OperatorService
        from .workloads import parse_match_label

        try:
            opt_in = parse_match_label(match_label)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--match-label") from None

        settings = KafkaSettings.from_env(bootstrap_servers, kafka_option)
        kube = Kube(make_api_client(kubeconfig, context))
        service = OperatorService(
            kube, settings, system_namespace=system_namespace, resync_s=resync_seconds,
            match_label=opt_in,
        )
        server = _serve_health(health_port, service.healthy) if health_port else None
        service.start()
        log.info("operator running: kafka %s, system namespace %s",
                 settings.bootstrap_servers, system_namespace)
        try:
            with stop_requested() as stopping:
                while not stopping.wait(1.0):
                    if not service.healthy():
                        log.error("an operator thread died; exiting so the pod restarts")
                        raise typer.Exit(1)
        finally:
            service.stop()
            if server is not None:
                server.shutdown()
            log.info("operator stopped: %s", service.counters)
