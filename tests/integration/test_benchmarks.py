"""The performance suite runs end to end (`python -m benchmarks --quick`), so it cannot rot.

Toy sizes, SQLite only (PostgreSQL figures are the same code on another URL): seeding, real
server processes, the load generator, bring-ups with instantaneous steps, and the report.
The numbers of a quick run mean nothing; what is checked is that every figure is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_quick_benchmark_run_writes_every_figure(tmp_path: Path):
    output = tmp_path / "performance.md"
    # The threaded Python load generator, as on a machine without wrk (`make bench`
    # installs and uses wrk); nothing is installed from a test.
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_NO_INSTALL="1", BENCH_LOAD="python")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--no-postgres",
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = output.read_text()
    for heading in (
        "## The machine and the run",
        "The issue's targets, as measured in this run:",
        "1. Lists, SQLite",
        "2. Requests per server CPU-second",
        "3. Control-plane overhead, create to Ready (SQLite, one server)",
        "4. Placement, 100,000-GPU fleet (one core)",
        "5. Detection to action in a failure storm (SQLite, one server)",
        "6. Mixed load, 8 clients",
        "7. Full reconcile after a restart",
        "## What the numbers changed in the code",
    ):
        assert heading in text, heading
    for figure in (
        "GET one cluster,",
        "Unpaginated `GET /v1/compute/clusters`",
        "Server CPU per listed cluster, unpaginated list of all",
        "Server peak RSS while answering, the lists of all",
        "`/healthz`, this server (httptools + uvloop)",
        "Trivial FastAPI app, httptools + uvloop",
        "GET one cluster, read cache off",
        "GET one cluster, read cache on",
        "Create an 8-GPU cluster, with its credentials",
        "The floor under a create",
        "create -> Ready, 8 GPUs",
        "Placement decisions per second (kept index)",
        "p99 placement decision latency",
        "Committed placements per second, SQLite",
        "Largest placeable cluster after",
        "XID 79 storm via the API",
        "XID 79 storm via simulated agents",
        "GET one cluster (p99) under the mixed load",
        "Clusters the load created, Ready after it",
        "Start -> every one of the",
    ):
        assert figure in text, figure
    assert "n/a | n/a" not in text, "a figure came out empty"
    assert "| nan" not in text and " nan " not in text, "a figure came out as NaN"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_partial_run_replaces_only_its_own_section_of_the_report(tmp_path: Path):
    output = tmp_path / "performance.md"
    before = (ROOT / "docs" / "performance.md").read_text()
    output.write_text(before)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks", "--quick", "--only", "placement"),
            *("--output", str(output), "--workdir", str(tmp_path / "work")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    after = output.read_text()
    assert after.count("## 4. Placement, 100,000-GPU fleet (one core)") == 1
    assert "Measured by `python -m benchmarks --only placement --quick`" in after
    lists = next(line for line in before.splitlines() if line.startswith("## 1. "))
    for heading in (lists, "## What the numbers changed in the code"):
        kept = before[before.index(heading) :].split("\n## ")[0]
        assert kept in after, heading
