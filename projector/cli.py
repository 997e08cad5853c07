"""Shared CLI plumbing: a user-fixable error is one line on stderr and a non-zero exit, never a traceback.

Besides ProjectorError, two failures of the machine rather than of the input get one line each, since the
fix is the same for every stage and re-running resumes (every stage writes atomically and checkpoints):

  - a full disk (ENOSPC), an exhausted quota (EDQUOT) or a file size limit (EFBIG), wherever the write was;
  - out of memory: MemoryError, torch's OutOfMemoryError (CUDA), the allocator RuntimeErrors ("can't allocate
    memory", "out of memory") and a thread that cannot get its stack ("can't start new thread").

Either is recognised anywhere in the exception's chain, so a ProjectorError raised from one (a reader that
wraps every failure as "cannot read ...") still prints the machine's problem, not advice to fix the input.
Allocation failures inside native code that aborts the process (OpenBLAS "Memory allocation still failed",
Rust's "memory allocation of N bytes failed") cannot be caught: the process dies, and re-running resumes.
"""
import errno
import logging
import os
import re
import signal
import sys

from projector.errors import ProjectorError

_DISK = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large (file system maximum or ulimit -f)"}
# The same conditions reported as text by libraries that do not raise OSError (safetensors' Rust writer:
# "I/O error: No space left on device (os error 28)").
_DISK_TEXT = re.compile(r"No space left on device|Disk quota exceeded|File too large|os error (28|122|27)\b")
_OOM_TEXT = re.compile(r"can't allocate memory|out of memory|Cannot allocate memory|can't start new thread", re.I)
_OOM_HINT = {
    "train": "lower --batch-size, --random-negatives, --hard-negatives or --val-max-queries, use --device cpu if "
             "the GPU ran out, or use fewer --encode-workers",
    "generate": "lower --concurrency, or use fewer --encode-workers (--task pairs embeds the corpus)",
    "evaluate": "lower --batch-size, or use fewer --encode-workers",
}


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def disk_full(e: BaseException) -> tuple[str, str | None] | None:
    """(reason, file name or None) if ``e`` or anything that caused it is a full disk / quota / size limit."""
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in _DISK:
            return _DISK[x.errno], x.filename
    for x in _chain(e):
        m = None if isinstance(x, ProjectorError) else _DISK_TEXT.search(str(x))  # our messages quote user text
        if m:
            code = {"28": errno.ENOSPC, "122": errno.EDQUOT, "27": errno.EFBIG}.get(m.group(1) or "")
            text = m.group(0)
            code = code or (errno.ENOSPC if "space" in text else errno.EDQUOT if "quota" in text else errno.EFBIG)
            return _DISK[code], None
    return None


def out_of_memory(e: BaseException) -> BaseException | None:
    """The failed allocation in ``e``'s chain (MemoryError, torch.OutOfMemoryError, the CPU/CUDA allocators'
    RuntimeError, a thread that could not get its stack), else None. torch is consulted only if something
    already imported it."""
    torch = sys.modules.get("torch")
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
    for x in _chain(e):
        if isinstance(x, MemoryError) or (oom_types and isinstance(x, oom_types)):
            return x
        if isinstance(x, RuntimeError) and _OOM_TEXT.search(str(x)):
            return x
    return None


def _where(argv) -> str:
    """Where the failed write most likely was, from --out and the cache folder."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = None
    for i, a in enumerate(args):
        if a == "--out" and i + 1 < len(args):
            out = args[i + 1]
        elif a.startswith("--out="):
            out = a.split("=", 1)[1]
    cache = os.environ.get("PROJECTOR_CACHE_DIR") or "~/.cache/projector"
    return f"a file under {out} or the cache {cache}" if out else f"a file (the cache is {cache})"


def _machine_failure(e: BaseException, stage: str, argv) -> str | None:
    """The one line for a full disk or an exhausted memory anywhere in ``e``'s chain, else None."""
    disk = disk_full(e)
    if disk is not None:
        reason, name = disk
        return (f"projector.{stage}: error: {reason} writing {name or _where(argv)}: free space or point --out / "
                "PROJECTOR_CACHE_DIR at a larger disk; re-run the same command to resume (nothing already written "
                "is lost)")
    x = out_of_memory(e)
    if x is not None:
        detail = " ".join(str(x).split())[:200] or type(x).__name__
        return (f"projector.{stage}: error: out of memory ({detail}): "
                f"{_OOM_HINT.get(stage, 'lower --batch-size or --concurrency, or use --device cpu')}; "
                "re-run the same command to resume (nothing already written is lost)")
    return None


def run(main_fn, stage: str, argv=None) -> int:
    """Call ``main_fn(argv)``; turn ProjectorError, a full disk and out of memory into one line + exit 2,
    Ctrl-C into exit 130."""
    logging.basicConfig(level=logging.INFO, format=f"projector.{stage}: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request would bury the progress bar
    def _terminate(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (kill, a scheduler's stop) cleans up like Ctrl-C: servers stopped, log kept

    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals to the host
        pass
    try:
        main_fn(argv)
    except KeyboardInterrupt:
        print(f"projector.{stage}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- ProjectorError and the two machine failures; the rest re-raise
        line = _machine_failure(e, stage, argv)  # also when a ProjectorError wraps one ("cannot read ... (OOM)")
        if line is None and not isinstance(e, ProjectorError):
            raise
        message = re.sub(r"\s*\n\s*", " ", str(e)).strip()  # one line, also when it quotes a multi-line library text
        print(line or f"projector.{stage}: error: {message}", file=sys.stderr)
        return 2
    return 0
