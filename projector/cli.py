"""The command line of every stage: flags built from the stage's config dataclass, and how a run ends.

Each stage's options are one dataclass whose fields are declared with ``option(default, help=...)``; ``parse``
turns argv into that dataclass (one ``--flag`` per field: the type from the annotation, ``bool`` as
``--x/--no-x``, lists repeatable, choices, required fields, the default shown in ``--help``), and ``run`` calls the
stage so that it ends with one exit code everywhere (``python -m projector.<stage>``, ``projector <stage>``, the
``projector-<stage>`` scripts): 0 done, 2 a user error printed as one line, 130 interrupted (Ctrl-C, SIGTERM).

A user-fixable error is one line on stderr and exit 2, never a traceback; so is a bad flag (``UsageError``).

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
import argparse
import dataclasses
import errno
import logging
import os
import re
import signal
import sys
import types
import typing

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
    "teach": "lower --concurrency",
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
    """Call ``main_fn(argv)`` and return the exit code: 0 done (``--help`` too); ProjectorError (a bad flag
    included), a full disk and out of memory: one line + 2; Ctrl-C or SIGTERM: 130."""
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
    except SystemExit as e:  # --help and --version: argparse's own exit, 0
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        raise
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


# ----------------------------------------------------------------------------- flags from a config dataclass


class UsageError(ProjectorError):
    """A flag argparse rejects (unknown, missing, bad value): one line like any other user error."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError (one line through ``run``) instead of usage + exit."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def option(default=dataclasses.MISSING, *, help: str, choices=None, flag: str | None = None,
           default_factory=dataclasses.MISSING, unset_by: tuple[str, str] | None = None):
    """A config field with its command-line help: ``x: int = option(3, help="...")``.

    ``choices``: the allowed values (argparse checks them); ``flag``: the flag when not ``--field-name``
    (``models`` -> ``--model``, repeatable); ``unset_by``: (flag, help) of a switch that sets the field to None
    whatever its order on the command line (``--all`` for ``--max-passages``). No default: a required flag.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "flag": flag,
            "unset_by": unset_by}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a config field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _kind(annotation) -> tuple[type, bool]:
    """(value type, repeatable) of a field annotation: int, int | None, list[str], ..."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (str,)
        return item, True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner)
    return annotation, False


def parser(config_cls, *, prog: str, doc: str) -> Parser:
    """The argparse parser of a config dataclass: one flag per field, help from its ``option`` metadata."""
    own = list(config_cls.__dict__.get("__annotations__", {}))  # the class's own fields, as declared, then shared ones
    fields = sorted(dataclasses.fields(config_cls), key=lambda f: own.index(f.name) if f.name in own else len(own))
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    p = Parser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
               usage=" ".join(["%(prog)s", *(f"{flag_of(f)} {_metavar(f)}" for f in fields if f.name in required),
                               "[options]"]))
    hints = typing.get_type_hints(config_cls)
    for f in fields:
        text = f.metadata.get("help")
        if not text:
            raise TypeError(f"{config_cls.__name__}.{f.name}: declare it with option(..., help=...)")
        kind, repeatable = _kind(hints[f.name])
        if kind is bool:
            action = p.add_argument(flag_of(f), dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
            text += f" (default: {flag_of(f) if f.default else '--no-' + flag_of(f)[2:]})"
        else:
            action = p.add_argument(flag_of(f), dest=f.name, type=kind, metavar=_metavar(f),
                                    choices=f.metadata.get("choices"), required=f.name in required,
                                    action="append" if repeatable else "store",
                                    default=None if repeatable or f.name in required else f.default)
            if not repeatable and f.name not in required:
                text += f" (default: {f.default})"
        action.help = text.replace("%", "%%")  # after add_argument: some Pythons append a default to a bool's help
        if f.metadata.get("unset_by"):
            switch, switch_help = f.metadata["unset_by"]
            p.add_argument(switch, dest=f"unset:{f.name}", action="store_true", help=switch_help.replace("%", "%%"))
    return p


def _metavar(f: dataclasses.Field) -> str:
    """The value's name in --help: the flag's (MODEL for --model), or the choices when there are some."""
    if f.metadata.get("choices"):
        return "{" + ",".join(map(str, f.metadata["choices"])) + "}"
    return flag_of(f)[2:].replace("-", "_").upper()


def parse(config_cls, argv=None, *, prog: str, doc: str):
    """``config_cls`` from command-line flags (``sys.argv[1:]`` if ``argv`` is None); a bad flag is a UsageError."""
    values = vars(parser(config_cls, prog=prog, doc=doc).parse_args(argv))
    for f in dataclasses.fields(config_cls):
        if values.pop(f"unset:{f.name}", False):
            values[f.name] = None
        elif values[f.name] is None and f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()  # a repeatable flag never given
    return config_cls(**values)
