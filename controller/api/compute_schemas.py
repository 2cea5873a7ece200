"""Request and response bodies for hosts, instances, server groups and instance types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from controller.api.schemas import Name, Request, Response

NAME_MAX_LENGTH = 64  # of schemas.Name
# only bounded here: the service checks a container's reference against Docker's grammar (shared/imageref.py)
# and a VM's against the registered images, each refusing with a 400 that names the problem
ImageRef = Annotated[str, Field(min_length=1, max_length=1024)]
Zone = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Trait = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.-]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
NetRef = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
IPv4Text = Annotated[str, Field(min_length=7, max_length=15, pattern=r"^\d{1,3}(\.\d{1,3}){3}$")]
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class HostTokenCreate(Request):
    expires_in_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 3600
    zone: Zone | None = None


class HostToken(Response):
    id: str
    token: str
    expires_at: str
    zone: str | None = None


class HostJoin(Request):
    token: Annotated[str, Field(min_length=1, max_length=256)]
    name: Name
    zone: Zone | None = None
    csr: Annotated[str, Field(min_length=1, max_length=16384)]


class HostJoined(Response):
    host_id: str
    name: str
    certificate: str
    ca_certificate: str
    controllers: list[str]


class Host(Response):
    id: str
    name: str
    zone: str
    state: str
    state_reason: str
    enabled: bool
    draining: bool
    driver: str
    kinds: list[str]
    inventory: dict[str, Any]
    allocated: dict[str, int]
    instance_count: int


class HostPage(Response):
    items: list[Host]
    next_marker: str | None


class PortMapping(Request):
    host_port: Annotated[int, Field(ge=1, le=65535)]
    container_port: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["tcp", "udp"] = "tcp"


class InstanceTemplate(Request):
    """Everything of InstanceCreate but the name (the body of a batch's ``template``)."""

    image: ImageRef
    kind: Literal["container", "vm"] = "container"
    instance_type: Name | None = None
    vcpus: Annotated[int, Field(ge=1, le=512)] | None = None
    memory_mb: Annotated[int, Field(ge=16, le=4 * 1024 * 1024)] | None = None
    disk_gb: Annotated[int, Field(ge=1, le=65536)] | None = None
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    env: Annotated[dict[EnvName, Annotated[str, Field(max_length=8192)]], Field(max_length=128)] = {}
    ports: Annotated[list[PortMapping], Field(max_length=32)] = []
    user_data: Annotated[str, Field(max_length=65536)] = ""
    restart_policy: Literal["always", "on-failure", "never"] = "always"
    zone: Zone | None = None
    group: Name | None = None
    required_traits: Annotated[list[Trait], Field(max_length=32)] = []
    # the instance's network port: a subnet (name or id; default: the tenant's default VPC) and security
    # groups of its VPC (names or ids; default: the VPC's default group)
    subnet: NetRef | None = None
    security_groups: Annotated[list[NetRef], Field(max_length=16)] = []
    tags: Annotated[list[Tag], Field(max_length=50)] = []
    metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]],
                        Field(max_length=64)] = {}

    @model_validator(mode="after")
    def _unique_host_ports(self) -> InstanceTemplate:
        seen = [(p.host_port, p.protocol) for p in self.ports]
        if len(seen) != len(set(seen)):
            raise ValueError("ports: a host port appears twice")
        return self


class VolumeMount(Request):
    volume: Annotated[str, Field(min_length=1, max_length=64)]
    mount_path: Annotated[str, Field(min_length=2, max_length=1024, pattern=r"^/")] | None = None


class InstanceCreate(InstanceTemplate):
    name: Name
    ip: IPv4Text | None = None  # a fixed address in the subnet (default: the lowest free one)
    volumes: Annotated[list[VolumeMount], Field(max_length=16)] = []


class InstanceBatchCreate(Request):
    template: InstanceTemplate
    name_prefix: Name
    count: Annotated[int, Field(ge=1, le=1000)]

    @model_validator(mode="after")
    def _names_fit(self) -> InstanceBatchCreate:
        if len(f"{self.name_prefix}-{self.count}") > NAME_MAX_LENGTH:
            raise ValueError(f"name_prefix: too long for {self.count} names (`{{prefix}}-{{i}}` must be at most "
                             f"{NAME_MAX_LENGTH} characters)")
        return self


class InstanceUpdate(Request):
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]],
                        Field(max_length=64)] | None = None


class InstanceResize(Request):
    instance_type: Name | None = None
    vcpus: Annotated[int, Field(ge=1, le=512)] | None = None
    memory_mb: Annotated[int, Field(ge=16, le=4 * 1024 * 1024)] | None = None
    disk_gb: Annotated[int, Field(ge=1, le=65536)] | None = None

    @model_validator(mode="after")
    def _something(self) -> InstanceResize:
        if all(v is None for v in (self.instance_type, self.vcpus, self.memory_mb, self.disk_gb)):
            raise ValueError("give instance_type or at least one of vcpus, memory_mb, disk_gb")
        return self


class Instance(Response):
    id: str
    name: str
    tenant_id: str
    kind: str
    image: str
    status: str
    status_reason: str
    desired: str
    generation: int
    host: str | None
    vcpus: int
    memory_mb: int
    disk_gb: int


class InstancePage(Response):
    items: list[Instance]
    next_marker: str | None


class ExecRequest(Request):
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=64)]
    timeout: Annotated[float, Field(gt=0, le=300)] = 30.0


class ExecResult(Response):
    exit_code: int
    output: str


class ServerGroupCreate(Request):
    name: Name
    policy: Literal["affinity", "anti-affinity"]


class ServerGroup(Response):
    name: str
    policy: str
    members: list[str]


class ServerGroupPage(Response):
    items: list[ServerGroup]
    next_marker: str | None


class InstanceTypeCreate(Request):
    name: Name
    vcpus: Annotated[int, Field(ge=1, le=512)]
    memory_mb: Annotated[int, Field(ge=16, le=4 * 1024 * 1024)]
    disk_gb: Annotated[int, Field(ge=1, le=65536)]


class InstanceType(Response):
    name: str
    vcpus: int
    memory_mb: int
    disk_gb: int


class InstanceTypePage(Response):
    items: list[InstanceType]
    next_marker: str | None
