"""The one error devcluster raises for a cluster that cannot start or run."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster could not be started; the message points at the component's log."""
