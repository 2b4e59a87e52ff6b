"""Active-check commands for test hosts: shell scripts that print a healthy host's figures
(or fail as a sick one does), and leave evidence of every run.

`commands(directory)` writes one script per check kind and returns each one's argv, as an
agent config's `[checks.<kind>] command` names it (`{level}` is the DCGM level); each run
appends "<kind> <level>" to `directory/ran`.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

HEALTHY: dict[str, dict[str, object]] = {
    "dcgm_diag": {"failing_gpus": []},
    "gpu_burn": {"failing_gpus": [], "gflops_per_gpu": 52000.0},
    "nccl_single_node": {"bus_bandwidth_gbps": 480.0},
    "nccl_multi_node": {"bus_bandwidth_gbps": 370.0},
    "ib_write_bw": {"min_port_gbits": 380.0},
}
FAILING_GPU_MESSAGE = "GPU 3: memory test failed"
FAILING = f"""echo '{{"failing_gpus": [3], "error": "memory"}}'
echo "{FAILING_GPU_MESSAGE}" >&2
exit 1"""


def script(path: Path, body: str) -> list[str]:
    """A check command: a shell script (`$1` is the level) with `body`."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return [str(path), "{level}"]


def commands(directory: Path, *, failing: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every kind's command: healthy figures, or `FAILING` for the kinds in `failing`."""
    directory.mkdir(parents=True, exist_ok=True)
    ran = directory / "ran"
    found: dict[str, list[str]] = {}
    for kind, figures in HEALTHY.items():
        body = FAILING if kind in failing else f"echo '{json.dumps(figures)}'"
        found[kind] = script(directory / f"{kind}.sh", f'echo "{kind} $1" >> {ran}\n{body}')
    return found


def ran(directory: Path) -> list[str]:
    """The checks run so far: "<kind> <level>" lines."""
    path = directory / "ran"
    return path.read_text().split("\n")[:-1] if path.exists() else []
