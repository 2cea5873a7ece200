"""Hosts: one-time join tokens, registration, inventory, state (up/down/fencing) and maintenance flags.

Liveness is not replicated: the leader keeps heartbeats in memory and proposes only state changes.
"""

from __future__ import annotations

import hmac
from typing import Any

from controller.state import placements
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.registry import handles

HOST_STATES = ("new", "up", "down", "fencing")
HOST_FLAGS = ("enabled", "draining")
EXPIRE_EVERY = 1_000  # revisions between two clean-ups of old join tokens


def get_host(data: StateData, host_id: str) -> dict[str, Any]:
    host = data.hosts.get(host_id)
    if host is None:
        raise not_found("host", host_id)
    return host


def touch(data: StateData, host: dict[str, Any]) -> None:
    """Marks the host's desired state as changed, so its agent's watch returns."""
    host["desired_rev"] = data.revision


@handles("host.token.create")
def create_token(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    if args["id"] in data.join_tokens:
        raise conflict(f"join token {args['id']!r} already exists")
    if data.revision % EXPIRE_EVERY == 0:  # a scan of every token: not on each of 10,000 tokens made in a row
        _expire_tokens(data, ctx["time"])
    token = {"id": args["id"], "secret_hash": args["secret_hash"], "expires_at": args["expires_at"],
             "zone": args.get("zone"), "created_at": ctx["time"], "created_by": ctx.get("actor_name", ""),
             "used_by": None}
    data.join_tokens[args["id"]] = token
    return {k: v for k, v in token.items() if k != "secret_hash"}


def _expire_tokens(data: StateData, now: float) -> None:
    """Keeps the table small: tokens expired for a day are dropped (their refusal message changes only)."""
    for token_id in [t for t, tok in data.join_tokens.items() if tok["expires_at"] < now - 86_400]:
        del data.join_tokens[token_id]


@handles("host.join")
def join(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Consumes a join token and registers the host. Every refusal says exactly why."""
    token = data.join_tokens.get(args["token_id"])
    if token is None or not hmac.compare_digest(token["secret_hash"], args["secret_hash"]):
        raise ApplyError(401, "invalid_join_token", "join token is not valid for this cluster")
    if token["used_by"] is not None:
        raise ApplyError(401, "join_token_used", "join token was already used; create a new one")
    if token["expires_at"] < ctx["time"]:
        raise ApplyError(401, "join_token_expired", "join token has expired; create a new one")
    name = args["name"]
    if name in data.host_names:
        raise conflict(f"a host named {name!r} is already registered; delete it first or pick another name")
    host_id = args["host_id"]
    if host_id in data.hosts:
        raise conflict(f"host id {host_id!r} already exists")
    now = ctx["time"]
    host = {
        "id": host_id, "name": name, "zone": args.get("zone") or token.get("zone") or "default",
        "state": "new", "state_reason": "registered; waiting for the first heartbeat",
        "enabled": True, "draining": False, "driver": "", "kinds": [], "traits": [],
        "inventory": {}, "used": {}, "instance_count": 0, "agent_address": "", "agent_version": "",
        "created_at": now, "state_changed_at": now, "desired_rev": data.revision,
    }
    data.hosts[host_id] = host
    data.host_names[name] = host_id
    token["used_by"] = host_id
    return dict(host)


@handles("host.update")
def update_host(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """What the agent reports that rarely changes: inventory, driver kinds, traits, address, version."""
    host = get_host(data, args["host_id"])
    for key in ("driver", "kinds", "traits", "inventory", "agent_address", "agent_version", "zone", "migration"):
        if key in args:
            host[key] = args[key]
    return dict(host)


@handles("host.set_state")
def set_state(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """up/fencing/down. Going down moves the host's restartable instances (the proposer chose the hosts)."""
    host = get_host(data, args["host_id"])
    state = args["state"]
    if state not in HOST_STATES:
        raise ApplyError(400, "bad_request", f"unknown host state {state!r}")
    if args.get("expect") is not None and host["state"] != args["expect"]:
        raise conflict(f"host {host['name']} is {host['state']}, not {args['expect']}")
    host["state"] = state
    host["state_reason"] = args.get("reason", "")
    host["state_changed_at"] = ctx["time"]
    moved: dict[str, str | None] = {}
    if state == "down":
        moved = placements.evacuate(data, host, args.get("moves", {}), f"host {host['name']} went down", ctx)
    touch(data, host)
    return {"host": dict(host), "moved": moved}


@handles("host.set_flags")
def set_flags(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    host = get_host(data, args["host_id"])
    for flag in HOST_FLAGS:
        if flag in args:
            host[flag] = bool(args[flag])
    return dict(host)


@handles("host.delete")
def delete_host(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    host = get_host(data, args["host_id"])
    on_host = [i["name"] for i in placements.instances_on(data, host["id"])]
    if on_host:
        raise conflict(f"host {host['name']} still has {len(on_host)} instance(s) (e.g. {on_host[0]!r}); "
                       "drain it first")
    if host["state"] == "up":
        raise conflict(f"host {host['name']} is up; disable and stop its agent first (or wait until it is down)")
    del data.hosts[host["id"]]
    data.host_names.pop(host["name"], None)
