"""Shared-directory volumes: a directory per volume, its size recorded or enforced with
project quotas, names that cannot escape the root, deletes that never follow a link."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from clusterplane.errors import PermanentProviderError, TemporaryProviderError
from clusterplane.providers import project_quotas, shared_directory
from clusterplane.providers.models import VolumeSpec
from clusterplane.providers.project_quotas import ProjectQuota, mount_of
from clusterplane.providers.shared_directory import SharedDirectoryStorage

NOW = datetime(2026, 5, 1, tzinfo=UTC)
VOLUME = VolumeSpec("v-1", "agents-1", 2)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "shared").mkdir()
    return tmp_path / "shared"


def test_a_volume_is_a_directory_everyone_on_the_cluster_can_write_to(root: Path):
    created = SharedDirectoryStorage(root, quotas="off").create_volume(VOLUME, NOW)
    assert created.done and created.size_tib == 2
    assert (root / "v-1").stat().st_mode & 0o7777 == 0o1777
    assert created.state["quota"] == "none"
    assert created.message == "size recorded, not enforced"


@pytest.mark.parametrize("volume_id", ["../etc", "..", ".hidden", "a/b", "", "x" * 65])
def test_a_volume_id_that_is_not_one_plain_name_is_refused(root: Path, volume_id: str):
    storage = SharedDirectoryStorage(root, quotas="off")
    with pytest.raises(PermanentProviderError):
        storage.create_volume(VolumeSpec(volume_id, "agents-1", 1), NOW)
    assert list(root.parent.iterdir()) == [root] and list(root.iterdir()) == []


def test_a_root_that_is_not_mounted_is_not_yet_and_a_vanished_volume_fails(root: Path):
    storage = SharedDirectoryStorage(root, quotas="off")
    state = storage.create_volume(VOLUME, NOW).state
    (root / "v-1").rmdir()
    with pytest.raises(PermanentProviderError) as gone:
        storage.describe_volume(VOLUME, state, NOW)
    assert "is gone" in gone.value.message
    with pytest.raises(TemporaryProviderError) as away:
        SharedDirectoryStorage(root / "unmounted").create_volume(VOLUME, NOW)
    assert "not mounted" in away.value.message


def test_required_quotas_on_a_filesystem_without_them_fail_the_volume(root: Path):
    with pytest.raises(PermanentProviderError) as failure:
        SharedDirectoryStorage(root, quotas="required").create_volume(VOLUME, NOW)
    assert "project quotas are required" in failure.value.message


def test_a_volume_on_a_filesystem_with_project_quotas_gets_its_size_as_a_hard_limit(
    root: Path, monkeypatch: pytest.MonkeyPatch
):
    ran: list[list[str]] = []
    quota = ProjectQuota("ext4", "/srv", ran.append)
    monkeypatch.setattr(project_quotas, "detect", lambda path, runner: quota)
    storage = SharedDirectoryStorage(root, quotas="required")
    created = storage.create_volume(VOLUME, NOW)
    project = project_quotas.project_id("v-1")
    assert created.state["quota"] == "ext4_project" and created.message == ""
    two_tib_kib = str(2 * 1024**3)
    assert ran == [
        ["chattr", "+P", "-p", str(project), str(root / "v-1")],
        ["setquota", "-P", str(project), "0", two_tib_kib, "0", "0", "/srv"],
    ]
    grown = storage.resize_volume(VolumeSpec("v-1", "agents-1", 5), created.state, NOW)
    assert grown.size_tib == 5 and ran[-1][4] == str(5 * 1024**3)
    assert storage.delete_volume(VOLUME, grown.state, NOW).done
    assert ran[-1] == ["setquota", "-P", str(project), "0", "0", "0", "0", "/srv"]


def test_xfs_project_quotas_are_set_on_the_mount_point():
    ran: list[list[str]] = []
    ProjectQuota("xfs", "/data", ran.append).limit(Path("/data/v-1"), 42, 3)
    assert ran == [
        ["xfs_quota", "-x", "-c", "project -s -p /data/v-1 42", "/data"],
        ["xfs_quota", "-x", "-c", "limit -p bhard=3t 42", "/data"],
    ]


def test_the_mount_holding_a_path_is_the_longest_mount_point_above_it(tmp_path: Path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "40 22 8:2 / /srv rw,relatime shared:2 - xfs /dev/vdb rw,attr2,prjquota\n"
        "41 22 8:3 / /srv2 rw,relatime shared:3 - ext4 /dev/vdc rw\n"
    )
    found = mount_of(Path("/srv/volumes/v-1"), str(info))
    assert found is not None and (found.point, found.fstype) == ("/srv", "xfs")
    assert "prjquota" in found.options
    other = mount_of(Path("/srv2x"), str(info))
    assert other is not None and other.point == "/"


def test_a_delete_takes_slices_never_follows_links_and_stays_done(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    storage = SharedDirectoryStorage(root, quotas="off")
    state = storage.create_volume(VOLUME, NOW).state
    for sub in ("a", "a/b", "c"):
        (root / "v-1" / sub).mkdir()
        (root / "v-1" / sub / "data").write_text("x")
    (root / "v-1" / "a" / "link").symlink_to(outside)
    (root / "v-1" / "file-link").symlink_to(outside / "keep")
    monkeypatch.setattr(shared_directory, "SLICE_SECONDS", -1.0)  # one directory a call
    calls = 0
    while not (progress := storage.delete_volume(VOLUME, state, NOW)).done:
        calls += 1
        state = progress.state
        assert calls < 10
    assert calls >= 2, "a large tree is removed over several calls"
    assert not (root / "v-1").exists() and list((root / ".deleting").iterdir()) == []
    assert (outside / "keep").read_text() == "mine"
    assert storage.delete_volume(VOLUME, progress.state, NOW).done


@pytest.mark.parametrize("state", [{}, {"directory": "v-1"}, {"size_tib": "2", "directory": "v"}])
def test_state_it_cannot_read_is_a_permanent_failure(root: Path, state: dict[str, object]):
    with pytest.raises(PermanentProviderError):
        SharedDirectoryStorage(root, quotas="off").describe_volume(VOLUME, state, NOW)
