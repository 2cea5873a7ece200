"""`cloud cluster ...`: health, Raft membership and backups."""

from __future__ import annotations

import click

from shared.cli.common import CliState, CloudGroup, stale_option
from shared.cli.output import emit, emit_done, print_object, print_table

MEMBER_COLUMNS = ("raft_address", "api_address", "status")
HEALTH_FIELDS = ("status", "role", "node", "leader", "term", "commit_index", "version")


@click.group(cls=CloudGroup)
def cluster() -> None:
    """The controller cluster (cluster admin)."""


@cluster.command("health")
@click.pass_obj
def health(state: CliState) -> None:
    """Show the answering controller's view of the cluster."""
    result = state.client().cluster.health()
    if state.output != "table":
        emit(state.output, result)
        return
    print_object(result, HEALTH_FIELDS)
    members = result.get("members") or []
    if members:
        click.echo()
        print_table(members, MEMBER_COLUMNS)


@cluster.group("member", cls=CloudGroup)
def member() -> None:
    """Controllers in the Raft cluster."""


@member.command("list")
@stale_option
@click.pass_obj
def member_list(state: CliState, stale: bool) -> None:
    """List the members."""
    result = state.client().cluster.members.list(stale=stale)
    if state.output == "table":
        print_table(result.get("items") or [], MEMBER_COLUMNS)
    else:
        emit(state.output, result)


@member.command("add")
@click.argument("raft_address")
@click.option("--api-address", help="The new member's API address (host:port).")
@click.pass_obj
def member_add(state: CliState, raft_address: str, api_address: str | None) -> None:
    """Add a controller by its Raft address (host:port)."""
    emit(state.output, state.client().cluster.members.add(raft_address, api_address))


@member.command("remove")
@click.argument("raft_address")
@click.pass_obj
def member_remove(state: CliState, raft_address: str) -> None:
    """Remove a controller from the cluster."""
    state.client().cluster.members.remove(raft_address)
    emit_done(
        state.output, f"Removed member {raft_address}.", {"raft_address": raft_address, "removed": True}
    )


@cluster.group("leader", cls=CloudGroup)
def leader() -> None:
    """The Raft leader."""


@leader.command("transfer")
@click.option("--to", "to", metavar="MEMBER", help="The member to hand leadership to (raft or API address); "
              "default: the most up-to-date follower.")
@click.pass_obj
def leader_transfer(state: CliState, to: str | None) -> None:
    """Hand Raft leadership to another controller and wait until it leads."""
    result = state.client().cluster.leader.transfer(to)
    emit_done(state.output, f"{result['leader_raft']} leads term {result['term']} "
              f"(was {result['previous_leader_raft']}, {result['seconds']:.3f}s).", result)


@cluster.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.pass_obj
def backup(state: CliState, file: str) -> None:
    """Save a consistent snapshot of the cluster state to FILE (mode 0600)."""
    size = state.client().cluster.backup(file)
    emit_done(state.output, f"Wrote {size} bytes to {file}.", {"file": file, "bytes": size})
