"""Level-triggered reconciliation of desired vs. actual instances. Each pass returns a readable reason.

Order matters for fencing: everything that must go (moved away, older generation, deleted) is removed
first; if any removal fails, nothing new is started in that pass, so an instance never runs twice.
Without desired state (no controller reachable since start) nothing is touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent import image_prune
from agent.applied import AppliedActions
from agent.drivers.base import (
    RUNNING,
    ActualInstance,
    Driver,
    DriverError,
    InstanceSpec,
    Nic,
    NotSupported,
    PortMapping,
    VolumeMount,
)
from agent.images import ImageCache
from shared.netmodel import port_names

log = logging.getLogger("thecloud.agent.reconcile")
CREATE_RETRY_SECONDS = 30.0


@dataclass
class Desired:
    rev: int
    state: str
    instances: dict[str, dict[str, Any]]
    incoming: dict[str, dict[str, Any]] = field(default_factory=dict)  # live migrations arriving here


@dataclass
class Pass:
    reports: list[dict[str, Any]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def spec_of(item: dict[str, Any]) -> InstanceSpec:
    return InstanceSpec(
        id=item["id"], name=item["name"], generation=int(item["generation"]), kind=item["kind"],
        image=item["image"], vcpus=int(item["vcpus"]), memory_mb=int(item["memory_mb"]),
        disk_gb=int(item["disk_gb"]), command=tuple(item.get("command") or ()), env=dict(item.get("env") or {}),
        ports=tuple(PortMapping(int(p["host_port"]), int(p["container_port"]), p.get("protocol", "tcp"))
                    for p in item.get("ports") or ()),
        user_data=item.get("user_data") or "", restart_policy=item.get("restart_policy") or "always",
        tenant_id=item.get("tenant_id") or "",
        volumes=tuple(VolumeMount(volume_id=str(v["volume_id"]), kind=str(v.get("kind") or "filesystem"),
                                  path=str(v.get("path") or ""), mount_path=str(v.get("mount_path") or ""),
                                  format=str(v.get("format") or "raw"), read_only=bool(v.get("read_only")))
                      for v in item.get("volumes") or ()),
        nic=_nic_of(item.get("nic")))


def _nic_of(raw: Any) -> Nic | None:
    if not isinstance(raw, dict) or not raw.get("port_id"):
        return None
    return Nic(port_id=str(raw["port_id"]), mac=str(raw.get("mac") or ""), ip=str(raw.get("ip") or ""),
               gateway=str(raw.get("gateway") or ""), tap=port_names(str(raw["port_id"])).tap)


class Reconciler:
    def __init__(self, driver: Driver, applied: AppliedActions) -> None:
        self.driver = driver
        self.applied = applied
        self._failed_at: dict[tuple[str, int], tuple[float, str]] = {}
        self.progress: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
        self.images: ImageCache | None = None  # VMs' images (None: specs go to the driver as they are)
        self.image_grace = image_prune.DEFAULT_GRACE_SECONDS  # an unused cached image is kept this long
        self.prune_interval = image_prune.PRUNE_INTERVAL_SECONDS
        self._pruned_at = -math.inf

    async def run_once(self, desired: Desired | None) -> tuple[str, list[dict[str, Any]]]:
        actual = {a.id: a for a in await self.driver.list_instances()}
        if desired is None:
            return f"no desired state yet; leaving {len(actual)} instance(s) as they are", []
        step = Pass()
        await self._remove_unwanted(desired, actual, step)
        if step.failed:
            return (f"could not remove {', '.join(step.failed)}; starting nothing new until they are gone",
                    step.reports)
        await self._announce_creates(desired, actual)
        for item in desired.instances.values():
            if item.get("migration"):  # leaving live (agent/migrations.py): never (re)created or changed here
                continue
            await self._converge(item, actual.get(item["id"]), step)
        await self._prune_images(desired, actual, step)
        reason = "; ".join(step.done + step.failed) or f"{len(desired.instances)} instance(s) as desired"
        return reason, step.reports

    async def _remove_unwanted(self, desired: Desired, actual: dict[str, ActualInstance], step: Pass) -> None:
        for instance in list(actual.values()):
            want = desired.instances.get(instance.id)
            if want is not None and want["generation"] == instance.generation and want["desired"] != "deleted":
                continue
            arriving = desired.incoming.get(instance.id)
            if arriving is not None and int(arriving["generation"]) == instance.generation:
                continue  # live-migrated here: it becomes this host's once the controller flips it
            why = "deleted" if want is not None and want["desired"] == "deleted" else "moved away or replaced"
            try:
                await self.driver.delete(instance.id)
            except DriverError as exc:
                step.failed.append(f"{instance.id} ({exc})")
                continue
            del actual[instance.id]
            self.applied.forget(instance.id)
            step.done.append(f"removed {instance.id} g{instance.generation} ({why})")
            if want is not None and want["desired"] == "deleted":
                step.reports.append({"id": instance.id, "generation": instance.generation, "status": "gone"})

    async def _announce_creates(self, desired: Desired, actual: dict[str, ActualInstance]) -> None:
        """One "creating" progress report for everything this pass will create (one Raft write, not one per
        instance); instances still backing off after a failed create are not announced."""
        if self.progress is None:
            return
        now = time.monotonic()
        announce = []
        for item in desired.instances.values():
            key = (item["id"], int(item["generation"]))
            failed = self._failed_at.get(key)
            if (item["desired"] == "running" and item["id"] not in actual and not item.get("migration")
                    and (failed is None or now - failed[0] >= CREATE_RETRY_SECONDS)):
                announce.append({"id": key[0], "generation": key[1], "status": "creating"})
        if announce:
            await self.progress(announce)

    async def _converge(self, item: dict[str, Any], instance: ActualInstance | None, step: Pass) -> None:
        ident, generation = item["id"], int(item["generation"])
        if item["desired"] == "deleted":
            step.reports.append({"id": ident, "generation": generation, "status": "gone"})
            return
        if instance is None:
            if item["desired"] == "running":
                await self._create(item, step)
            else:
                step.reports.append({"id": ident, "generation": generation, "status": "stopped",
                                     "reason": "not created while stopped"})
            return
        seqs = self.applied.get(ident, generation)
        spec_rev = int(item.get("spec_rev") or 0)
        if seqs is None:  # adopted after an agent restart: what it asked for so far is already done
            seqs = {"action_seq": item["action_seq"], "reboot_seq": item["reboot_seq"], "spec_rev": spec_rev}
        acted = True
        try:
            if spec_rev > seqs.get("spec_rev", 0):
                try:
                    await self.driver.update(spec_of(item))
                    step.done.append(f"updated {item['name']} (spec revision {spec_rev})")
                except NotSupported as exc:  # not retried: the instance keeps running as it was
                    step.failed.append(f"update of {item['name']} not applied: {exc}")
            elif item["desired"] == "stopped" and instance.state == RUNNING:
                await self.driver.stop(ident)
                step.done.append(f"stopped {item['name']}")
            elif item["desired"] == "running" and instance.state != RUNNING and item["action_seq"] > seqs[
                    "action_seq"]:
                await self.driver.start(ident)
                step.done.append(f"started {item['name']}")
            elif item["desired"] == "running" and item["reboot_seq"] > seqs["reboot_seq"]:
                await self.driver.reboot(ident)
                step.done.append(f"rebooted {item['name']}")
            else:
                acted = False
        except DriverError as exc:
            step.failed.append(f"{item['name']}: {exc}")
            step.reports.append({"id": ident, "generation": generation, "status": "error", "reason": str(exc)})
            return
        self.applied.set(ident, generation, item["action_seq"], item["reboot_seq"], spec_rev)
        step.reports.append(await self._observe(ident, generation) if acted else _report(instance))

    async def _create(self, item: dict[str, Any], step: Pass) -> None:
        ident, generation = item["id"], int(item["generation"])
        failed = self._failed_at.get((ident, generation))
        if failed is not None and (wait := CREATE_RETRY_SECONDS - (time.monotonic() - failed[0])) > 0:
            step.failed.append(f"create {item['name']} failed; next try in {wait:.0f}s")
            step.reports.append({"id": ident, "generation": generation, "status": "error", "reason": failed[1]})
            return
        spec = self._with_image(item, spec_of(item), step)
        if spec is None:
            return
        try:
            await self.driver.create(spec)
        except DriverError as exc:
            self._failed_at[(ident, generation)] = (time.monotonic(), str(exc))
            step.failed.append(f"create {item['name']}: {exc}")
            step.reports.append({"id": ident, "generation": generation, "status": "error", "reason": str(exc)})
            return
        self._failed_at.pop((ident, generation), None)
        self.applied.set(ident, generation, item["action_seq"], item["reboot_seq"], int(item.get("spec_rev") or 0))
        step.done.append(f"created {item['name']} g{generation}")
        step.reports.append(await self._observe(ident, generation))

    def _with_image(self, item: dict[str, Any], spec: InstanceSpec, step: Pass) -> InstanceSpec | None:
        """A VM's spec with its cached image files; None while they are being fetched (or that failed)."""
        if self.images is None or item.get("kind") != "vm" or not item.get("vm_image"):
            return spec
        ident, generation = item["id"], int(item["generation"])
        prepared = self.images.prepare(item["vm_image"])
        if prepared.error:
            step.failed.append(f"create {item['name']}: {prepared.error}")
            step.reports.append({"id": ident, "generation": generation, "status": "error",
                                 "reason": prepared.error})
            return None
        if prepared.pending:
            reason = f"fetching image {item['vm_image'].get('name')}: {', '.join(prepared.pending)}"
            step.done.append(f"{item['name']}: {reason}")
            step.reports.append({"id": ident, "generation": generation, "status": "creating", "reason": reason})
            return None
        return dataclasses.replace(spec, **prepared.paths)

    async def _prune_images(self, desired: Desired, actual: dict[str, ActualInstance], step: Pass) -> None:
        """Now and then: cached VM image blobs no instance here uses any more go after ``image_grace``."""
        if self.images is None or time.monotonic() - self._pruned_at < self.prune_interval:
            return
        used = image_prune.in_use(desired.instances, actual)
        if used is None:  # an instance here the desired state does not list: its image is unknown
            return
        self._pruned_at = time.monotonic()
        removed = await asyncio.to_thread(image_prune.prune, self.images.blobs, used, self.images.busy,
                                          self.image_grace)
        if removed:
            step.done.append(f"pruned {len(removed)} unused image blob(s) "
                             f"({', '.join(p.sha256[:12] for p in removed)})")

    async def _observe(self, ident: str, generation: int) -> dict[str, Any]:
        for instance in await self.driver.list_instances():
            if instance.id == ident and instance.generation == generation:
                return _report(instance)
        return {"id": ident, "generation": generation, "status": "error", "reason": "vanished after creation"}


def _report(instance: ActualInstance) -> dict[str, Any]:
    report: dict[str, Any] = {"id": instance.id, "generation": instance.generation, "status": instance.state,
              "reason": instance.detail if instance.state != RUNNING else "", "addresses": list(instance.addresses)}
    if instance.netns:
        report["netns"] = instance.netns
    return report
