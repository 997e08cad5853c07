"""Atomic writes: every file projector writes appears whole or not at all.

The data goes to a temporary file in the same folder (same file system, so the rename is atomic), is flushed
to disk, and is renamed over the target. A crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def naming(path):
    """Re-raise an OSError that names no file (a failed write(): disk full, quota, size limit) as one that names
    ``path``, so that the CLI can say which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with naming(path), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temps(path) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left beside it; return them.

    SIGKILL (or a power cut) skips the ``finally`` of write_bytes, so a write interrupted at the wrong moment
    leaves ``.<name>.<hex>.tmp`` behind: harmless, but each one as large as the file. Call this before writing
    ``path`` again from the one process that owns its folder.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int | None = 2, **dumps_kwargs) -> None:
    dumps_kwargs.setdefault("default", str)
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, **dumps_kwargs) + "\n")


def read_json(path):
    """The parsed file, or None if it is missing or not valid JSON (a state file to rebuild, not an error)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
