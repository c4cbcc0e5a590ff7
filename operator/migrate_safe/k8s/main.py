"""`migrate-safe operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import kopf
from prometheus_client import REGISTRY, start_http_server

import migrate_safe.k8s.handlers  # noqa: F401  (registers the handlers)
from migrate_safe.k8s.metrics import METRICS


@dataclass(frozen=True)
class OperatorOptions:
    """`migrate-safe operator`: what the kopf process serves and where it listens."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 9090  # 0: no /metrics
    liveness_port: int = 8080  # 0: no /healthz
    standalone: bool = False
    peering: str | None = None
    priority: int = 0
    fleets: bool = True  # DatabaseMigrationSets (watches labelled database Secrets)
    verbose: bool = False


def run(options: OperatorOptions) -> int:
    kopf.configure(verbose=options.verbose)
    if not options.verbose:
        # Every timer tick would log "succeeded": keep kopf's per-object lines for problems.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if options.fleets:
        # Registers the DatabaseMigrationSet handlers, and with them the watch on Secrets.
        importlib.import_module("migrate_safe.k8s.fleet_handlers")
    if options.metrics_port:
        REGISTRY.register(METRICS)
        start_http_server(options.metrics_port)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    kopf.run(
        standalone=options.standalone or None,
        priority=options.priority,
        peering_name=options.peering,
        liveness_endpoint=liveness,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
    )
    return 0
