"""kopf pauses every operator that sees a live peer of the same priority: the priority each
replica announces must differ between replicas of one Deployment, keep --priority's order, and
prefer the replica started first."""

from __future__ import annotations

from migrate_safe.k8s.main import replica_priority

STARTED = 1_795_000_000.0  # a start time in 2026, in seconds


def test_replicas_of_one_priority_announce_different_priorities_the_first_started_highest() -> None:
    first = replica_priority(100, STARTED)
    second = replica_priority(100, STARTED + 0.001)
    replacement = replica_priority(100, STARTED + 3600)
    assert first > second > replacement


def test_a_higher_priority_wins_whenever_it_started() -> None:
    assert replica_priority(101, STARTED + 10**6) > replica_priority(100, STARTED)
    assert replica_priority(100, STARTED) > replica_priority(99, STARTED + 10**6)


def test_the_announced_priority_fits_a_json_integer_kubernetes_keeps_exactly() -> None:
    assert replica_priority(9000, STARTED) < 2**53
