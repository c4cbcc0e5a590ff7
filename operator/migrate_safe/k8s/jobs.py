"""Job manifests, one builder for every phase: pure functions of the spec, tested without a
cluster. Every Job runs the harness CLI; the DSN reaches it only through a secretKeyRef."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from migrate_safe.k8s.reconcile import Launch
from migrate_safe.k8s.spec import DatabaseMigrationSpec

GROUP = "migrate-safe.dev"
MANAGED_BY = "migrate-safe-operator"
LABEL_RESOURCE = f"{GROUP}/databasemigration"
LABEL_GENERATION = f"{GROUP}/generation"
LABEL_PHASE = f"{GROUP}/phase"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_OWNER_UID = f"{GROUP}/owner-uid"  # the incarnation of the resource, not only its name
MANAGED_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}

MIGRATIONS_DIR = "/migrations"
# Where the copy-migrations init container sees the migrations volume: not MIGRATIONS_DIR,
# which is also the default path of the files in the application's image and would hide them.
COPY_TARGET = "/migrate-safe-copy"
LOG_DIR = "/var/log/migrate-safe"
BACKUP_ROOT = "/backups"
TERMINATION_LOG = "/dev/termination-log"
# How long a phase may run before the Job controller stops it, unless the template says.
DEFAULT_DEADLINE = {
    "preflight": 600,
    "plan": 3600,
    "backup": 6 * 3600,
    "apply": 24 * 3600,
    "postflight": 3600,
    "rollback": 24 * 3600,
    "restore": 24 * 3600,
}
DEFAULT_TTL = 7 * 24 * 3600  # finished Jobs stay for inspection for a week
USES_BACKUP_VOLUME = {"backup", "restore"}
# How long an apply or rollback Job waits for another run holding the ledger's lock (another
# resource on the same database) before it reports that run as a transient failure: then the
# resource's conditions name the holder while the operator retries with backoff, instead of a
# Job that says only "running".
LEDGER_LOCK_WAIT = "10s"


@dataclass(frozen=True)
class JobSettings:
    """Operator-wide: what Job pods run when the spec does not say."""

    image: str = "migrate-safe:latest"
    command: tuple[str, ...] = ("migrate-safe",)


def label_value(name: str) -> str:
    """A resource name as a label value: names may have 253 characters, label values 63, so a
    long name is cut and made unique by a hash of the whole."""
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('.-_')}-{digest}"


def labels(name: str, uid: str, generation: int, phase: str, attempt: int) -> dict[str, str]:
    return {
        **MANAGED_LABELS,
        "app.kubernetes.io/name": "migrate-safe",
        "app.kubernetes.io/instance": label_value(name),
        "app.kubernetes.io/component": phase,
        LABEL_RESOURCE: label_value(name),
        LABEL_OWNER_UID: uid,
        LABEL_GENERATION: str(generation),
        LABEL_PHASE: phase,
        LABEL_ATTEMPT: str(attempt),
    }


def inline_configmap_name(name: str, uid: str, generation: int) -> str:
    return f"{name[:40]}-{uid[:5]}-inline-g{generation}"


def inline_configmap(
    name: str, uid: str, namespace: str, generation: int, spec: DatabaseMigrationSpec
) -> dict[str, Any]:
    """spec.source.inline as a ConfigMap the Job mounts (owned by the resource)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inline_configmap_name(name, uid, generation),
            "namespace": namespace,
            "labels": {**MANAGED_LABELS, LABEL_RESOURCE: label_value(name), LABEL_OWNER_UID: uid},
        },
        "data": dict(spec.source.inline or {}),
    }


def phase_args(
    phase: str, spec: DatabaseMigrationSpec, options: dict[str, Any], name: str
) -> list[str]:
    """The harness command line of a phase. Every value comes from the spec as the API server
    defaulted it: the harness's own defaults never decide for the operator."""
    common = [
        "--migrations-dir",
        MIGRATIONS_DIR,
        "--log-dir",
        LOG_DIR,
        "--ledger-schema",
        spec.database.ledger_schema,
        "--termination-log",
        TERMINATION_LOG,
    ]
    target = spec.target_version
    to = ["--to", str(target)] if target is not None else []
    backup_dir = f"{BACKUP_ROOT}/{name}"
    if phase == "preflight":
        preflight = spec.preflight
        args = ["preflight", "--long-transaction-seconds", str(preflight.long_transaction_seconds)]
        args += [flag for check in preflight.fail_on for flag in ("--fail-on", check)]
        args += [flag for check in preflight.warn_on for flag in ("--warn-on", check)]
        return [*args, *to, *common]
    if phase == "plan":
        return ["apply", "--dry-run", *to, *common]
    if phase == "backup":
        backup = spec.backup
        return [
            "backup",
            "--backup-dir",
            backup_dir,
            "--format",
            backup.format,
            "--retention",
            str(backup.retention),
            *common,
        ]
    if phase == "apply":
        expect = (
            ["--expect-plan-hash", options["expect_plan_hash"]]
            if "expect_plan_hash" in options
            else []
        )
        return ["apply", "--skip-preflight", "--no-backup", *to, *expect, *_policy(spec), *common]
    if phase == "postflight":
        wanted = options.get("to", target)
        expected = spec.postflight.expected_fingerprint
        args = ["postflight", *(["--to", str(wanted)] if wanted is not None else [])]
        return [*args, *(["--expected-fingerprint", expected] if expected else []), *common]
    if phase == "rollback":
        return ["rollback", "--to", str(options["to"]), *_policy(spec), *common]
    if phase == "restore":
        return ["restore", "--backup", "latest", "--yes", "--backup-dir", backup_dir, *common]
    raise ValueError(f"unknown phase {phase}")


def _policy(spec: DatabaseMigrationSpec) -> list[str]:
    apply = spec.apply
    return [
        "--lock-wait",
        LEDGER_LOCK_WAIT,
        "--lock-timeout",
        apply.lock_timeout,
        "--lock-timeout-max",
        apply.lock_timeout_max,
        "--statement-timeout",
        apply.statement_timeout,
        "--lock-retries",
        str(apply.lock_retries),
    ]


def _migrations_volume(
    name: str, uid: str, generation: int, spec: DatabaseMigrationSpec
) -> dict[str, Any]:
    source = spec.source
    if source.config_maps:
        projected = [{"configMap": {"name": cm.name}} for cm in source.config_maps]
        return {"name": "migrations", "projected": {"sources": projected}}
    if source.inline is not None:
        return {
            "name": "migrations",
            "configMap": {"name": inline_configmap_name(name, uid, generation)},
        }
    return {"name": "migrations", "emptyDir": {}}


def _image_copy(spec: DatabaseMigrationSpec, security: dict[str, Any]) -> list[dict[str, Any]]:
    """For an image source: an init container copies the files out of the app's image."""
    image = spec.source.image
    if image is None:
        return []
    container = {
        "name": "copy-migrations",
        "image": image.name,
        "command": ["cp", "-R", f"{image.path.rstrip('/')}/.", COPY_TARGET],
        "volumeMounts": [{"name": "migrations", "mountPath": COPY_TARGET}],
        "securityContext": security,
    }
    if image.pull_policy:
        container["imagePullPolicy"] = image.pull_policy
    return [container]


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def build_job(
    *,
    name: str,
    uid: str,
    namespace: str,
    generation: int,
    launch: Launch,
    spec: DatabaseMigrationSpec,
    settings: JobSettings,
) -> dict[str, Any]:
    """The Job of one phase; the caller adds the owner reference."""
    template = spec.template(launch.phase)
    job_labels = labels(name, uid, generation, launch.phase, launch.attempt)
    secret = spec.database.secret_ref
    mounts = [
        {"name": "migrations", "mountPath": MIGRATIONS_DIR, "readOnly": True},
        {"name": "logs", "mountPath": LOG_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes = [
        _migrations_volume(name, uid, generation, spec),
        {"name": "logs", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if launch.phase in USES_BACKUP_VOLUME:
        claim = spec.backup.persistent_volume_claim or ""
        volumes.append({"name": "backups", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": "backups", "mountPath": BACKUP_ROOT})
    container: dict[str, Any] = {
        "name": "migrate-safe",
        "image": template.image or settings.image,
        "command": [*settings.command, *phase_args(launch.phase, spec, launch.options, name)],
        "env": [
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
            },
            {"name": "HOME", "value": "/tmp"},
        ],
        "volumeMounts": mounts,
        "securityContext": RESTRICTED,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    if template.resources is not None:
        container["resources"] = dict(template.resources)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": _image_copy(spec, RESTRICTED),
        "containers": [container],
        "volumes": volumes,
    }
    if template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    if template.node_selector is not None:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations is not None:
        pod_spec["tolerations"] = [dict(t) for t in template.tolerations]
    deadline = template.active_deadline_seconds or DEFAULT_DEADLINE[launch.phase]
    ttl = template.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": launch.job_name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "backoffLimit": 0,  # never let the Job controller re-run DDL: retries are ours
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": DEFAULT_TTL if ttl is None else ttl,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }
