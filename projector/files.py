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
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        with naming(path), open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**22  # another user's live process; an absurd "pid" is no process
    return True


def remove_stale_temps(path) -> list[Path]:
    """Delete the temporary files that dead writers of ``path`` left beside it; return them.

    SIGKILL (or a power cut) skips the ``finally`` of write_bytes, so a write interrupted at the wrong moment
    leaves ``.<name>.<pid>-<hex>.tmp`` behind: harmless, but each one as large as the file. write_bytes calls
    this before every write; a temp file whose writer is still running (another process writing the same
    file) is left alone. Names without a pid (``.<name>.<hex>.tmp``, older versions) count as dead.
    """
    path = Path(path)
    stale = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = p.name[len(path.name) + 2:-len(".tmp")].partition("-")
        if pid[1] and pid[0].isdigit() and _alive(int(pid[0])):
            continue
        p.unlink(missing_ok=True)
        stale.append(p)
    return sorted(stale)


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
