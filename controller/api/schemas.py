"""Request and response bodies (pydantic). Requests are strict: wrong types and unknown fields are 422."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Role = Literal["admin", "developer", "viewer"]
Address = Annotated[str, Field(min_length=3, max_length=260, pattern=r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")]
QuotaValue = Annotated[int, Field(ge=-1, le=10**12)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests ---------------------------------------------------------------------------------------
class LoginRequest(Request):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class TenantCreate(Request):
    name: Name
    description: Annotated[str, Field(max_length=1024)] = ""


class UserCreate(Request):
    name: Name
    role: Role
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None
    tenant: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class UserUpdate(Request):
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None
    role: Role | None = None
    disabled: bool | None = None


class KeyCreate(Request):
    name: Name
    user: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    expires_in_seconds: Annotated[int, Field(ge=60, le=10 * 365 * 86400)] | None = None


class SecretCreate(Request):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
    value: Annotated[str, Field(max_length=65536)]


class SecretRotate(Request):
    value: Annotated[str, Field(max_length=65536)]


class QuotaLimits(Request):
    instances: QuotaValue | None = None
    vcpus: QuotaValue | None = None
    memory_mb: QuotaValue | None = None
    volumes: QuotaValue | None = None
    volume_gb: QuotaValue | None = None
    buckets: QuotaValue | None = None
    public_ips: QuotaValue | None = None
    secrets: QuotaValue | None = None


class QuotaUpdate(Request):
    limits: QuotaLimits


class MemberAdd(Request):
    raft_address: Address
    api_address: Address | None = None


class LeaderTransfer(Request):
    to: Annotated[str, Field(min_length=1, max_length=260)] | None = None  # a member's raft or API address


# -- responses --------------------------------------------------------------------------------------
class ErrorDetail(Response):
    code: str
    message: str
    request_id: str


class ErrorBody(Response):
    error: ErrorDetail


class Tenant(Response):
    id: str
    name: str
    description: str
    created_at: str


class User(Response):
    id: str
    name: str
    tenant_id: str
    role: str
    disabled: bool
    created_at: str


class ApiKey(Response):
    id: str
    name: str
    user_id: str
    tenant_id: str
    created_at: str
    expires_at: str | None
    revoked: bool
    secret: str | None = Field(default=None, description="the full API key; only in the create response")


class Secret(Response):
    name: str
    tenant_id: str
    version: int
    created_at: str
    updated_at: str
    created_by: str


class SecretValue(Response):
    name: str
    version: int
    value: str


class Quota(Response):
    tenant_id: str
    limits: dict[str, int]
    usage: dict[str, int]


class AuditRecord(Response):
    id: str
    time: str
    actor: str
    tenant_id: str | None
    action: str
    target: str
    outcome: Literal["success", "denied", "failed"]
    status: int
    request_id: str


class Member(Response):
    raft_address: str
    api_address: str | None
    status: str


class LeaderTransferred(Response):
    leader: str | None  # the new leader's API address
    leader_raft: str
    previous_leader_raft: str | None
    term: int
    seconds: float


class Health(Response):
    status: Literal["ok", "degraded"]
    version: str  # of the thecloud wheel this controller runs
    role: Literal["leader", "follower", "candidate"]
    leader: str | None
    term: int
    commit_index: int
    members: list[Member]


class LoginResponse(Response):
    token: str
    token_type: str
    expires_at: str


class Whoami(Response):
    user: User
    tenant: Tenant
    role: str


class RoleInfo(Response):
    name: str
    description: str


class TenantPage(Response):
    items: list[Tenant]
    next_marker: str | None


class UserPage(Response):
    items: list[User]
    next_marker: str | None


class ApiKeyPage(Response):
    items: list[ApiKey]
    next_marker: str | None


class SecretPage(Response):
    items: list[Secret]
    next_marker: str | None


class AuditPage(Response):
    items: list[AuditRecord]
    next_marker: str | None


class MemberList(Response):
    items: list[Member]


class RoleList(Response):
    items: list[RoleInfo]
