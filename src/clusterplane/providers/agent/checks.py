"""Active checks on agent hosts, for `AgentHostDriver`'s check feature (`HostChecks`).

`start_check` asks the host's agent for the run through the port (an ensure: a repeat
with the same run id answers the run already asked for, never a second one); the agent
learns of it with its next heartbeat, runs the command its config names for that kind
with a timeout and reports. `poll_check` reads the report. The caller judges the figures.

Fails closed: a host with no enrolled agent, an agent gone silent while the check is
outstanding, a run not reported within `REPORT_DEADLINE` of its start, and a run the
agent could not run (no command configured for the kind, a timeout, a non-zero exit) all
fail the check with a message saying which. A finished run's outcome is kept in the
state, so polling again answers the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from clusterplane.errors import PermanentProviderError
from clusterplane.providers.agent_port import CheckRun, HostAssignments, Observation
from clusterplane.providers.models import CheckProgress, CheckSpec, DriverState, HostSpec

POLL_SECONDS = 2.0
REPORT_DEADLINE = timedelta(hours=12)


def _host_id(host: HostSpec) -> str:
    if not host.host_id:
        raise PermanentProviderError(f"host {host.host_name} has no id for its agent's checks")
    return host.host_id


def _finished(state: DriverState, run: CheckRun) -> CheckProgress:
    kept: DriverState = {**state, "outcome": run.state, "figures": run.figures}
    kept["message"] = run.message
    if run.state == "done":
        return CheckProgress(True, kept, message=run.message, figures=run.figures)
    message = run.message or "the agent reported the check failed"
    return CheckProgress(False, kept, failed=True, message=message, figures=run.figures)


def _kept(state: DriverState) -> CheckProgress | None:
    """The outcome a finished run left in its state, answered again as it was."""
    outcome = state.get("outcome")
    if outcome is None:
        return None
    figures: Any = state.get("figures")
    message = state.get("message")
    if outcome not in ("done", "failed") or not isinstance(figures, dict):
        raise PermanentProviderError("unreadable state of an agent check")
    text = message if isinstance(message, str) else ""
    if outcome == "done":
        return CheckProgress(True, state, message=text, figures=figures)
    return CheckProgress(False, state, failed=True, message=text, figures=figures)


def _started_at(state: DriverState, check: CheckSpec) -> datetime:
    try:
        if state["run_id"] != check.run_id:
            raise PermanentProviderError(f"the state is of another check run than {check.run_id}")
        return datetime.fromisoformat(str(state["started_at"]))
    except (KeyError, TypeError, ValueError):
        raise PermanentProviderError("unreadable state of an agent check") from None


def _progress(
    port: HostAssignments,
    host: HostSpec,
    check: CheckSpec,
    state: DriverState,
    run: CheckRun,
    now: datetime,
) -> CheckProgress:
    if run.state != "requested":
        return _finished(state, run)
    seen = _agent(port, host)
    if seen.status != "ready":
        message = f"the agent on {host.host_name} went silent before reporting {check.kind}"
        return CheckProgress(False, state, failed=True, message=message)
    if now >= _started_at(state, check) + REPORT_DEADLINE:
        message = (
            f"the agent on {host.host_name} did not report {check.kind} within {REPORT_DEADLINE}"
        )
        return CheckProgress(False, state, failed=True, message=message)
    return CheckProgress(False, state, poll_after_seconds=POLL_SECONDS)


def _agent(port: HostAssignments, host: HostSpec) -> Observation:
    seen = port.observe(_host_id(host))
    if seen is None:
        raise PermanentProviderError(f"no node agent is enrolled on host {host.host_name}")
    return seen


def start_check(
    port: HostAssignments, host: HostSpec, check: CheckSpec, now: datetime
) -> CheckProgress:
    _agent(port, host)  # a host without an agent fails here, naming it
    run = port.request_check(_host_id(host), check.run_id, check.kind, check.level)
    state: DriverState = {"run_id": check.run_id, "started_at": now.isoformat()}
    return _progress(port, host, check, state, run, now)


def poll_check(
    port: HostAssignments, host: HostSpec, check: CheckSpec, state: DriverState, now: datetime
) -> CheckProgress:
    _started_at(state, check)
    kept = _kept(state)
    if kept is not None:
        return kept
    run = port.observe_check(_host_id(host), check.run_id)
    if run is None:
        raise PermanentProviderError(
            f"host {host.host_name} has no record of check run {check.run_id}"
        )
    return _progress(port, host, check, state, run, now)
