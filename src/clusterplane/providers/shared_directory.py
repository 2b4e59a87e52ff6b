"""`SharedDirectoryStorage`: volumes as directories of a shared filesystem every host mounts.

For a region whose hosts all mount one shared filesystem (NFS, Lustre, Weka...) at the
path their agent config names (`node.shared_fs`), and this server at `root` (the same
directory, wherever each machine mounts it; `storage.shared_directories`): a volume is the
directory `root/<volume id>`, mode 1777 so the cluster's users can make their own
directories in it, bind-mounted into each node of its cluster by the node's agent
(`services.agents.node_access` names the mounts). The volume id is the directory name, so it is
checked to be one plain name (no `/`, no `.` or `..`, nothing hidden).

Size: recorded in the state and, where the filesystem has project quotas
(`project_quotas`), enforced as the project's hard limit; the state says which
(`quota`: "xfs_project", "ext4_project" or "none"). With `quotas="required"`, a volume on
a filesystem without them fails; with "off" the size is only recorded.

Delete: the directory is first renamed into `root/.deleting/` (at once, on the same
filesystem), then removed a slice at a time (`SLICE_SECONDS` per call), so a large volume
never blocks the controller; done when nothing of it is left. Nothing mounts it by then:
a volume can be deleted only once detached, and a cluster's volumes are detached only after
every node's host was released, which an agent host finishes only once its agent has
unmounted everything (and waits through a silent agent).

Errors: the root missing (the filesystem not mounted) is "not yet"
(`TemporaryProviderError`); anything else the filesystem or a quota command refuses fails
the volume with its message (`PermanentProviderError`).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path

from clusterplane.errors import PermanentProviderError, TemporaryProviderError
from clusterplane.providers import project_quotas
from clusterplane.providers.models import DriverState, Progress, VolumeProgress, VolumeSpec
from clusterplane.providers.project_quotas import ProjectQuota, QuotaError, Runner

NAME = "shared_directory"
VOLUME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
TRASH = ".deleting"
SLICE_SECONDS = 1.0
ROOT_RETRY_SECONDS = 30.0
QUOTA_MODES = ("auto", "required", "off")


class SharedDirectoryStorage:
    name = NAME

    def __init__(
        self,
        root: Path,
        *,
        quotas: str = "auto",
        runner: Runner = project_quotas.run,
    ):
        if quotas not in QUOTA_MODES:
            raise ValueError(f"quotas must be one of {', '.join(QUOTA_MODES)}")
        self.root = Path(root)
        self.quotas = quotas
        self.runner = runner

    # -- paths -------------------------------------------------------------------------

    def _directory(self, volume_id: str) -> Path:
        if not VOLUME_ID.fullmatch(volume_id):
            raise PermanentProviderError(f"'{volume_id}' cannot name a volume's directory")
        if not self.root.is_dir():
            raise TemporaryProviderError(
                f"the shared filesystem {self.root} is not there (not mounted?)",
                delay_seconds=ROOT_RETRY_SECONDS,
            )
        return self.root / volume_id

    def _quota(self) -> ProjectQuota | None:
        if self.quotas == "off":
            return None
        found = project_quotas.detect(self.root, self.runner)
        if found is None and self.quotas == "required":
            raise PermanentProviderError(
                f"project quotas are required, but the filesystem of {self.root} has none "
                "(XFS or ext4 mounted with prjquota, with xfs_quota or setquota installed)"
            )
        return found

    # -- verbs -------------------------------------------------------------------------

    def create_volume(self, spec: VolumeSpec, now: datetime) -> VolumeProgress:
        directory = self._directory(spec.volume_id)
        try:
            directory.mkdir(mode=0o1777, exist_ok=True)
            os.chmod(directory, 0o1777)  # mkdir's mode is cut by the umask
        except OSError as exc:
            raise PermanentProviderError(f"cannot make {directory}: {exc}") from None
        quota = self._quota()
        state: DriverState = {
            "directory": spec.volume_id,
            "size_tib": spec.size_tib,
            "quota": quota.name if quota else "none",
            "project_id": project_quotas.project_id(spec.volume_id),
        }
        self._limit(quota, directory, state)
        return self.describe_volume(spec, state, now)

    def describe_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> VolumeProgress:
        size = _size(state)
        directory = self._directory(_name(state, spec))
        if not directory.is_dir():
            raise PermanentProviderError(f"the volume's directory {directory} is gone")
        note = "" if state.get("quota") != "none" else "size recorded, not enforced"
        return VolumeProgress(True, state, message=note, size_tib=size)

    def resize_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> VolumeProgress:
        _size(state)
        directory = self._directory(_name(state, spec))
        grown = {**state, "size_tib": spec.size_tib}
        if state.get("quota") != "none":
            self._limit(self._quota(), directory, grown)
        return self.describe_volume(spec, grown, now)

    def delete_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> Progress:
        name = _name(state, spec)
        directory = self._directory(name)
        trash = self.root / TRASH / name
        try:
            if directory.exists():
                trash.parent.mkdir(mode=0o700, exist_ok=True)
                directory.rename(trash)
            gone = _remove_some(trash, SLICE_SECONDS)
        except OSError as exc:
            raise PermanentProviderError(f"cannot remove {directory}: {exc}") from None
        if gone and state.get("quota") not in (None, "none"):
            quota = self._quota()
            if quota is not None:
                try:
                    quota.clear(int(state["project_id"]))
                except QuotaError as exc:
                    raise PermanentProviderError(f"volume removed; {exc}") from None
        return Progress(gone, {**state, "deleting": True})

    def _limit(self, quota: ProjectQuota | None, directory: Path, state: DriverState) -> None:
        if quota is None:
            return
        try:
            quota.limit(directory, int(state["project_id"]), int(state["size_tib"]))
        except QuotaError as exc:
            raise PermanentProviderError(f"cannot limit {directory}: {exc}") from None


def _size(state: DriverState) -> int:
    size = state.get("size_tib")
    if not isinstance(size, int) or isinstance(size, bool) or "directory" not in state:
        raise PermanentProviderError("unreadable shared-directory volume state")
    return size


def _name(state: DriverState, spec: VolumeSpec) -> str:
    name = state.get("directory", spec.volume_id)
    if name != spec.volume_id:
        raise PermanentProviderError(f"the state names another volume than {spec.volume_id}")
    return spec.volume_id


def _remove_some(path: Path, seconds: float) -> bool:
    """Remove `path`'s tree for up to `seconds`, deepest first, never following a
    symbolic link; True once nothing is left."""
    if not path.exists() and not path.is_symlink():
        return True
    deadline = time.monotonic() + seconds
    removed = 0
    for top, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(top, name))
        for name in dirs:
            child = os.path.join(top, name)
            if os.path.islink(child):
                os.unlink(child)
            else:
                os.rmdir(child)
        removed += len(files) + len(dirs)
        if removed and time.monotonic() > deadline:
            return False
    path.rmdir()
    return True
