"""The devcluster itself, end to end: real apiserver validation, the real Job, garbage-collector
and Deployment controllers, the real scheduler, and a real node — the kubelet running pods as
containers of an image (containerd, runc), each in its own network namespace."""

from __future__ import annotations

import ipaddress
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

import devcluster
from devcluster.testing import Api, Pods, wait_for

pytestmark = pytest.mark.e2e


def job(name: str, image: str, code: str, **pod_spec: Any) -> dict[str, Any]:
    """A one-pod Job running ``python -c code`` in ``image``, never retried."""
    container = {"name": "main", "image": image, "command": ["python", "-c", code]}
    container.update(pod_spec.pop("container", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [container], **pod_spec},
            },
        },
    }


def job_condition(batch: Api, ns: str, name: str) -> str | None:
    status = batch.read_namespaced_job_status(name, ns).status
    for cond in status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def wait_for_job(batch: Api, ns: str, name: str) -> str:
    """Wait for the Job controller's verdict: "Complete" or "Failed"."""
    return str(wait_for(f"Job {name} to finish", lambda: job_condition(batch, ns, name), 120))


def terminated(pod: Any) -> Any:
    return pod.status.container_statuses[0].state.terminated


def only_pod(pods: Pods, job_name: str) -> Any:
    found = pods.list(f"job-name={job_name}")
    assert len(found) == 1, [p.metadata.name for p in found]
    return found[0]


def test_crd_schema_rejects_invalid_object(extensions: Api, custom: Api) -> None:
    group, plural = f"e2e{uuid.uuid4().hex[:6]}.example.com", "widgets"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1}},
            }
        },
    }
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Cluster",
                "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        }
    )
    try:
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 0},
        }
        # The CRD is served shortly after creation; until then the create is a 404.
        exc = wait_for("the CRD to be served", lambda: _create_error(custom, group, plural, body))
        assert exc.status == 422
        assert "spec.size" in exc.body
        assert "should be greater than or equal to 1" in exc.body
    finally:
        extensions.delete_custom_resource_definition(f"{plural}.{group}")


def _create_error(
    custom: Api, group: str, plural: str, body: dict[str, Any]
) -> ApiException | None:
    try:
        custom.create_cluster_custom_object(group, "v1", plural, body)
    except ApiException as exc:
        return None if exc.status == 404 else exc
    raise AssertionError("the invalid object was accepted")


def test_the_node_is_a_real_kubelet_on_containerd(core: Api, cluster: devcluster.Cluster) -> None:
    (node,) = core.list_node().items
    info = node.status.node_info
    assert info.kubelet_version == "v1.35.4"
    assert info.container_runtime_version.startswith("containerd://")
    assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [cluster.node_ip]


def test_job_gets_secret_env_configmap_file_and_termination_message(
    core: Api, batch: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "demo"}, "stringData": {"token": "s3cret"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "demo"}, "data": {"greeting": "hello"}}
    )
    code = textwrap.dedent("""
        import os
        greeting = open("/etc/demo-config/greeting").read()
        print("pod says", greeting, flush=True)
        with open("/dev/termination-log", "w") as f:
            f.write(f"{greeting} {os.environ['DEMO_TOKEN']} {os.environ['POD_NAMESPACE']}")
    """)
    container = {
        "env": [
            {"name": "DEMO_TOKEN", "valueFrom": {"secretKeyRef": {"name": "demo", "key": "token"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/demo-config"}],
    }
    manifest = job(
        "demo",
        project_image,
        code,
        container=container,
        volumes=[{"name": "config", "configMap": {"name": "demo"}}],
    )
    batch.create_namespaced_job(namespace, manifest)

    assert wait_for_job(batch, namespace, "demo") == "Complete"
    pod = only_pod(pods, "demo")
    assert pod.status.phase == "Succeeded"
    assert terminated(pod).exit_code == 0
    assert terminated(pod).message == f"hello s3cret {namespace}"
    assert "pod says hello" in pods.log(pod.metadata.name, "main")
    # The volume was mounted in the container only.
    assert not Path("/etc/demo-config").exists()


def test_pods_have_their_own_network_and_reach_the_node(
    batch: Api, namespace: str, pods: Pods, project_image: str, cluster: devcluster.Cluster
) -> None:
    """A pod's address is its own (the bridge's subnet), its loopback is not this machine's,
    and the `kubernetes` Service's address answers (the node relays it to the apiserver)."""
    code = textwrap.dedent("""
        import os, socket
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        socket.create_connection((host, int(port)), timeout=5).close()
        print(socket.gethostbyname(socket.gethostname()), host, flush=True)
    """)
    batch.create_namespaced_job(namespace, job("net", project_image, code))
    assert wait_for_job(batch, namespace, "net") == "Complete"
    pod = only_pod(pods, "net")
    pod_ip, service_host = pods.log(pod.metadata.name, "main").split()
    subnet = ipaddress.ip_network(cluster.slot.subnet)
    assert ipaddress.ip_address(pod.status.pod_ip) in subnet
    assert pod.status.pod_ip == pod_ip != cluster.node_ip
    assert service_host == cluster.node_ip


def test_failing_command_fails_the_job(
    batch: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    batch.create_namespaced_job(namespace, job("fails", project_image, "raise SystemExit(3)"))

    assert wait_for_job(batch, namespace, "fails") == "Failed"
    pod = only_pod(pods, "fails")
    assert pod.status.phase == "Failed"
    assert terminated(pod).exit_code == 3
    assert terminated(pod).reason == "Error"


def test_deleting_a_job_stops_its_running_pod(
    batch: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    code = "import time; print('sleeping', flush=True); time.sleep(600)"
    batch.create_namespaced_job(namespace, job("sleeper", project_image, code))
    wait_for("the pod to run", lambda: _running(pods.list("job-name=sleeper")), timeout=60)

    batch.delete_namespaced_job(
        "sleeper", namespace, propagation_policy="Background", grace_period_seconds=1
    )

    # The kubelet lets a pod go only once its containers are stopped.
    wait_for("the garbage collector to delete the pod", lambda: not pods.list(), timeout=60)


def _running(found: list[Any]) -> Any:
    return found[0] if found and found[0].status.phase == "Running" else None


def test_a_claim_gets_a_local_volume_that_outlives_its_pods(
    core: Api, batch: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
    )
    claim = wait_for(
        "the claim to be bound",
        lambda: (
            (c := core.read_namespaced_persistent_volume_claim("data", namespace))
            and c.status.phase == "Bound"
            and c
        ),
    )
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.local.path and volume.spec.storage_class_name == "local"
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/backups"}]}
    spec = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
    write = "open('/backups/value', 'w').write('kept')"
    read = "open('/dev/termination-log', 'w').write(open('/backups/value').read())"
    for name, code in (("write", write), ("read", read)):
        manifest = job(name, project_image, code, container=mount, **spec)
        batch.create_namespaced_job(namespace, manifest)
        assert wait_for_job(batch, namespace, name) == "Complete"
    assert terminated(only_pod(pods, "read")).message == "kept"


def test_deployment_pod_becomes_ready_with_service_account_token(
    apps: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    """A long-running pod (the operator's shape) is Ready and reaches the API in-cluster."""
    code = textwrap.dedent("""
        import time
        from kubernetes import client, config
        config.load_incluster_config()
        review = client.AuthenticationV1Api().create_self_subject_review({})
        print("user", review.status.user_info.username, flush=True)
        time.sleep(600)
    """)
    container = {"name": "main", "image": project_image, "command": ["python", "-c", code]}
    labels = {"app": "demo"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "demo"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    wait_for(
        "the Deployment to be available",
        lambda: (
            apps.read_namespaced_deployment_status("demo", namespace).status.available_replicas == 1
        ),
    )
    pod = pods.list("app=demo")[0]
    expected = f"user system:serviceaccount:{namespace}:default"
    wait_for("the in-cluster API call", lambda: expected in pods.log(pod.metadata.name, "main"))


def test_restart_policy_always_restarts_with_backoff(
    core: Api, namespace: str, pods: Pods, project_image: str
) -> None:
    code = "print('started', flush=True); raise SystemExit(1)"
    container = {"name": "main", "image": project_image, "command": ["python", "-c", code]}
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "crashy"}, "spec": {"containers": [container]}}
    )

    def restarted() -> Any:
        status = core.read_namespaced_pod_status("crashy", namespace).status
        cs = (status.container_statuses or [None])[0]
        return cs if cs and cs.restart_count >= 1 and cs.last_state.terminated else None

    # The first restart comes after a kubelet's initial 10 s back-off.
    status = wait_for("a restart", restarted, timeout=60)
    assert status.last_state.terminated.exit_code == 1
    assert core.read_namespaced_pod("crashy", namespace).status.phase == "Running"
