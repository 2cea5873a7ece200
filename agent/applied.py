"""Which start/stop/reboot requests this agent already carried out, per instance (survives agent restarts).

Without it a restarted agent could reboot an instance again, or restart one its restart policy left stopped.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shared.hostidentity import write_private

FILE = "applied.json"


class AppliedActions:
    def __init__(self, data_dir: str) -> None:
        self._path = os.path.join(data_dir, FILE)
        self._seqs: dict[str, dict[str, int]] = {}
        try:
            with open(self._path, encoding="utf-8") as f:
                raw: Any = json.load(f)
            if isinstance(raw, dict):
                self._seqs = {str(k): {"generation": int(v["generation"]), "action_seq": int(v["action_seq"]),
                                       "reboot_seq": int(v["reboot_seq"]), "spec_rev": int(v.get("spec_rev", 0))}
                              for k, v in raw.items()}
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self._seqs = {}

    def get(self, instance_id: str, generation: int) -> dict[str, int] | None:
        seqs = self._seqs.get(instance_id)
        return seqs if seqs and seqs["generation"] == generation else None

    def set(self, instance_id: str, generation: int, action_seq: int, reboot_seq: int, spec_rev: int = 0) -> None:
        new = {"generation": generation, "action_seq": action_seq, "reboot_seq": reboot_seq, "spec_rev": spec_rev}
        if self._seqs.get(instance_id) != new:
            self._seqs[instance_id] = new
            self._save()

    def forget(self, instance_id: str) -> None:
        if self._seqs.pop(instance_id, None) is not None:
            self._save()

    def _save(self) -> None:
        write_private(self._path, json.dumps(self._seqs).encode())
