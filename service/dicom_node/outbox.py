"""The results store: each photograph's SEG and SR are written here (folder 0700, files 0600) before the
C-STORE is answered, and removed once the destination has taken them; those it does not take within
``keep_s`` are dropped (logged and counted)."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from collections import defaultdict
from pathlib import Path

log = logging.getLogger("service.dicom_node")


class Outbox:
    def __init__(self, folder: Path, keep_s: float):
        self.folder = folder
        self.keep_s = keep_s
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stat.S_IMODE(folder.stat().st_mode) != 0o700:
            os.chmod(folder, 0o700)  # results hold patient data: readable by RedSeg's user only
        for partial in folder.glob(".*.tmp"):  # a write cut short by a crash
            partial.unlink(missing_ok=True)

    def put(self, files: list[bytes]) -> str:
        """Keep one photograph's result files (durably: written, synced, renamed); its key."""
        key = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        for index, data in enumerate(files):
            temporary = self.folder / f".{key}-{index}.tmp"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.folder / f"{key}-{index}.dcm")
        return key

    def waiting(self) -> dict[str, list[Path]]:
        """The results waiting, oldest first: key -> its files in order."""
        results: dict[str, list[Path]] = defaultdict(list)
        for path in sorted(self.folder.glob("*.dcm")):
            results[path.stem.rsplit("-", 1)[0]].append(path)
        return dict(results)

    def count(self) -> int:
        return sum(1 for _ in self.folder.glob("*.dcm"))

    def remove(self, files: list[Path]) -> None:
        for path in files:
            path.unlink(missing_ok=True)

    def expire(self, now: float | None = None) -> int:
        """Drop the files kept longer than ``keep_s``; how many."""
        now = time.time() if now is None else now
        old = [path for path in self.folder.glob("*.dcm") if now - path.stat().st_mtime > self.keep_s]
        self.remove(old)
        if old:
            log.warning("dropped %d result files unsent after %.1f days", len(old), self.keep_s / 86400)
        return len(old)
