"""Turn a pod manifest into what a local process needs: environment, volume directories, mounts.

Pods are handled as plain dicts in API (camelCase) form, as they arrive from the watch.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

# Bound tokens with the default expiry are extended by the apiserver (to a year): no refresh loop.
TOKEN_EXPIRY = 3607
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class ConfigError(Exception):
    """The pod cannot start yet (e.g. a Secret is missing): it stays Pending and is retried."""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    apiserver_port: int
    host_path: str  # the kubelet's PATH, appended to the container's


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes, rest is kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return VAR_REF.sub(sub, text)


def field_value(pod: dict[str, Any], path: str) -> str:
    """The downward API: the fieldRef paths a kubelet supports."""
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        # Every pod shares the host's loopback: that is its address.
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", path)
    if m:
        values: dict[str, str] = meta.get(m.group(1)) or {}
        if m.group(2) is not None:
            return values.get(m.group(2), "")
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldRef {path!r}")


@dataclass
class Resolver:
    """Reads Secrets and ConfigMaps (once per pod start) to resolve env and volumes."""

    api: Any  # kubernetes.client.CoreV1Api
    namespace: str
    _cache: dict[tuple[str, str], dict[str, bytes] | None] = field(default_factory=dict)

    def data(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = self._fetch(kind, name)
        found = self._cache[key]
        if found is None:
            if optional:
                return {}
            raise ConfigError(f'{kind} "{name}" not found')
        return found

    def _fetch(self, kind: str, name: str) -> dict[str, bytes] | None:
        try:
            if kind == "secret":
                obj = self.api.read_namespaced_secret(name, self.namespace)
                return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
            obj = self.api.read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out = {k: v.encode() for k, v in (obj.data or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
        return out

    def key(self, kind: str, ref: dict[str, Any]) -> str | None:
        values = self.data(kind, ref["name"], bool(ref.get("optional")))
        if ref["key"] in values:
            return values[ref["key"]].decode()
        if ref.get("optional"):
            return None
        raise ConfigError(
            f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
        )


def _env_from(resolver: Resolver, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref_key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            for k, v in resolver.data(kind, ref["name"], bool(ref.get("optional"))).items():
                # A real kubelet skips keys that are not valid variable names, so do we.
                if ENV_NAME.match(prefix + k):
                    env[prefix + k] = v.decode()
    return env


def _value_from(resolver: Resolver, pod: dict[str, Any], source: dict[str, Any]) -> str | None:
    if "secretKeyRef" in source:
        return resolver.key("secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return resolver.key("configmap", source["configMapKeyRef"])
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    raise ConfigError(f"unsupported env source {sorted(source)}")


def container_env(
    resolver: Resolver, pod: dict[str, Any], container: dict[str, Any], node: NodeInfo
) -> dict[str, str]:
    """The container's environment, resolved like a kubelet does (envFrom first, env overrides)."""
    env = {
        "HOSTNAME": pod["metadata"]["name"],
        # In-cluster clients find the apiserver through these, as they would in a real pod.
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(node.apiserver_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(node.apiserver_port),
    }
    env.update(_env_from(resolver, container))
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(resolver, pod, var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    env["PATH"] = _path(env.get("PATH"), node.host_path)
    return env


def _path(container_path: str | None, host_path: str) -> str:
    """Container PATH entries first (the manifest's choice wins), then the host's, deduplicated:
    the image is ignored, so the host PATH is where commands are actually found."""
    seen: list[str] = []
    for entry in (container_path or "").split(":") + host_path.split(":"):
        if entry and entry not in seen:
            seen.append(entry)
    return ":".join(seen)


def command_line(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    argv = [
        expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])
    ]
    if not argv:
        raise ConfigError(f'container "{container["name"]}" has no command: the image is ignored')
    return argv


def _write_items(
    dest: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int
) -> None:
    """Project ``data`` into ``dest``: all keys, or only ``items`` (key -> path, own mode)."""
    chosen = items or [{"key": k, "path": k} for k in data]
    for item in chosen:
        if item["key"] not in data:
            raise ConfigError(f'key "{item["key"]}" not found')
        target = dest / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[item["key"]])
        target.chmod(item.get("mode", mode))


@dataclass
class VolumeBuilder:
    """Materialises a pod's volumes as host directories under the pod's state directory."""

    resolver: Resolver
    pod: dict[str, Any]
    pod_dir: Path
    pvc_root: Path
    node: NodeInfo
    request_token: Callable[[str, int, list[str] | None], str]

    def build(self, volume: dict[str, Any]) -> Path:
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            claim = str(volume["persistentVolumeClaim"]["claimName"])
            path = self.pvc_root / self.resolver.namespace / claim
            path.mkdir(parents=True, exist_ok=True)
            return path
        if "hostPath" in volume:
            path = Path(str(volume["hostPath"]["path"]))
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            return path
        # Written once per pod start: later Secret/ConfigMap changes are not propagated.
        dest: Path = self.pod_dir / "volumes" / name
        dest.mkdir(parents=True, exist_ok=True)
        self._fill(volume, dest)
        return dest

    def _fill(self, volume: dict[str, Any], dest: Path) -> None:
        if "emptyDir" in volume:
            return
        if "configMap" in volume or "secret" in volume:
            self._project_object(volume, dest, volume.get("configMap") is None)
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"].get("sources") or []:
                self._projected_source(source, dest, mode)
        elif "downwardAPI" in volume:
            self._downward(volume["downwardAPI"].get("items") or [], dest, 0o644)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise ConfigError(f'volume "{volume["name"]}": unsupported type {kinds}')

    def _project_object(self, volume: dict[str, Any], dest: Path, is_secret: bool) -> None:
        src = volume["secret"] if is_secret else volume["configMap"]
        name = src["secretName"] if is_secret else src["name"]
        kind = "secret" if is_secret else "configmap"
        data = self.resolver.data(kind, name, bool(src.get("optional")))
        _write_items(dest, data, src.get("items"), src.get("defaultMode", 0o644))

    def _projected_source(self, source: dict[str, Any], dest: Path, mode: int) -> None:
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            expiry = spec.get("expirationSeconds", TOKEN_EXPIRY)
            audiences = [spec["audience"]] if spec.get("audience") else None
            (dest / spec["path"]).write_text(self.request_token(self._sa_name(), expiry, audiences))
            (dest / spec["path"]).chmod(mode)
        elif "configMap" in source or "secret" in source:
            is_secret = "secret" in source
            ref = source["secret"] if is_secret else source["configMap"]
            data = self.resolver.data(
                "secret" if is_secret else "configmap", ref["name"], bool(ref.get("optional"))
            )
            _write_items(dest, data, ref.get("items"), mode)
        elif "downwardAPI" in source:
            self._downward(source["downwardAPI"].get("items") or [], dest, mode)
        else:
            raise ConfigError(f"unsupported projected source {sorted(source)}")

    def _downward(self, items: list[dict[str, Any]], dest: Path, mode: int) -> None:
        for item in items:
            if "fieldRef" not in item:
                raise ConfigError("downwardAPI: only fieldRef items are supported")
            target = dest / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(field_value(self.pod, item["fieldRef"]["fieldPath"]))
            target.chmod(item.get("mode", mode))

    def _sa_name(self) -> str:
        return str(self.pod["spec"].get("serviceAccountName") or "default")


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    readonly: bool

    def to_json(self) -> dict[str, Any]:
        return {"source": str(self.source), "target": self.target, "readonly": self.readonly}


READ_ONLY_TYPES = ("configMap", "secret", "projected", "downwardAPI")


def container_mounts(
    volume_mounts: list[dict[str, Any]],
    volumes: dict[str, Path],
    pod_volumes: dict[str, dict[str, Any]],
    env: dict[str, str],
) -> list[Mount]:
    mounts = []
    for vm in volume_mounts:
        name = vm["name"]
        if name not in volumes:
            raise ConfigError(f'volumeMount "{name}" refers to no volume of the pod')
        source = volumes[name]
        sub = expand(vm.get("subPath") or vm.get("subPathExpr") or "", env)
        if sub:
            source = source / sub
            if not source.exists():
                source.mkdir(parents=True)
        kind = pod_volumes.get(name, {})
        readonly = bool(vm.get("readOnly")) or any(t in kind for t in READ_ONLY_TYPES)
        mounts.append(Mount(source, vm["mountPath"], readonly))
    return mounts
