"""Shared CLI plumbing: state passed to commands, command classes and reusable options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from shared.sdk.base import ListableResource, Page
from shared.sdk.client import CloudClient
from shared.sdk.config import Settings, resolve

F = TypeVar("F", bound=Callable[..., Any])
ClientFactory = Callable[[Settings], CloudClient]
OUTPUT_FORMATS = ("table", "json", "yaml")


def default_client_factory(settings: Settings) -> CloudClient:
    """Build the real SDK client for the resolved settings."""
    return CloudClient(settings.url, api_key=settings.api_key, token=settings.token)


@dataclass
class CliState:
    """What the global options chose, plus the (lazily built) client; ``ctx.obj`` of every command."""

    client_factory: ClientFactory = default_client_factory
    profile: str | None = None
    url: str | None = None
    output: str = "table"
    _client: CloudClient | None = field(default=None, repr=False)

    def settings(self, must_exist: bool = True) -> Settings:
        """Resolve profile, environment and the global ``--url``."""
        return resolve(self.profile, url=self.url, must_exist=must_exist)

    def client(self) -> CloudClient:
        """The client for this invocation, built on first use."""
        if self._client is None:
            self._client = self.client_factory(self.settings())
        return self._client

    def close(self) -> None:
        """Close the client if one was built."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _store_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.ensure_object(CliState).output = value
    return value


def output_param() -> click.Option:
    """``-o/--output``: accepted on the root group and after every command."""
    return click.Option(
        ["-o", "--output"],
        type=click.Choice(OUTPUT_FORMATS),
        default=None,
        expose_value=False,
        callback=_store_output,
        help="Output format (default: table).",
    )


class CloudCommand(click.Command):
    """A command that also accepts ``-o/--output`` after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(output_param())


class CloudGroup(click.Group):
    """A group whose commands are CloudCommands and whose subgroups are CloudGroups."""

    command_class = CloudCommand
    group_class = type


@dataclass(frozen=True)
class ListArgs:
    """The pagination and scope options of a list command."""

    limit: int | None = None
    marker: str | None = None
    fetch_all: bool = False
    stale: bool = False
    tenant: str | None = None
    all_tenants: bool = False

    def fetch(self, resource: ListableResource, **filters: Any) -> Page:
        """One page, or with ``--all`` every page merged into one (``next_marker`` null)."""
        scope: dict[str, Any] = {"stale": self.stale, "tenant": self.tenant, "all_tenants": self.all_tenants}
        if self.fetch_all:
            items = resource.list_all(self.limit, self.marker, **scope, **filters)
            return {"items": items, "next_marker": None}
        return resource.list(self.limit, self.marker, **scope, **filters)


def list_options(tenant_scoped: bool = True) -> Callable[[F], F]:
    """Add --limit/--marker/--all/--stale (and --tenant/--all-tenants); pass them as ``list_args``."""
    names = ("limit", "marker", "fetch_all", "stale", "tenant", "all_tenants")

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            return func(*args, list_args=ListArgs(**values), **kwargs)

        options = [
            click.option("--limit", type=click.IntRange(1, 1000), help="Items per page (1..1000)."),
            click.option("--marker", help="Start after this id/name (the previous page's next_marker)."),
            click.option("--all", "fetch_all", is_flag=True, help="Follow next_marker to list everything."),
            stale_option,
        ]
        if tenant_scoped:
            options += [
                tenant_option,
                click.option("--all-tenants", is_flag=True, help="List across tenants (cluster admin)."),
            ]
        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        result: F = decorated
        return result

    return decorate


stale_option = click.option("--stale", is_flag=True, help="Allow a follower to answer from its own state.")
tenant_option = click.option("--tenant", help="Act in this tenant (id or name; cluster admin).")


def read_secret(
    value: str | None, from_stdin: bool, prompt: str, *, confirm: bool = True, flag: str = "--value"
) -> str:
    """A secret from an option, from stdin (one trailing newline stripped) or a hidden prompt."""
    if value is not None and from_stdin:
        raise click.UsageError(f"use either {flag} or {flag}-stdin, not both")
    if from_stdin:
        data = sys.stdin.read()
        for ending in ("\r\n", "\n"):
            if data.endswith(ending):
                return data[: -len(ending)]
        return data
    if value is not None:
        return value
    result: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return result
