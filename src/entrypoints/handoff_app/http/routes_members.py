"""The account's members (mirrored in by the host) and its escalation policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from handoff_app.http.auth import CallerDep, ServicesDep
from handoff_app.http.errors import documented
from handoff_app.http.schemas import ID_PATTERN, MemberIn, MemberOut, PolicyIn, PolicyOut
from handoff_core.model import ID_MAX

router = APIRouter(tags=["members"])

MemberId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN)]


@router.put(
    "/members/{member_id}",
    response_model=MemberOut,
    summary="Create or update a member (admin, owner)",
    responses=documented(401, 403, 413, 422, 503),
)
async def put_member(
    member_id: MemberId, body: MemberIn, caller: CallerDep, services: ServicesDep
) -> MemberOut:
    member = await services.members.upsert(
        caller.account_id,
        member_id,
        email=body.email,
        name=body.name,
        role=body.role,
        active=body.active,
        actor_id=caller.member_id,
    )
    return MemberOut.of(member)


@router.delete(
    "/members/{member_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a member (soft delete; admin, owner)",
    responses={204: {"description": "Removed"}, **documented(401, 403, 404, 422, 503)},
)
async def delete_member(member_id: MemberId, caller: CallerDep, services: ServicesDep) -> Response:
    await services.members.remove(caller.account_id, member_id, actor_id=caller.member_id)
    return Response(status_code=204)


@router.get(
    "/members",
    response_model=list[MemberOut],
    summary="The account's current members",
    responses=documented(401, 503),
)
async def list_members(caller: CallerDep, services: ServicesDep) -> list[MemberOut]:
    members = await services.members.members(caller.account_id, actor_id=caller.member_id)
    return [MemberOut.of(m) for m in members]


@router.get(
    "/escalation-policy",
    response_model=PolicyOut,
    tags=["policy"],
    summary="The account's escalation policy (the default when none is set)",
    responses=documented(401, 503),
)
async def get_policy(caller: CallerDep, services: ServicesDep) -> PolicyOut:
    policy = await services.members.policy(caller.account_id, actor_id=caller.member_id)
    return PolicyOut.of(policy)


@router.put(
    "/escalation-policy",
    response_model=PolicyOut,
    tags=["policy"],
    summary="Replace the account's escalation policy (admin, owner)",
    description="Escalations already raised keep the policy they copied when raised.",
    responses=documented(401, 403, 413, 422, 503),
)
async def put_policy(body: PolicyIn, caller: CallerDep, services: ServicesDep) -> PolicyOut:
    raw = body.model_dump(mode="json", exclude_none=True)
    policy = await services.members.set_policy(caller.account_id, raw, actor_id=caller.member_id)
    return PolicyOut.of(policy)
