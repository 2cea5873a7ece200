"""The LVM backend's parsing and command lines against recorded ``lvs`` output (real LVM runs in test_backends
where device-mapper exists; this part runs everywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storaged.backends.base import InUse, InvalidRequest
from storaged.backends.lvm import LvmBackend, parse_lvs

LVS = """\
  tc-pool|4290772992|thecloud|twi-aotz--
  tcv-a|67108864|thecloud,tc_kind_filesystem,tc_ready|Vwi-aotz--
  tcv-b|134217728|thecloud,tc_kind_block,tc_ready|Vwi-aotz--
  tcv-half|67108864|thecloud,tc_kind_filesystem|Vwi-aotz--
  tcs-s1|67108864|thecloud,tc_kind_filesystem,tc_vol_a|Vwi---tz-k
  root|10737418240||-wi-ao----
"""


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> str:
        self.calls.append(args)
        if args[0] == "lvs" and "lv_size,data_percent" in args:
            return "  4290772992|25.00\n"
        return LVS if args[0] == "lvs" else ""


def test_parse_lvs_reads_names_sizes_and_tags() -> None:
    lvs = {lv.name: lv for lv in parse_lvs(LVS)}
    assert lvs["tcv-a"].size == 64 << 20 and "tc_ready" in lvs["tcv-a"].tags
    assert lvs["tcs-s1"].tag_value("tc_vol_") == "a"
    assert lvs["root"].tags == frozenset()


def test_lists_only_finished_volumes_and_owned_snapshots(tmp_path: Path) -> None:
    backend = LvmBackend("vg0", tmp_path / "mounts", runner=Recorder())
    volumes = {v.volume_id: v for v in backend.list_volumes()}
    assert set(volumes) == {"a", "b"}  # tcv-half lacks tc_ready: a crash left it
    assert volumes["a"].path == str(tmp_path / "mounts" / "a") and volumes["a"].size_gb == 0.0625
    assert (volumes["b"].path, volumes["b"].format, volumes["b"].size_gb) == ("/dev/vg0/tcv-b", "raw", 0.125)
    assert [(s.snapshot_id, s.volume_id, s.kind) for s in backend.list_snapshots()] == [("s1", "a", "filesystem")]
    capacity = backend.capacity()
    assert (capacity.total_gb, capacity.free_gb) == (3.996, 2.997)


def test_commands_for_grow_and_refusals(tmp_path: Path) -> None:
    runner = Recorder()
    backend = LvmBackend("vg0", tmp_path / "mounts", runner=runner)
    backend.resize("b", 0.25)
    assert ["lvextend", "-q", "-L", "256m", "vg0/tcv-b"] in runner.calls
    with pytest.raises(InvalidRequest, match="shrinking"):
        backend.resize("b", 0.0625)
    with pytest.raises(InUse, match="volume has 1 snapshot"):
        backend.delete("a")
    backend.delete_snapshot("s1")
    assert runner.calls[-1] == ["lvremove", "-f", "-q", "vg0/tcs-s1"]
    every = [c for c in runner.calls if c[0] == "lvs"]
    assert all({"--noheadings", "--nosuffix"} <= set(c) and c[c.index("--units") + 1] == "b" for c in every)
