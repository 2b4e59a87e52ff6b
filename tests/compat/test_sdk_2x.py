"""The 2.x generation of the official SDK (`client.beta.clusters`, spec §8) works unchanged.

`together` 2.39.x, the last release where `client.beta.clusters` is native, is installed by
this test into `.cache/together-2x/<version>/` (gitignored, reused on later runs) and run
in a subprocess where it shadows the 3.1.1 SDK of the main virtualenv. Its base URL is
`<server>/v1`, the 2.x habit (spec §1.1), so its relative `/compute/...` paths reach the
same wire paths the 3.1.1 SDK uses.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest
import together
from packaging.requirements import Requirement

from tests.support.server import ServerProcess

pytestmark = pytest.mark.compat

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "together-2x"
SERIES = "2.39"
DRIVER = "cu128-drv570-ubuntu2204"
READY_MARK = ".installed"


def _cached_install() -> Path | None:
    """The newest complete cached 2.39.x install, if any."""
    done = [
        p
        for p in CACHE.glob(f"{SERIES}.*")
        if (p / READY_MARK).is_file() and p.name.replace(".", "").isdigit()
    ]
    if not done:
        return None
    return max(done, key=lambda p: tuple(int(x) for x in p.name.split(".")))


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


def _installed(target: Path) -> metadata.Distribution:
    """The `together` distribution installed under `target` (not the main virtualenv's)."""
    found = list(metadata.distributions(name="together", path=[str(target)]))
    assert len(found) == 1, f"expected one together install under {target}: {found}"
    return found[0]


def _missing_requirements(target: Path) -> list[str]:
    """Requirements of the installed 2.x SDK that the main virtualenv does not satisfy."""
    dist = _installed(target)
    missing = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not req.specifier.contains(have, prereleases=True):
            missing.append(text)
    return missing


def install_sdk_2x() -> Path:
    """Install the newest together 2.39.x once into `.cache/together-2x/<version>/`.

    Only the SDK itself goes there; its dependencies come from the main virtualenv unless
    that lacks one, which is then installed next to it. A file lock and an atomic rename
    keep concurrent test runs from seeing a half-installed tree.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _cached_install()
        if found is not None:
            return found
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=CACHE))
        staging.chmod(0o755)
        try:
            _pip("install", "--no-deps", "--target", str(staging), f"together=={SERIES}.*")
            missing = _missing_requirements(staging)
            if missing:
                _pip("install", "--target", str(staging), *missing)
            version = _installed(staging).version
            (staging / READY_MARK).write_text(json.dumps({"version": version}))
            final: Path = CACHE / version
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# Runs under the 2.x SDK: reads {"target", "base_url", "api_key", "driver"} on stdin and
# prints what it saw as one JSON line.
SCRIPT = r"""
import json, sys
import together

args = json.load(sys.stdin)
target = args["target"]
assert together.__file__.startswith(target), together.__file__
assert together.__version__.startswith("2.39."), together.__version__
client = together.Together(api_key=args["api_key"], base_url=args["base_url"], max_retries=0)
beta = client.beta.clusters
out = {"version": together.__version__, "file": together.__file__}
out["list_before"] = [c.cluster_id for c in beta.list().clusters]
created = beta.create(
    cluster_name="from-2x",
    billing_type="ON_DEMAND",
    gpu_type="H100_SXM",
    num_gpus=8,
    region="test-1",
    nvidia_version_id=args["driver"],
    auto_scaled=False,
)
out["created"] = created.model_dump(mode="json")
out["retrieved"] = beta.retrieve(created.cluster_id).model_dump(mode="json")
out["list_after"] = [c.cluster_id for c in beta.list().clusters]
regions = beta.list_regions()
out["regions"] = [r.model_dump(mode="json") for r in regions.regions]
has_storage = hasattr(beta, "storage")
out["has_storage"] = has_storage
if has_storage:
    vol = beta.storage.create(region="test-1", size_tib=2, volume_name="vol-2x")
    out["volume"] = vol.model_dump(mode="json")
    out["volumes"] = [v.volume_id for v in beta.storage.list().volumes]
print(json.dumps(out))
"""


def run_sdk_2x(target: Path, server: ServerProcess) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOGETHER_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PYTHONPATH"] = str(target)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    payload = {
        "target": str(target),
        "base_url": server.base_url + "/v1",
        "api_key": server.api_key,
        "driver": DRIVER,
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        cwd=target,
        timeout=120,
    )
    assert proc.returncode == 0, f"2.x SDK script failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def sdk_2x() -> Path:
    return install_sdk_2x()


def sdk_3(server: ServerProcess) -> together.Together:
    return together.Together(api_key=server.api_key, base_url=server.base_url, max_retries=0)


def test_sdk_2x_lists_the_same_clusters_as_sdk_3_and_can_create_and_read_back(
    sdk_2x: Path, server: ServerProcess
) -> None:
    client = sdk_3(server)
    made = [
        client.clusters.create(
            cluster_name=f"c{i}",
            billing_type="ON_DEMAND",
            gpu_type="H100_SXM",
            num_gpus=8,
            region="test-1",
            nvidia_version_id=DRIVER,
        ).cluster_id
        for i in range(2)
    ]
    ids_3x = [c.cluster_id for c in client.clusters.list().clusters]
    assert sorted(ids_3x) == sorted(made)

    out = run_sdk_2x(sdk_2x, server)

    assert str(out["version"]).startswith("2.39.")
    assert str(out["file"]).startswith(str(sdk_2x))
    assert out["list_before"] == ids_3x

    created = out["created"]
    assert isinstance(created, dict)
    new_id = created["cluster_id"]
    assert new_id and new_id not in made
    assert created["cluster_name"] == "from-2x"
    assert created["num_gpus"] == 8
    assert created["region"] == "test-1"

    retrieved = out["retrieved"]
    assert isinstance(retrieved, dict)
    assert retrieved["cluster_id"] == new_id
    assert retrieved["cluster_name"] == "from-2x"
    assert retrieved["gpu_type"] == "H100_SXM"

    ids_3x_after = [c.cluster_id for c in client.clusters.list().clusters]
    assert out["list_after"] == ids_3x_after
    assert sorted(ids_3x_after) == sorted([*made, new_id])
    seen_by_3x = client.clusters.retrieve(new_id)
    assert seen_by_3x.cluster_name == "from-2x"
    assert seen_by_3x.nvidia_driver_version == "570"

    regions = out["regions"]
    assert isinstance(regions, list)
    drivers = [d["id"] for r in regions if r["name"] == "test-1" for d in r["driver_versions"]]
    assert DRIVER in drivers

    assert out["has_storage"] is True
    volume = out["volume"]
    assert isinstance(volume, dict)
    assert volume["volume_name"] == "vol-2x"
    assert volume["size_tib"] == 2
    vol_ids_3x = [v.volume_id for v in client.clusters.storage.list().volumes]
    assert out["volumes"] == vol_ids_3x
    assert volume["volume_id"] in vol_ids_3x
