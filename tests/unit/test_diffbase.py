"""The operator's diff base keeps exactly what kopf's own would, without copying the body."""

from __future__ import annotations

from typing import Any, cast

import kopf

from migrate_safe.k8s.handlers import MetadataDiffBase

BODY: dict[str, Any] = {
    "apiVersion": "migrate-safe.dev/v1alpha1",
    "kind": "DatabaseMigration",
    "metadata": {
        "name": "orders",
        "namespace": "shop",
        "uid": "0a1b",
        "resourceVersion": "42",
        "finalizers": ["migrate-safe.dev/finalizer"],
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        "labels": {"team": "payments"},
        "annotations": {
            "argocd.argoproj.io/sync-wave": "1",
            "migrate-safe.dev/last-handled-spec": "{}",
            "migrate-safe.dev/kopf-managed": "yes",
        },
    },
    "spec": {"targetVersion": 3, "source": {"inline": {"001_a.up.sql": "SELECT 1;"}}},
    "status": {"observedGeneration": 1, "history": [{"job": "j"}]},
}


def essences(body: dict[str, Any]) -> tuple[Any, Any]:
    ours = MetadataDiffBase(
        prefix="migrate-safe.dev", key="last-handled-spec", ignored_fields=["spec"]
    )
    kopfs = kopf.AnnotationsDiffBaseStorage(
        prefix="migrate-safe.dev", key="last-handled-spec", ignored_fields=["spec"]
    )
    wrapped = kopf.Body(cast(kopf.RawBody, body))
    return ours.build(body=wrapped), kopfs.build(body=wrapped)


def test_the_essence_is_kopfs_own() -> None:
    ours, kopfs = essences(BODY)
    assert ours == kopfs
    assert ours == {
        "metadata": {
            "labels": {"team": "payments"},
            "annotations": {"argocd.argoproj.io/sync-wave": "1"},
        }
    }


def test_a_body_without_labels_or_annotations_has_the_same_essence_too() -> None:
    bare = {**BODY, "metadata": {"name": "orders", "namespace": "shop", "uid": "0a1b"}}
    ours, kopfs = essences(bare)
    assert ours == kopfs
