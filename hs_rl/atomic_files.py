"""Files that are either absent or whole: write to a temporary sibling, fsync, rename over the target.

One writer for every file a crash, a kill or a full disk must not leave half-written: records JSONL, the
validation cache, dumped prompts, checkpoint and export markers, the pipeline's done markers.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, text: str | Iterable[str]) -> None:
    """Write `text` (a string, or chunks of one) to `path` so that it is either absent or whole, even after a
    power cut. The temporary name holds the process id, so ranks writing the same file never share one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines([text] if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_dict(path: str | Path) -> dict[str, Any] | None:
    """A JSON object written by `atomic_write` (a record, a marker), or None: missing, unreadable, or not an object.

    Readers poll files other processes replace; None lets each one say what a missing record means."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
