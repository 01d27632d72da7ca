"""``armorflow operator``: run the policy operator against a cluster and a Kafka."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from armorflow.cliopts import BootstrapOpt, KafkaOpt
from armorflow.signals import stop_requested

log = logging.getLogger(__name__)


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
        metrics_port: Annotated[
            int, typer.Option(
                "--metrics-port", "--health-port", min=0,
                help="Port of /metrics, /healthz and /readyz (0: none); --health-port is "
                     "its former name.")
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
        from .service import OperatorService, operator_metrics
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
        server = operator_metrics(service).serve(metrics_port)
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
                server.stop()
            log.info("operator stopped: %s", service.counters)
