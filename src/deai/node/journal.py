"""A node's journal under ``data_dir/journal``: what a restarted node resumes from.

* ``<spec_hash>.json``: every job the node takes part in (the requester's signed
  ``OpenJob`` and its sender), replayed at start;
* ``<spec_hash>.rounds.json``: a validator's last closed round and its model (by digest
  in the artifact store);
* ``<spec_hash>.settle.json``: a validator's settlement duties (phase, committed result,
  salt), so it reveals after a restart what it committed before the crash.

Every write but the ``OpenJob``'s is atomic (a crash mid-write leaves the previous state).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor

from deai.errors import DeaiError
from deai.job.spec import JobSpec
from deai.node.messages import OpenJob, decode, encode
from deai.node.store import ArtifactStore

log = logging.getLogger("deai.node")


class NodeJournal:
    def __init__(self, directory: Path, store: ArtifactStore) -> None:
        self.dir = directory
        self.store = store

    def record_open(self, sender: str, msg: OpenJob) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{msg.spec_hash}.json"
        path.write_text(json.dumps({"sender": sender, "body": encode(msg).hex()}))

    def write(self, spec: JobSpec, kind: str, data: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{spec.spec_hash()}.{kind}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)  # atomic: a crash mid-write leaves the previous state

    def read(self, spec: JobSpec, kind: str) -> Any:
        path = self.dir / f"{spec.spec_hash()}.{kind}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def record_round(self, spec: JobSpec, round_: int, params: Tensor) -> None:
        """A validator's model after each round it closed (by digest in the store)."""
        from deai.learning.params import vector_bytes

        digest = self.store.put(vector_bytes(params))
        self.write(spec, "rounds", {"round": round_, "params": digest})

    def resume(self, spec: JobSpec) -> tuple[int, Tensor] | None:
        """Where a restarted validator goes on: the last round it closed, and its model."""
        from deai.learning.params import vector_from_bytes
        from deai.node.base import model_for

        saved = self.read(spec, "rounds")
        if not isinstance(saved, dict):
            return None
        try:
            params = vector_from_bytes(self.store.get(str(saved["params"])), model_for(spec).dim)
        except (KeyError, DeaiError) as e:
            log.warning("job %s: cannot resume from the journal: %s", spec.job_id, e)
            return None
        log.info("job %s: resuming after round %d from the journal", spec.job_id, saved["round"])
        return int(saved["round"]), params

    def opened(self) -> Iterator[tuple[str, OpenJob]]:
        """Every journaled ``OpenJob`` with its sender, in file-name order (an entry that
        cannot be read is skipped with a warning)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            if path.name.count(".") != 1:
                continue  # rounds / settle entries are read by the validator itself
            try:
                entry = json.loads(path.read_text())
                msg = decode(bytes.fromhex(entry["body"]))
                sender = str(entry["sender"])
            except (OSError, ValueError, KeyError, DeaiError) as e:
                log.warning("skipping journal entry %s: %s", path.name, e)
                continue
            if isinstance(msg, OpenJob):
                yield sender, msg
