"""What a driver is told about a node or a host: rows turned into the providers' specs."""

from __future__ import annotations

from clusterplane.db.rows import ClusterRow, HostRow, NodeRow
from clusterplane.domain.enums import NodeRole
from clusterplane.providers.models import HostSpec, InstanceSpec, NodeAccess

from .node_views import LiveNode


def instance_spec(
    cluster: ClusterRow,
    node: NodeRow | LiveNode,
    driver: str | None = None,
    access: NodeAccess | None = None,
) -> InstanceSpec:
    """What a driver needs to know about one node; `driver` is its host's driver (None:
    a node without a host of its own, served by the registry's default); `access` what
    the node gives the cluster's people (`services.agents.node_access`; None: nothing)."""
    return InstanceSpec(
        instance_id=node.instance_id,
        cluster_id=cluster.id,
        role=NodeRole(node.role),
        node_name=node.node_name,
        host_name=node.host_name,
        region=cluster.region,
        gpu_type=cluster.gpu_type,
        num_gpus=node.num_gpus,
        image=cluster.os_image,
        driver=driver or "",
        host_id=node.host_id or "",
        cluster_type=cluster.cluster_type,
        cluster_config=cluster.cluster_config or {},
        slurm_shm_size_gib=cluster.slurm_shm_size_gib or 0,
        access=access or NodeAccess(),
        oidc_config=cluster.oidc_config,
    )


def host_spec(host: HostRow) -> HostSpec:
    return HostSpec(
        host_name=host.name,
        region=host.region,
        gpu_type=host.gpu_type,
        num_gpus=host.num_gpus,
        driver=host.driver,
        host_id=host.id,
    )
