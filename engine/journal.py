"""A batch rewrite's journal: which files are finished, so --resume skips them.

One JSON object per line, appended and fsynced after each file, in
`.ditto/journal.jsonl` under the first root. A run killed at any moment
leaves at worst a torn last line, which is ignored. An entry counts for a
resumed run only if the instruction is the same and the file still holds
exactly the text the entry says it was left with.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Journal:
    def __init__(self, root: Path, instruction: str) -> None:
        self.path = root / ".ditto" / "journal.jsonl"
        self.instruction = text_hash(instruction)
        self._done: dict[str, str] = {}

    def load(self) -> None:
        """Reads finished entries of this instruction (torn lines are skipped)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if e.get("instruction") == self.instruction and e.get("status") in ("written", "unchanged"):
                    self._done[e["path"]] = e["result_sha256"]

    def finished(self, path: Path, current_text: str) -> bool:
        return self._done.get(str(path)) == text_hash(current_text)

    def record(self, path: Path, status: str, result_text: str | None = None, **extra) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.time(), "instruction": self.instruction, "path": str(path), "status": status,
                 "result_sha256": text_hash(result_text) if result_text is not None else None, **extra}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
