"""Project quotas: how a shared-directory volume's size is enforced, where it can be.

A directory tree gets a project id and the project a hard block limit, so writes past the
volume's size fail with EDQUOT on every host that mounts it. That needs the filesystem
holding the directory mounted with project quotas and its tool installed:

* XFS mounted with `prjquota` (or `pquota`): `xfs_quota -x -c 'project -s -p DIR ID'`
  and `'limit -p bhard=SIZE ID'` on the mount point;
* ext4 mounted with `prjquota`: `chattr +P -p ID DIR` (new files inherit the project)
  and `setquota -P ID 0 KIB 0 0 MOUNT`.

`detect(path)` finds which applies to `path` from /proc/self/mountinfo (the mount that
holds it: the longest mount point above it); None when neither does, and the size is then
only recorded. Commands run through a `Runner`, so tests can record them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Runner = Callable[[list[str]], None]
KIB_PER_TIB = 1024**3


class QuotaError(Exception):
    """A quota command failed; the message is its error output."""


def run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QuotaError(f"{command[0]}: {exc}") from None
    if done.returncode != 0:
        raise QuotaError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")


def project_id(volume_id: str) -> int:
    """A volume's project id: stable, in 1..2^31-2 (0 is "no project")."""
    digest = hashlib.sha256(f"clusterplane-volume:{volume_id}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") % (2**31 - 2)


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: frozenset[str]


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape")


def mount_of(path: Path, mountinfo: str = "/proc/self/mountinfo") -> Mount | None:
    """The mount holding `path`: the longest mount point that is `path` or above it."""
    target = os.path.realpath(path)
    best: Mount | None = None
    with open(mountinfo) as info:
        for line in info:
            fields = line.split()
            dash = fields.index("-")
            point = _unescape(fields[4])
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best.point)):
                options = set(fields[5].split(",")) | set(fields[dash + 3].split(","))
                best = Mount(point, fields[dash + 1], frozenset(options))
    return best


@dataclass(frozen=True)
class ProjectQuota:
    """Project quotas on one mounted filesystem (`kind`: "xfs" or "ext4")."""

    kind: str
    mount_point: str
    runner: Runner = run

    @property
    def name(self) -> str:
        return f"{self.kind}_project"

    def limit(self, directory: Path, project: int, size_tib: int) -> None:
        """Give `directory` the project and the project a hard limit of `size_tib`."""
        if self.kind == "xfs":
            self._xfs(f"project -s -p {directory} {project}")
            self._xfs(f"limit -p bhard={size_tib}t {project}")
            return
        self.runner(["chattr", "+P", "-p", str(project), str(directory)])
        kib = str(size_tib * KIB_PER_TIB)
        self.runner(["setquota", "-P", str(project), "0", kib, "0", "0", self.mount_point])

    def clear(self, project: int) -> None:
        """Lift the project's limit (its directory is gone or going)."""
        if self.kind == "xfs":
            self._xfs(f"limit -p bhard=0 {project}")
            return
        self.runner(["setquota", "-P", str(project), "0", "0", "0", "0", self.mount_point])

    def _xfs(self, command: str) -> None:
        self.runner(["xfs_quota", "-x", "-c", command, self.mount_point])


def detect(path: Path, runner: Runner = run) -> ProjectQuota | None:
    """Project quotas for the filesystem holding `path`, when it has them."""
    mount = mount_of(path)
    if mount is None:
        return None
    xfs = mount.fstype == "xfs" and bool(mount.options & {"prjquota", "pquota"})
    if xfs and shutil.which("xfs_quota"):
        return ProjectQuota("xfs", mount.point, runner)
    ext4 = mount.fstype == "ext4" and "prjquota" in mount.options
    if ext4 and shutil.which("setquota") and shutil.which("chattr"):
        return ProjectQuota("ext4", mount.point, runner)
    return None
