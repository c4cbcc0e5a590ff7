"""devcluster: a real local Kubernetes cluster with one real node, for tests and demos.

``python -m devcluster up|down|status|image``; see README.md. The Python API mirrors the CLI.
"""

from devcluster.cluster import Cluster, down, state_dir, status, up
from devcluster.errors import ClusterError

__all__ = ["Cluster", "ClusterError", "down", "state_dir", "status", "up"]
