"""The Slurm cluster flavour's pure parts: configuration rendered from a cluster description."""

from clusterplane.providers.slurm.config import (
    SlurmClusterSpec,
    SlurmFiles,
    SlurmNode,
    SlurmPartition,
    SlurmStartupScripts,
    config_generation,
    render_files,
    render_gres_conf,
    render_slurm_conf,
    worker_node_conf,
)

__all__ = [
    "SlurmClusterSpec",
    "SlurmFiles",
    "SlurmNode",
    "SlurmPartition",
    "SlurmStartupScripts",
    "config_generation",
    "render_files",
    "render_gres_conf",
    "render_slurm_conf",
    "worker_node_conf",
]
