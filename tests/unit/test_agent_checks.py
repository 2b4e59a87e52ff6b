"""The agent's active checks: the operator's command per kind, its figures, its failures,
and reports that survive a restart without running a check twice."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from clusterplane.agent.checks import CheckRunner, run_check
from clusterplane.agent.client import ServerRefused
from clusterplane.agent.config import AgentConfig, CheckCommand, load
from clusterplane.domain.agent_protocol import CheckReport, CheckRequest
from clusterplane.domain.checks import CheckKind
from tests.support.check_scripts import script as check_script

DCGM = CheckRequest(run_id="run-1", kind="dcgm_diag", level=3)


def command(tmp_path: Path, body: str, timeout: float = 30.0) -> dict[str, CheckCommand]:
    argv = check_script(tmp_path / "check.sh", body)
    return {"dcgm_diag": CheckCommand(command=argv, timeout_seconds=timeout)}


def test_a_check_reports_the_json_figures_its_command_printed_last(tmp_path: Path):
    script = 'echo "warming up"; echo "{\\"failing_gpus\\": [], \\"level\\": $1, ' + (
        '\\"run\\": \\"$CLUSTERPLANE_CHECK_RUN_ID\\"}"'
    )
    report = run_check(command(tmp_path, script), DCGM)
    assert report == CheckReport(
        run_id="run-1", ok=True, figures={"failing_gpus": [], "level": 3, "run": "run-1"}
    )


def test_a_non_zero_exit_fails_the_check_with_its_error_and_keeps_its_figures(tmp_path: Path):
    script = 'echo \'{"failing_gpus": [3]}\'; echo "GPU 3: memory test failed" >&2; exit 4'
    report = run_check(command(tmp_path, script), DCGM)
    assert not report.ok
    assert report.message == "dcgm_diag exited 4: GPU 3: memory test failed"
    assert report.figures == {"failing_gpus": [3]}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("echo all good", "printed no JSON object of figures: all good"),
        ("echo '[1, 2]'", "printed no JSON object of figures"),
        ('echo \'{"k": "x\\u0000"}\'', "unusable figures"),
    ],
)
def test_output_that_is_no_json_object_of_figures_fails_the_check(
    tmp_path: Path, body: str, why: str
):
    report = run_check(command(tmp_path, body), DCGM)
    assert not report.ok and why in report.message


def test_a_check_past_its_timeout_is_killed_with_everything_it_started(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    report = run_check(command(tmp_path, script, timeout=0.5), DCGM)
    assert not report.ok and "did not finish within 0.5 s" in report.message
    assert time.monotonic() - started < 10
    child = Path(f"/proc/{int(pid_file.read_text())}/stat")
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the check's own child survived the timeout"


def alive(stat: Path) -> bool:
    """Whether the process runs (a zombie waiting for a reaper does not)."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_kind_without_a_command_fails_naming_the_config_key_it_needs(tmp_path: Path):
    report = run_check({}, CheckRequest(run_id="r", kind="gpu_burn"))
    assert not report.ok
    assert "no command for gpu_burn checks ([checks.gpu_burn]" in report.message
    missing = {"dcgm_diag": CheckCommand(command=[str(tmp_path / "nothing-here")])}
    assert "cannot start" in run_check(missing, DCGM).message


@pytest.mark.parametrize("arg", ["{levl}", "{level.__class__}", "{level!r}", "{}", "{0}"])
def test_a_command_may_name_only_the_known_placeholders(arg: str):
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"checks": {"dcgm_diag": {"command": ["dcgmi", arg]}}})
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({"checks": {"dcgm": {"command": ["dcgmi"]}}})


class Server:
    """What the runner sends its reports to: takes them, or refuses as told."""

    def __init__(self) -> None:
        self.taken: list[CheckReport] = []
        self.refuse: Exception | None = None

    def __call__(self, report: CheckReport) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.taken.append(report)


def test_a_report_waits_for_the_server_and_a_restart_neither_loses_nor_reruns_it(
    tmp_path: Path,
):
    runs = tmp_path / "runs"
    commands = command(tmp_path, f'echo "$1" >> {runs}; echo "{{}}"')
    server = Server()
    server.refuse = httpx.ConnectError("the server is away")
    runner = CheckRunner(tmp_path, commands, server)
    runner.submit([DCGM, DCGM])
    assert runner.step() and not runner.step()
    assert server.taken == []
    restarted = CheckRunner(tmp_path, commands, server)  # the agent died before sending
    server.refuse = None
    restarted.submit([DCGM])  # the server still lists it: its report has not landed
    assert not restarted.step()
    assert [r.run_id for r in server.taken] == ["run-1"]
    assert runs.read_text() == "3\n"  # ran once


def test_a_report_the_server_refuses_as_malformed_becomes_a_failed_one(tmp_path: Path):
    server = Server()
    runner = CheckRunner(tmp_path, command(tmp_path, "echo '{}'"), server)
    server.refuse = ServerRefused(400, "figures: too many")
    runner.submit([DCGM])
    runner.step()
    server.refuse = None
    runner.flush()
    [report] = server.taken
    assert not report.ok and "refused the check's report: figures: too many" in report.message
    server.refuse = ServerRefused(404, "no such check")
    runner.submit([CheckRequest(run_id="run-2", kind="dcgm_diag")])
    runner.step()
    assert runner.unsent == {}  # dropped: the server does not know it


def test_the_example_agent_config_loads_and_so_do_its_check_examples():
    example = Path(__file__).resolve().parents[2] / "packaging/agent.toml"
    assert load(example).checks == {}
    text = example.read_text()
    for key in ("[checks.", "command = ", "timeout_seconds = "):
        text = text.replace(f"# {key}", key)
    uncommented = AgentConfig.model_validate(tomllib.loads(text))
    assert sorted(uncommented.checks) == ["dcgm_diag", "gpu_burn"]
    assert uncommented.checks[CheckKind.DCGM_DIAG].command[-1] == "{level}"
