"""`/admin/v1/join-tokens...` and `/admin/v1/agents...`: the operator's side of node agents.

Admin keys only.
* POST `/admin/v1/join-tokens` `{region, fabric?, block?, rack?, ttl_seconds?}`: a one-time
  token, its secret shown in this answer only; GET lists tokens (never a secret); DELETE
  `/admin/v1/join-tokens/{id}` revokes one.
* GET `/admin/v1/agents[/{host}]`: enrolled hosts, heard-from status, what they applied.
* PUT / DELETE `/admin/v1/agents/{host}/assignment`: publish a host's desired state by hand
  or return the host clean (the cluster lifecycle's host driver does the same through
  `services.agents.host_assignments`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.routers.admin import admin
from clusterplane.api.schemas.common import Identifier
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import AgentHostRow, HostRow
from clusterplane.domain import agent_protocol as wire
from clusterplane.errors import NotFound
from clusterplane.providers.agent_port import DesiredNode
from clusterplane.services.access.auth import Caller
from clusterplane.services.agents import agent_checks, agent_hosts, host_assignments, join_tokens
from clusterplane.services.capacity import fleet_state

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


class CreateJoinToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: Identifier
    fabric: Identifier | None = None
    block: Identifier | None = None
    rack: Identifier | None = None
    ttl_seconds: float | None = Field(default=None, gt=0)


class PublishAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cluster_id: Identifier
    node: wire.NodeSpec
    users: list[wire.UserSpec] = Field(default_factory=list, max_length=256)
    ssh_user_ca_keys: list[str] = Field(default_factory=list, max_length=8)
    mounts: list[wire.MountSpec] = Field(default_factory=list, max_length=32)
    secrets: dict[str, str] = Field(default_factory=dict, max_length=32)
    runtimes: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=8)


@router.post("/join-tokens", openapi_extra=request_body(CreateJoinToken))
def create_join_token(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreateJoinToken, body)
    state = api_state(request)
    where = join_tokens.Placement(req.region, req.fabric, req.block, req.rack)
    now = state.wall_clock.now()
    with transaction(state.sessions) as session:
        issued = join_tokens.create_token(
            session,
            state.settings.agents,
            where,
            ttl_seconds=req.ttl_seconds,
            created_by=caller.api_key_id,
            now=now,
        )
        answer = {**join_tokens.token_view(issued.row, now), "token": issued.token}
    return presenters.json_response(answer, status=201)


@router.get("/join-tokens")
def list_join_tokens(request: Request) -> Response:
    state = api_state(request)
    now = state.wall_clock.now()
    with read_transaction(state.sessions) as session:
        tokens = [join_tokens.token_view(t, now) for t in join_tokens.list_tokens(session)]
    return presenters.json_response({"join_tokens": tokens})


@router.delete("/join-tokens/{token_id}")
def revoke_join_token(token_id: str, request: Request) -> Response:
    state = api_state(request)
    now = state.wall_clock.now()
    with transaction(state.sessions) as session:
        row = join_tokens.revoke(session, token_id, now=now)
        answer = join_tokens.token_view(row, now)
    return presenters.json_response(answer)


def _agent(session: Any, host_ref: str) -> tuple[AgentHostRow, HostRow]:
    host = fleet_state.get_host(session, host_ref)
    agent = session.get(AgentHostRow, host.id)
    if agent is None:
        raise NotFound(f"host '{host_ref}' has no node agent", param="host")
    return agent, host


@router.get("/agents")
def list_agents(request: Request) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        rows = session.execute(
            select(AgentHostRow, HostRow)
            .join(HostRow, HostRow.id == AgentHostRow.host_id)
            .order_by(HostRow.name)
        ).all()
        agents = [agent_hosts.agent_view(agent, host) for agent, host in rows]
    return presenters.json_response({"agents": agents})


@router.get("/agents/{host}")
def get_agent(host: str, request: Request) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        agent, row = _agent(session, host)
        answer = agent_hosts.agent_view(agent, row)
        answer["generation_published"] = host_assignments.generation(session, row.id)
        answer["checks"] = agent_checks.recent(session, row.id)
    return presenters.json_response(answer)


@router.put("/agents/{host}/assignment", openapi_extra=request_body(PublishAssignment))
def publish_assignment(host: str, request: Request, body: RawBody = Depends(raw_body)) -> Response:
    req = validate(PublishAssignment, body)
    desired = DesiredNode(
        cluster_id=req.cluster_id,
        node=req.node,
        users=tuple(req.users),
        ssh_user_ca_keys=tuple(req.ssh_user_ca_keys),
        mounts=tuple(req.mounts),
        secrets=req.secrets,
        runtimes=req.runtimes,
    )
    return _publish(request, host, desired)


@router.delete("/agents/{host}/assignment")
def release_host(host: str, request: Request) -> Response:
    return _publish(request, host, None)


def _publish(request: Request, host: str, desired: DesiredNode | None) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        agent, row = _agent(session, host)
        generation = host_assignments.publish(
            session, state.secrets, agent.host_id, desired, now=state.clock.now()
        )
    state.long_polls.announce(row.id)
    return presenters.json_response({"host_id": row.id, "generation": generation})
