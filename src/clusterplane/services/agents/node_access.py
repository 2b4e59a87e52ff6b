"""What every node of a cluster gives its people: accounts, the SSH CA, the shared volumes.

`node_access(cluster, volumes)` turns a cluster's rows into the `NodeAccess` a host driver
is handed with each node (`InstanceSpec.access`); the cluster controller builds it once
per pass. The same for every node of the cluster:

* users: the logins the cluster's SSH policy allows (`domain.accounts`), with uids that
  are the same on every node;
* SSH user CA keys: the cluster's SSH CA public key, when `cluster_config.ssh_ca_enabled`
  (then `clusterplane ssh` certificates log in to every node);
* mounts: each ready volume (a directory of the storage's root, named by the volume id)
  at `SHARED_MOUNT` (the first; later ones at `SHARED_MOUNT-<volume id>`), and the first
  volume's `home` directory at `/home`, so the users' homes are shared by every node and
  outlive the cluster with its volume. Without a volume, homes are the node's own.
"""

from __future__ import annotations

from clusterplane.db.rows import ClusterRow, VolumeRow
from clusterplane.domain.accounts import login_uids, node_logins
from clusterplane.domain.enums import VolumeStatus
from clusterplane.domain.ssh_policy import SshPolicy
from clusterplane.providers.models import NodeAccess, NodeMount, NodeUser
from clusterplane.services.clusters.cluster_secrets import ssh_ca_public_key, ssh_enabled

SHARED_MOUNT = "/mnt/shared"
HOME = "/home"
READY = (VolumeStatus.AVAILABLE, VolumeStatus.BOUND)


def _mounts(volumes: list[VolumeRow]) -> tuple[NodeMount, ...]:
    ready = [v for v in volumes if v.status in READY and v.deleted_at is None]
    mounts: list[NodeMount] = []
    for index, volume in enumerate(ready):
        target = SHARED_MOUNT if index == 0 else f"{SHARED_MOUNT}-{volume.id}"
        mounts.append(NodeMount(volume.id, volume.id, target))
    if ready:
        mounts.append(NodeMount(ready[0].id, f"{ready[0].id}/home", HOME))
    return tuple(mounts)


def node_access(cluster: ClusterRow, volumes: list[VolumeRow]) -> NodeAccess:
    """`volumes`: the cluster's attached volumes, oldest first (`volumes.volumes_of`)."""
    uids = login_uids(node_logins(SshPolicy.from_dict(cluster.ssh_policy)))
    ca = ssh_ca_public_key(cluster) if ssh_enabled(cluster) else None
    return NodeAccess(
        users=tuple(NodeUser(name, uid) for name, uid in sorted(uids.items())),
        ssh_user_ca_keys=(ca,) if ca else (),
        mounts=_mounts(volumes),
    )
