"""`clusterplane completion bash|zsh`: the scripts parse, and their function completes
subcommands, options and option values from the real parser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from clusterplane.cli.main import main

HARNESS = """
source {script}
t() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    _clusterplane; echo "${{COMPREPLY[*]}}"
}}
t clusterplane clu
t clusterplane clusters ''
t clusterplane clusters create --gp
t clusterplane clusters create --name x --gpu-type H1
t clusterplane remediations approve c r --mode ''
t clusterplane completion ''
"""


def script(shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["completion", shell]) == 0
    path = tmp_path / f"clusterplane.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def complete(shell: str, path: Path) -> list[str]:
    done = subprocess.run(
        [shell, "-c", HARNESS.format(script=path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_bash_script_parses_and_completes_commands_options_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = script("bash", tmp_path, capsys)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert complete("bash", path) == [
        "clusters",
        "create list get scale delete watch",
        "--gpu-type",
        "H100_SXM H100_SXM_INF",
        "VM_ONLY HOST_AWARE EVICT_WITHOUT_REPLACEMENT REBOOT_VM HOST_POWER_CYCLE",
        "bash zsh",
    ]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_the_zsh_script_registers_the_same_completion_through_bashcompinit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = script("zsh", tmp_path, capsys)
    offered = complete("zsh", path)
    # zsh's compgen leaves matching the typed prefix to zsh itself: whole lists come back.
    assert offered[1] == "create list get scale delete watch"
    assert "H100_SXM_INF" in offered[3].split() and "L40_PCIE" in offered[3].split()
    assert offered[5] == "bash zsh"
    registered = subprocess.run(
        ["zsh", "-c", f"source {path}; print -r -- $_comps[clusterplane]"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert registered.stdout.split() == ["_bash_complete", "-o", "default", "-F", "_clusterplane"]
