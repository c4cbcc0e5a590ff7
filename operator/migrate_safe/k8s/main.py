"""`migrate-safe operator`: run the kopf operator with metrics and a liveness endpoint."""

from __future__ import annotations

import argparse
import logging

import kopf
from prometheus_client import REGISTRY, start_http_server

import migrate_safe.k8s.handlers  # noqa: F401  (registers the handlers)
from migrate_safe.k8s.metrics import METRICS


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        # Every timer tick would log "succeeded": keep kopf's per-object lines for problems.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        REGISTRY.register(METRICS)
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        standalone=args.standalone or None,
        priority=args.priority,
        peering_name=args.peering,
        liveness_endpoint=liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
    )
    return 0
