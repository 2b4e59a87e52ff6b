"""The cluster's shared volumes: bind mounts of directories of the operator's shared
filesystem (mounted on every host at `node.shared_fs`) at the cluster's mount paths.

The volume's directory is made on first use. A mount already in place is left alone, so
a restarted agent never mounts twice; mounts no longer wanted are unmounted (the data
stays on the shared filesystem: it belongs to the volume, not to the host).
"""

from __future__ import annotations

from pathlib import Path

from clusterplane.domain.agent_protocol import MountSpec, SectionResult

from .applied import Applied
from .hostops import HostOps


def converge_mounts(
    ops: HostOps, applied: Applied, mounts: list[MountSpec], shared_fs: str
) -> SectionResult:
    wanted = {m.target for m in mounts}
    failed: list[str] = []
    for target in [t for t in applied.mounts if t not in wanted]:
        try:
            ops.unmount(target)
            applied.mounts.remove(target)
        except OSError as exc:
            failed.append(f"{target}: {exc}")
    base = ops.path(shared_fs)
    if mounts and not base.is_dir():
        return SectionResult(ok=False, message=f"shared filesystem {shared_fs} is not mounted")
    for mount in mounts:
        source = (base / mount.source).resolve()
        if base.resolve() not in source.parents:
            failed.append(f"{mount.target}: source escapes the shared filesystem")
            continue
        try:
            source.mkdir(parents=True, exist_ok=True)
            ops.bind_mount(Path(source), mount.target)
        except OSError as exc:
            failed.append(f"{mount.target}: {exc}")
            continue
        if mount.target not in applied.mounts:
            applied.mounts.append(mount.target)
    if failed:
        return SectionResult(ok=False, message="; ".join(failed))
    return SectionResult(ok=True, details={"mounts": sorted(wanted)})


def remove_mounts(ops: HostOps, applied: Applied) -> SectionResult:
    return converge_mounts(ops, applied, [], "/")
