"""`migrate-safe operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass

import kopf
from prometheus_client import REGISTRY, start_http_server

import migrate_safe.k8s.handlers  # noqa: F401  (registers the handlers)
from migrate_safe.k8s.metrics import METRICS

# How long a replica's peering record counts as alive after its last keep-alive (kopf refreshes
# it 5-10 s before that): the longest a standby waits before it takes over from a killed one.
PEER_LIFETIME_SECONDS = 20
# kopf pauses every operator that sees a live peer of the same priority, so replicas of one
# Deployment (one --priority) would all stand by. Each replica's kopf priority is --priority
# scaled by this, plus a tie-breaker that favours the replica started first: a replacement pod
# never preempts the active one.
PRIORITY_SCALE = 10**12


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
        # Every watch event of every Job and pod of ours would log its handlers' "succeeded":
        # keep kopf's per-object lines for problems.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if options.fleets:
        # Registers the DatabaseMigrationSet handlers, and with them the watch on Secrets.
        importlib.import_module("migrate_safe.k8s.fleet_handlers")
    if options.metrics_port:
        REGISTRY.register(METRICS)
        start_http_server(options.metrics_port)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    settings = kopf.OperatorSettings()
    settings.peering.lifetime = PEER_LIFETIME_SECONDS
    kopf.run(
        settings=settings,
        standalone=options.standalone or None,
        priority=replica_priority(options.priority, time.time()),
        peering_name=options.peering,
        liveness_endpoint=liveness,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
    )
    return 0


def replica_priority(priority: int, started: float) -> int:
    """kopf's priority for this replica: --priority first, then the earlier start (in
    milliseconds, which repeat only every 31 years) wins."""
    started_ms = int(started * 1000) % PRIORITY_SCALE
    return priority * PRIORITY_SCALE + (PRIORITY_SCALE - 1 - started_ms)
