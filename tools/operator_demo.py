"""The one-command demo: a throwaway PostgreSQL, a real local cluster (devcluster: the control
plane and a node with containerd and the kubelet), the operator, and the example migrations
applied through a DatabaseMigration by Jobs running the project's image (built here from the
Dockerfile) — then a rollback by lowering targetVersion. Everything runs on this machine and is
torn down at the end.

    .ci/demo                       # what the README's first command runs
    .venv/bin/python tools/operator_demo.py [--preview docs/dashboard]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import devcluster  # noqa: E402
from devcluster import image  # noqa: E402
from migrate_safe.localpg import LocalPostgres, free_port  # noqa: E402

NAMESPACE, NAME = "shop", "orders"
GROUP, VERSION, PLURAL = "migrate-safe.dev", "v1alpha1", "databasemigrations"


def say(text: str) -> None:
    print(text, flush=True)


def binaries() -> Path:
    say("== control plane binaries (kube-apiserver, etcd, kubectl… built from Go modules)")
    say("   a cold build takes about 11 minutes on 2 cores; a warm machine reuses its cache")
    started = time.monotonic()
    built = subprocess.run(
        [str(ROOT / "devcluster" / "build.sh")], stdout=subprocess.PIPE, text=True, check=True
    )
    say(f"   ready in {time.monotonic() - started:.0f}s")
    return Path(built.stdout.strip())


def project_image() -> image.Image:
    say("== the image (buildah, from the Dockerfile, checked: UID 10001, read-only root, pg_dump)")
    say("   a cold build takes about 3 minutes; a warm machine reuses it until the code changes")
    started = time.monotonic()
    built = image.ensure_image()
    say(f"   {built.ref} ready in {time.monotonic() - started:.0f}s")
    return built


@contextmanager
def operator_process(
    kubeconfig: Path, log: Path, metrics_port: int, job_image: str
) -> Iterator[None]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MIGRATE_SAFE_JOB_IMAGE": job_image}
    command = [
        sys.executable,
        "-m",
        "migrate_safe",
        "operator",
        "--namespace",
        NAMESPACE,
        "--standalone",
        "--metrics-port",
        str(metrics_port),
        "--liveness-port",
        "0",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        yield
    finally:
        process.terminate()
        process.wait(15)


def kubectl(bin_dir: Path, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


class Watcher:
    """Prints the resource's phase and conditions whenever they change; scrapes /metrics."""

    def __init__(self, custom: Any, metrics_port: int, scrapes: Path) -> None:
        self.custom = custom
        self.metrics_port = metrics_port
        self.scrapes = scrapes
        self.last: tuple[Any, ...] = ()
        self.started = time.monotonic()

    def get(self) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        )

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.get()
            self._print_change(obj)
            self.scrape()
            if done(obj):
                return obj
            time.sleep(1)
        raise SystemExit(f"demo: gave up after {timeout}s; status: {json.dumps(obj.get('status'))}")

    def _print_change(self, obj: dict[str, Any]) -> None:
        status = obj.get("status", {})
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        ready = conditions.get("Ready", {})
        key = (
            status.get("phase"),
            ready.get("status"),
            ready.get("reason"),
            status.get("currentVersion"),
        )
        if key == self.last:
            return
        self.last = key
        phase, ready_status, reason, current = key
        seen = ", ".join(
            f"{c['type']}={c['status']}"
            for c in status.get("conditions", [])
            if c["type"] not in ("Ready", "Reconciling", "Stalled")
        )
        say(
            f"  {time.monotonic() - self.started:6.1f}s  phase={phase}  Ready={ready_status} "
            f"({reason})  current={current}  {seen}"
        )

    def scrape(self) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as page:
                text = page.read().decode()
        except OSError:
            return
        stamp = time.time()
        (self.scrapes / f"{stamp:.3f}.txt").write_text(f"# scrape_time {stamp}\n{text}")


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status", {})
    fresh = status.get("observedGeneration") == obj["metadata"]["generation"]
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return fresh and (conditions.get("Ready") == "True" or conditions.get("Stalled") == "True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preview", type=Path, help="render the dashboard panels here (PNG)")
    args = parser.parse_args()
    bin_dir = binaries()
    built = project_image()
    work = Path(tempfile.mkdtemp(prefix="migrate-safe-demo-"))
    scrapes = work / "scrapes"
    scrapes.mkdir()
    say(
        "== a throwaway PostgreSQL and the cluster (etcd, kube-apiserver, kube-controller-manager,"
        " kube-scheduler; a node: containerd, runc, the kubelet)"
    )
    with LocalPostgres() as pg:
        cluster_dir = work / "cluster"
        cluster = devcluster.up(cluster_dir)
        try:
            cluster.load_image(built)
            # Pods reach this machine's PostgreSQL (on loopback) through the node.
            url = make_conninfo(pg.url(), host=cluster.expose(pg.port))
            run_demo(Demo(url, built.ref, bin_dir, cluster.kubeconfig, work, scrapes))
        finally:
            devcluster.down(cluster_dir)
    if args.preview:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "dashboard_preview.py"),
                "--out",
                str(args.preview),
                *map(str, sorted(scrapes.iterdir())),
            ],
            check=True,
        )
        say(f"dashboard preview written to {args.preview}")
    say(f"logs kept in {work}")


@dataclass(frozen=True)
class Demo:
    database_url: str  # as pods reach the database
    job_image: str
    bin_dir: Path
    kubeconfig: Path
    work: Path
    scrapes: Path


def run_demo(demo: Demo) -> None:
    bin_dir, kubeconfig, work, scrapes = demo.bin_dir, demo.kubeconfig, demo.work, demo.scrapes
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    kubectl(bin_dir, kubeconfig, "apply", "-f", str(ROOT / "crds" / "databasemigration.yaml"))
    kubectl(
        bin_dir,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/databasemigrations.migrate-safe.dev",
    )
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    while not core.list_namespaced_service_account(NAMESPACE).items:
        time.sleep(0.2)
    files = {
        p.name: p.read_text() for p in sorted((ROOT / "examples" / "migrations").glob("*.sql"))
    }
    core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": "orders-migrations"}, "data": files}
    )
    core.create_namespaced_secret(
        NAMESPACE,
        {"metadata": {"name": "orders-db-url"}, "stringData": {"DATABASE_URL": demo.database_url}},
    )
    core.create_namespaced_persistent_volume_claim(
        NAMESPACE,
        {
            "metadata": {"name": "orders-db-backups"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    metrics_port = free_port()
    with operator_process(kubeconfig, work / "operator.log", metrics_port, demo.job_image):
        manifest = yaml.safe_load((ROOT / "examples" / "databasemigration.yaml").read_text())
        say("\n== kubectl apply -f examples/databasemigration.yaml (8 migrations, backup on)")
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
        watcher = Watcher(custom, metrics_port, scrapes)
        watcher.until(ready)
        say("\n$ kubectl get dbm -n shop")
        say(kubectl(bin_dir, kubeconfig, "get", "dbm", "-n", NAMESPACE).rstrip())
        say("\n$ kubectl get jobs -n shop")
        say(kubectl(bin_dir, kubeconfig, "get", "jobs", "-n", NAMESPACE).rstrip())
        say("\n$ kubectl get pods -n shop -o wide   # each Job's pod: the image, on the node")
        say(kubectl(bin_dir, kubeconfig, "get", "pods", "-n", NAMESPACE, "-o", "wide").rstrip())
        say(
            "\n== rollback: kubectl patch dbm orders --type merge -p "
            '\'{"spec":{"targetVersion":5,"rollback":{"policy":"Auto"}}}\''
        )
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            NAME,
            {"spec": {"targetVersion": 5, "rollback": {"policy": "Auto"}}},
        )
        watcher.until(ready)
        say("\n$ kubectl get dbm -n shop")
        say(kubectl(bin_dir, kubeconfig, "get", "dbm", "-n", NAMESPACE).rstrip())
        say("\n$ kubectl get dbm orders -n shop -o jsonpath='{.status.conditions}'")
        for cond in watcher.get()["status"]["conditions"]:
            reason, message = cond["reason"], cond["message"][:70]
            say(f"  {cond['type']:<17} {cond['status']:<6} {reason:<22} {message}")
        watcher.scrape()


if __name__ == "__main__":
    main()
