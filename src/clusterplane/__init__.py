"""clusterplane: a self-hostable control plane for instant GPU clusters."""

__version__ = "0.1.0"
