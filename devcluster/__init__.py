"""devcluster: a real local Kubernetes control plane with a process-kubelet, for tests and demos.

``python -m devcluster up|down|status``; see README.md. The Python API mirrors the CLI.
"""

from devcluster.cluster import Cluster, ClusterError, down, state_dir, status, up

__all__ = ["Cluster", "ClusterError", "down", "state_dir", "status", "up"]
