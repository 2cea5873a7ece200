"""Compute resource groups: hosts (and their join tokens), instances, server groups and instance types."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from shared.sdk.base import ListableResource, Page, body, query, seg
from shared.sdk.errors import CloudError
from shared.sdk.sessions import InteractiveSession, open_session

# Statuses an instance can be in (``GET /v1/instances/{instance}``); ``deleted`` is what ``wait`` reports
# once the instance is gone.
INSTANCE_STATUSES = ("pending", "scheduled", "creating", "running", "stopped", "error", "deleting")


class HostsAPI(ListableResource):
    """Compute hosts (cluster admin): join tokens, registration, listing and maintenance."""

    path = "/v1/hosts"

    def create_token(
        self,
        expires_in_seconds: int | None = None,
        zone: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A one-time join token for a new host: ``{"id", "token", "expires_at", "zone"}``.

        ``expires_in_seconds`` defaults to one hour on the server (60 s .. 30 days); ``zone`` becomes the
        host's zone unless it asks for another when it joins.
        """
        result: dict[str, Any] = self._client.request(
            "POST",
            f"{self.path}/tokens",
            json=body(expires_in_seconds=expires_in_seconds, zone=zone),
            idempotency_key=idempotency_key,
        )
        return result

    def join(self, token: str, name: str, csr: str, zone: str | None = None) -> dict[str, Any]:
        """Register a host with a join token (no other credential needed; the token is spent).

        ``csr`` is a PEM certificate signing request for the host's own key. Returns ``{"host_id", "name",
        "certificate", "ca_certificate", "controllers"}``: the signed certificate for mutual TLS and the
        controllers' agent endpoints.
        """
        result: dict[str, Any] = self._client.request(
            "POST",
            f"{self.path}/join",
            json=body(token=token, name=name, zone=zone, csr=csr),
            auth=False,
        )
        return result

    def list(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        state: str | None = None,
        **filters: Any,
    ) -> Page:
        """One page of hosts, optionally only those in ``state`` (new, up, down, fencing)."""
        return super().list(
            limit, marker, stale=stale, tenant=tenant, all_tenants=all_tenants, state=state, **filters
        )

    def get(self, host: str, *, stale: bool = False) -> dict[str, Any]:
        """A host by id or name, with its capacity, allocations and the instances placed on it."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(host)}", params=query(stale=stale)
        )
        return result

    def _flag(self, host: str, verb: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("POST", f"{self.path}/{seg(host)}/{verb}")
        return result

    def drain(self, host: str) -> dict[str, Any]:
        """Move the host's instances elsewhere and accept nothing new."""
        return self._flag(host, "drain")

    def undrain(self, host: str) -> dict[str, Any]:
        """Stop draining: the host accepts new instances again."""
        return self._flag(host, "undrain")

    def disable(self, host: str) -> dict[str, Any]:
        """Accept nothing new; the instances on it stay."""
        return self._flag(host, "disable")

    def enable(self, host: str) -> dict[str, Any]:
        """Enable a disabled host."""
        return self._flag(host, "enable")

    def delete(self, host: str) -> None:
        """Remove a host that is not up and has no instances."""
        self._client.request("DELETE", f"{self.path}/{seg(host)}")


class InstanceWaitError(CloudError):
    """``InstancesAPI.wait`` gave up: the instance went into an error state, or the time ran out."""

    def __init__(self, code: str, message: str, instance: Mapping[str, Any] | None = None) -> None:
        super().__init__(0, code, message)
        self.instance = dict(instance or {})


class InstancesAPI(ListableResource):
    """Instances (containers and VMs) of a tenant."""

    path = "/v1/instances"

    def create(
        self,
        name: str,
        image: str,
        *,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create an instance; it is placed on a host at once (409 ``no_valid_host`` says why none fits).

        ``fields`` are the other body fields: ``kind`` ("container" | "vm"), ``instance_type`` or all of
        ``vcpus``, ``memory_mb``, ``disk_gb``; ``command`` (list), ``env`` (dict), ``ports`` (list of
        ``{"host_port", "container_port", "protocol"}``), ``user_data``, ``restart_policy``, ``zone``,
        ``group``, ``required_traits``, ``tags``, ``metadata``. Fields set to None are left out.
        """
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            params=query(tenant=tenant),
            json=body(name=name, image=image, **fields),
            idempotency_key=idempotency_key,
        )
        return result

    def create_batch(
        self,
        name_prefix: str,
        count: int,
        image: str,
        *,
        tenant: str | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> builtins.list[dict[str, Any]]:
        """Create ``count`` (1..1000) instances of one spec, named ``{name_prefix}-1`` .. ``-{count}``, placed
        together: all of them or none (409 ``no_valid_host`` / ``conflict``, 403 ``quota_exceeded``).

        ``fields`` are those of :meth:`create`. Returns the instances, in name order.
        """
        result: dict[str, Any] = self._client.request(
            "POST",
            f"{self.path}/batch",
            params=query(tenant=tenant),
            json={"template": body(image=image, **fields), "name_prefix": name_prefix, "count": count},
            idempotency_key=idempotency_key,
        )
        items: builtins.list[dict[str, Any]] = result["items"]
        return items

    def list(
        self,
        limit: int | None = None,
        marker: str | None = None,
        *,
        stale: bool = False,
        tenant: str | None = None,
        all_tenants: bool = False,
        status: str | None = None,
        tag: str | None = None,
        **filters: Any,
    ) -> Page:
        """One page of instances, optionally only those with ``status`` or carrying ``tag``."""
        return super().list(
            limit, marker, stale=stale, tenant=tenant, all_tenants=all_tenants, status=status, tag=tag, **filters
        )

    def get(self, instance: str, *, stale: bool = False, tenant: str | None = None) -> dict[str, Any]:
        """An instance by id or name, with its recent events."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(instance)}", params=query(stale=stale, tenant=tenant)
        )
        return result

    def _action(self, instance: str, verb: str, tenant: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "POST", f"{self.path}/{seg(instance)}/{verb}", params=query(tenant=tenant)
        )
        return result

    def stop(self, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Ask for the instance to be stopped (``desired`` becomes "stopped")."""
        return self._action(instance, "stop", tenant)

    def start(self, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Start a stopped instance (``desired`` becomes "running")."""
        return self._action(instance, "start", tenant)

    def reboot(self, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Reboot a running instance."""
        return self._action(instance, "reboot", tenant)

    def resize(
        self,
        instance: str,
        *,
        instance_type: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        disk_gb: int | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Change the instance's size in place (its host must have room for the new size)."""
        result: dict[str, Any] = self._client.request(
            "POST",
            f"{self.path}/{seg(instance)}/resize",
            params=query(tenant=tenant),
            json=body(instance_type=instance_type, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
        )
        return result

    def update(
        self,
        instance: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Replace the instance's tags and/or metadata (only the given ones)."""
        result: dict[str, Any] = self._client.request(
            "PATCH",
            f"{self.path}/{seg(instance)}",
            params=query(tenant=tenant),
            json=body(
                tags=builtins.list(tags) if tags is not None else None,
                metadata=dict(metadata) if metadata is not None else None,
            ),
        )
        return result

    def delete(self, instance: str, *, tenant: str | None = None) -> None:
        """Delete an instance (its host's agent removes it; ``status`` is "deleting" until then)."""
        self._client.request("DELETE", f"{self.path}/{seg(instance)}", params=query(tenant=tenant))

    def logs(
        self,
        instance: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        tenant: str | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[str]:
        """The instance's output as text chunks; with ``follow`` it keeps streaming until the server ends it.

        ``read_timeout`` bounds each wait for data (default: the client timeout, or forever when following).
        """
        params = query(tenant=tenant, tail=tail, follow=follow)
        timeout = read_timeout if read_timeout is not None or follow else self._client.timeout
        with self._client.stream(
            "GET", f"{self.path}/{seg(instance)}/logs", params=params, read_timeout=timeout
        ) as response:
            yield from response.iter_text()

    def stats(self, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        """CPU and memory use right now, as measured by the instance's host."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(instance)}/stats", params=query(tenant=tenant)
        )
        return result

    def exec(
        self, instance: str, command: Sequence[str], *, timeout: float | None = None, tenant: str | None = None
    ) -> dict[str, Any]:
        """Run ``command`` in a container; returns ``{"exit_code", "output"}``."""
        result: dict[str, Any] = self._client.request(
            "POST",
            f"{self.path}/{seg(instance)}/exec",
            params=query(tenant=tenant),
            json=body(command=builtins.list(command), timeout=timeout),
        )
        return result

    def console(self, instance: str, *, tenant: str | None = None) -> dict[str, Any]:
        """A VM's serial console output so far."""
        result: dict[str, Any] = self._client.request(
            "GET", f"{self.path}/{seg(instance)}/console", params=query(tenant=tenant)
        )
        return result

    def exec_interactive(
        self, instance: str, command: Sequence[str], *, tty: bool = False, tenant: str | None = None
    ) -> InteractiveSession:
        """Start ``command`` in a container with its stdin attached (and a pseudo-terminal with ``tty``); returns
        the open session: ``send`` input, read output with ``recv``/iteration, then ``exit_code``. Close it when
        done (``with`` does)."""
        params = [("command", str(arg)) for arg in command] + [("tty", "true" if tty else "false")]
        if tenant is not None:
            params.append(("tenant", tenant))
        return open_session(self._client, f"{self.path}/{seg(instance)}/exec/ws", params)

    def console_interactive(self, instance: str, *, tenant: str | None = None) -> InteractiveSession:
        """A VM's serial console as an open session (output from now on; ``console`` has what came before)."""
        params = [("tenant", tenant)] if tenant is not None else []
        return open_session(self._client, f"{self.path}/{seg(instance)}/console/ws", params)

    def wait(
        self,
        instance: str,
        status: str | Iterable[str] = "running",
        timeout: float = 300.0,
        *,
        interval: float = 1.0,
        fail_on: Iterable[str] = ("error",),
        tenant: str | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Poll until the instance's status is one of ``status``; returns the instance.

        ``"deleted"`` in ``status`` waits until the instance is gone (then returns ``{"id"/"name",
        "status": "deleted"}``). Raises InstanceWaitError with code ``instance_error`` when it reaches a
        status in ``fail_on`` (not also wanted), with its reason, and ``wait_timeout`` after ``timeout``
        seconds. ``on_change`` is called with the instance whenever its status or reason changed.
        """
        wanted = {status} if isinstance(status, str) else set(status)
        failing = set(fail_on) - wanted
        deadline = clock() + timeout
        seen: tuple[str, str] | None = None
        while True:
            try:
                current = self.get(instance, tenant=tenant)
            except CloudError as err:
                if err.status != 404 or "deleted" not in wanted:
                    raise
                current = {"name": instance, "status": "deleted", "status_reason": ""}
            state = (str(current.get("status")), str(current.get("status_reason") or ""))
            if state != seen:
                seen = state
                if on_change is not None:
                    on_change(current)
            if state[0] in wanted:
                return current
            if state[0] in failing:
                reason = f": {state[1]}" if state[1] else ""
                raise InstanceWaitError(
                    "instance_error", f"instance {instance} is {state[0]}{reason}", current
                )
            remaining = deadline - clock()
            if remaining <= 0:
                raise InstanceWaitError(
                    "wait_timeout",
                    f"instance {instance} is still {state[0]} after {timeout:g}s "
                    f"(waiting for {' or '.join(sorted(wanted))})",
                    current,
                )
            self._client._sleep(min(interval, remaining))


class ServerGroupsAPI(ListableResource):
    """Server groups: instances of an affinity group share a host, of an anti-affinity group never do."""

    path = "/v1/server-groups"

    def create(
        self, name: str, policy: str, *, tenant: str | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create a group with ``policy`` "affinity" or "anti-affinity"."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            params=query(tenant=tenant),
            json={"name": name, "policy": policy},
            idempotency_key=idempotency_key,
        )
        return result

    def delete(self, name: str, *, tenant: str | None = None) -> None:
        """Delete a group without members."""
        self._client.request("DELETE", f"{self.path}/{seg(name)}", params=query(tenant=tenant))


class InstanceTypesAPI(ListableResource):
    """Instance types: named sizes (the built-in ones and those the cluster admin defined)."""

    path = "/v1/instance-types"

    def create(
        self, name: str, vcpus: int, memory_mb: int, disk_gb: int, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Define an instance type (cluster admin)."""
        result: dict[str, Any] = self._client.request(
            "POST",
            self.path,
            json={"name": name, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb},
            idempotency_key=idempotency_key,
        )
        return result

    def delete(self, name: str) -> None:
        """Delete an instance type (cluster admin; the built-in ones cannot be deleted)."""
        self._client.request("DELETE", f"{self.path}/{seg(name)}")
