"""Everything an end-to-end run leaves that a user, a log shipper or a dashboard could read, kept
so it can be searched for the database password.

Test namespaces are deleted after each test, and their Events, pod statuses (termination
messages), Jobs and resource statuses with them: `collect` copies them to files first. Files
that outlive the namespaces (operator logs under the pytest base directory, container logs and
component logs of the devcluster, backup volumes) are read where they are. Secrets, etcd, keys
and the node's image store are not artefacts: the password is meant to be in the Secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.testing import Api

GROUP, VERSION = "migrate-safe.dev", "v1alpha1"
# A connection string that carries a password: URL form and keyword form.
DSN_WITH_PASSWORD = re.compile(
    rb"postgres(?:ql)?://[^\s:/@\"']+:[^\s@/\"']+@|\bpassword\s*=\s*[^\s\"'&]+", re.IGNORECASE
)
OPERATOR_LOG = re.compile(r"operator.*[.]log$")  # OperatorProcess's, in a test's tmp_path
CLUSTER_DIRS = ("pods", "logs", "volumes")  # of a devcluster root: the rest is state and keys
LARGEST = 64 * 1024 * 1024


@dataclass(frozen=True)
class Hit:
    path: Path
    what: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}: …{self.excerpt}…"


class Collector:
    """Copies what a namespace holds to `root/<namespace>/` before it is deleted."""

    def __init__(self, api_client: Api, root: Path) -> None:
        self.api_client, self.root = api_client, root

    def collect(self, namespace: str) -> Path:
        """Never fails a test's teardown: an API server a fault test left unwell is noted."""
        where = self.root / namespace
        where.mkdir(parents=True, exist_ok=True)
        try:
            self._copy(namespace, where)
        except Exception as error:  # the teardown must go on
            (where / "not-collected.txt").write_text(f"{type(error).__name__}: {error}")
        return where

    def _copy(self, namespace: str, where: Path) -> None:
        core = client.CoreV1Api(self.api_client)
        dump = self.api_client.sanitize_for_serialization
        for kind, listed in (
            ("events", core.list_namespaced_event(namespace)),
            ("pods", core.list_namespaced_pod(namespace)),
            ("jobs", client.BatchV1Api(self.api_client).list_namespaced_job(namespace)),
            ("configmaps", core.list_namespaced_config_map(namespace)),
        ):
            _write(where / f"{kind}.json", dump(listed))
        for plural in ("databasemigrations", "databasemigrationsets"):
            _write(where / f"{plural}.json", self._custom(namespace, plural))
        for pod in core.list_namespaced_pod(namespace).items:
            for container in (pod.spec.init_containers or []) + pod.spec.containers:
                (where / f"log-{pod.metadata.name}-{container.name}.txt").write_text(
                    _log(core, namespace, pod.metadata.name, container.name)
                )

    def _custom(self, namespace: str, plural: str) -> Any:
        try:
            return client.CustomObjectsApi(self.api_client).list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural
            )
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed in this session
                return {}
            raise


def _log(core: Api, namespace: str, pod: str, container: str) -> str:
    try:
        return str(core.read_namespaced_pod_log(pod, namespace, container=container))
    except ApiException as exc:  # never started, or already gone
        return f"(no log: {exc.status} {exc.reason})"


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def artefact_files(basetemp: Path) -> Iterator[Path]:
    """The run's operator logs and collected namespaces under the pytest base directory, and of
    each devcluster root only its container logs, component logs and volumes (the node's image
    store changes under a walk)."""
    for top in sorted(basetemp.iterdir()):
        if top.is_symlink() or not top.is_dir():  # pytest's "<name>current" links
            continue
        if top.name.startswith("devcluster"):
            for name in CLUSTER_DIRS:
                yield from _files(top / name)
        else:
            artefacts = top.name.startswith("artefacts")
            yield from (f for f in _files(top) if artefacts or OPERATOR_LOG.match(f.name))


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= LARGEST:
                yield path
        except FileNotFoundError:  # a pod's volume removed meanwhile
            continue


def scan(paths: Iterable[Path], secrets: Iterable[str]) -> list[Hit]:
    """Occurrences of any of `secrets`, or of any DSN with a password, in `paths`. A hit shows
    what precedes it, never the secret itself."""
    needles = [(b"a secret", re.compile(re.escape(s.encode()))) for s in secrets if s]
    needles.append((b"a DSN with a password", DSN_WITH_PASSWORD))
    hits: list[Hit] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # removed since it was listed
            continue
        for what, needle in needles:
            if match := needle.search(data):
                excerpt = data[max(0, match.start() - 40) : match.start()]
                hits.append(Hit(path, what.decode(), excerpt.decode(errors="replace")))
    return hits
