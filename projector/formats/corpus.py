"""Read a user's corpus and split it into passages that fit the encoder.

Inputs accepted (``read_documents``):
  - a JSONL / JSON-lines file, a CSV file or a Parquet file (text field configurable, optional id and title fields);
  - a folder of ``.txt`` / ``.md`` files (read recursively; the relative path is the document id);
  - a Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (a Dataset, or a DatasetDict: all splits).

Outputs (``make_passages``): passages of at most ``chunk_tokens`` encoder tokens, cut at paragraph and
sentence boundaries where possible, consecutive passages of one document sharing ``overlap_tokens``.
Empty, whitespace-only and duplicate passages are dropped and counted.

Bad input is a ``CorpusError`` naming the file (and line or row, and field) and what to change.
``read_jsonl`` is the package's one JSON-lines reader (pairs and evaluate read theirs with it);
the passages.jsonl of a pairs folder is written and read by ``projector.formats.pairs``.

    from projector.formats.corpus import read_documents, make_passages
    docs = read_documents("data/python-reference.jsonl")
    passages, stats = make_passages(docs, chunk_tokens=200, overlap_tokens=32)
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from projector.errors import CorpusError, ProjectorError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")


@dataclass
class Document:
    doc_id: str
    text: str
    title: str = ""


@dataclass
class Passage:
    passage_id: str  # "<doc_id>#<index within the document>"
    doc_id: str
    text: str
    title: str = ""
    original_text: str | None = None  # set when --rewrite replaced ``text``


@dataclass
class PassageStats:
    documents: int = 0
    passages: int = 0
    empty_dropped: int = 0
    duplicates_dropped: int = 0
    documents_split: int = 0  # documents longer than one passage
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading


def read_documents(path, text_field: str = "text", id_field: str | None = None,
                   title_field: str | None = "title") -> list[Document]:
    """Read every document of a corpus file or folder. See the module docstring for formats."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or folder. Give --corpus a JSONL/CSV/Parquet file, "
                          "a folder of .txt/.md files, or a saved datasets folder.")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            rows = _read_saved_dataset(path)
            docs = _rows_to_documents(rows, path, text_field, id_field, title_field)
        else:
            docs = _read_text_folder(path)
    else:
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            docs = _rows_to_documents(read_jsonl(path), path, text_field, id_field, title_field)
        elif suffix == ".csv":
            docs = _rows_to_documents(_read_csv(path), path, text_field, id_field, title_field)
        elif suffix == ".parquet":
            docs = _rows_to_documents(_read_parquet(path), path, text_field, id_field, title_field)
        elif suffix in TEXT_SUFFIXES:
            docs = [Document(doc_id=path.name, text=_read_text_file(path))]
        else:
            raise CorpusError(f"{path}: unknown corpus format {suffix!r}; use .jsonl, .csv, .parquet, "
                              ".txt/.md, a folder of .txt/.md files, or a saved datasets folder.")
    if not docs:
        raise CorpusError(f"{path}: the corpus is empty (no documents found).")
    seen: set[str] = set()
    for d in docs:
        if d.doc_id in seen:
            raise CorpusError(f"{path}: document id {d.doc_id!r} occurs more than once; ids must be unique "
                              "(fix the id field or leave --id-field out to number rows).")
        seen.add(d.doc_id)
    return docs


def _check_binary(path: Path, head: bytes, error=CorpusError) -> None:
    if b"\x00" in head:
        raise error(f"{path}: looks like a binary file (NUL bytes), not UTF-8 text.")


def read_lines(path: Path, error=CorpusError) -> Iterable[tuple[int, str]]:
    """Yield (line number, line) of a UTF-8 text file (a BOM dropped); bad bytes or a binary file are an
    ``error`` naming the file and line. The package's one reader of text lines."""
    with open(path, "rb") as f:
        data = f.read()
    _check_binary(path, data[:8192], error)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # UTF-8 BOM
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start:e.start + 1]!r} at column "
                        f"{e.start + 1}); re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from None


def _read_text_file(path: Path) -> str:
    return "\n".join(line for _, line in read_lines(path))


def read_jsonl(path, error: type[ProjectorError] = CorpusError) -> list[tuple[str, dict]]:
    """Every JSON object of a JSON-lines file, each with where it came from (``"path:line"``); blank lines
    are skipped. The one JSONL reader of the package: a missing file, a binary file, bad UTF-8, a line that
    is not JSON or not an object is an ``error`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} not found")
    return parse_jsonl(read_lines(path, error), str(path), error)


def parse_jsonl(lines: Iterable[tuple[int, str]], source: str,
                error: type[ProjectorError] = CorpusError) -> list[tuple[str, dict]]:
    """``read_jsonl`` for (line number, line) pairs already in memory (e.g. a file an API returned)."""
    rows = []
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{source}:{lineno}: invalid JSON ({e.msg}); each line must be one JSON object.") from None
        if not isinstance(obj, dict):
            raise error(f"{source}:{lineno}: expected a JSON object per line, got {type(obj).__name__}.")
        rows.append((f"{source}:{lineno}", obj))
    return rows


def _read_csv(path: Path) -> list[tuple[str, dict]]:
    lines = [line for _, line in read_lines(path)]
    reader = csv.DictReader(lines)
    # Data rows start on line 2 (line 1 is the header); multi-line cells make this approximate.
    return [(f"{path}:row {i}", row) for i, row in enumerate(reader, start=1)]


def _read_parquet(path: Path) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise CorpusError(f"{path}: cannot read as Parquet ({e}).") from None
    return [(f"{path}:row {i}", row) for i, row in enumerate(table.to_pylist(), start=1)]


def _read_saved_dataset(path: Path) -> list[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise CorpusError(f"{path}: cannot load as a saved datasets folder ({e}).") from None
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [("", ds)]
    rows = []
    for split, d in parts:
        for i, row in enumerate(d):
            rows.append((f"{path}:{split + ' ' if split else ''}row {i + 1}", row))
    return rows


def _read_text_folder(path: Path) -> list[Document]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise CorpusError(f"{path}: folder has no {'/'.join(TEXT_SUFFIXES)} files.")
    docs = []
    for p in files:
        rel = p.relative_to(path).as_posix()
        docs.append(Document(doc_id=rel, text=_read_text_file(p), title=p.stem))
    return docs


def _rows_to_documents(rows, path: Path, text_field, id_field, title_field) -> list[Document]:
    docs = []
    for i, (where, row) in enumerate(rows):
        if text_field not in row:
            raise CorpusError(f"{where}: no field {text_field!r} (fields: {sorted(row)}); "
                              f"set --text-field to the field that holds the text.")
        text = row[text_field]
        if text is None or (isinstance(text, float) and math.isnan(text)):
            text = ""
        if not isinstance(text, str):
            raise CorpusError(f"{where}: field {text_field!r} is {type(text).__name__}, expected text.")
        if id_field:
            if id_field not in row or row[id_field] in (None, ""):
                raise CorpusError(f"{where}: no id in field {id_field!r} (fields: {sorted(row)}); "
                                  "set --id-field, or leave it out to number rows.")
            doc_id = str(row[id_field])
        else:
            doc_id = str(i)
        title = row.get(title_field) if title_field else None
        docs.append(Document(doc_id=doc_id, text=text, title=title if isinstance(title, str) else ""))
    return docs


# --------------------------------------------------------------------------------------------- chunking

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def approx_token_count(text: str) -> int:
    """Word-piece count estimate (~1.3 tokens per word) when no tokenizer is available."""
    return int(len(text.split()) * 1.3) + 1


def tokenizer_token_counter(encoder_path: str, local_files_only: bool = False) -> Callable[[str], int]:
    """Count tokens with the encoder's own tokenizer (a local folder, or with ``local_files_only`` a name in the
    local Hugging Face cache: no download)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder_path, local_files_only=local_files_only)
    tok.model_max_length = 10**9  # we count long texts on purpose; silence the "too long" warning

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def _split_units(text: str, count: Callable[[str], int], limit: int) -> list[tuple[str, bool]]:
    """Paragraphs, then sentences, then word windows: the largest pieces that fit ``limit`` tokens.

    Each unit comes with whether it starts a paragraph, so that chunks keep the text's own layout.
    """
    units = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if count(para) <= limit:
            units.append((para, True))
            continue
        pieces = []
        for sent in _SENTENCE_END.split(para):
            if count(sent) <= limit:
                pieces.append(sent)
                continue
            words = sent.split()
            # A sentence longer than a passage (code, tables): cut it into word windows.
            step = max(1, int(limit / 1.5))
            while words:
                piece = " ".join(words[:step])
                while count(piece) > limit and step > 1:
                    step = max(1, step * 3 // 4)
                    piece = " ".join(words[:step])
                pieces.append(piece)
                words = words[step:]
        units.extend((piece, i == 0) for i, piece in enumerate(pieces))
    return units


def chunk_text(text: str, count: Callable[[str], int], chunk_tokens: int = 200,
               overlap_tokens: int = 32) -> list[str]:
    """Pack paragraph/sentence units greedily into chunks of <= chunk_tokens; carry ~overlap_tokens back."""
    if overlap_tokens >= chunk_tokens:
        raise CorpusError(f"chunk overlap ({overlap_tokens}) must be smaller than chunk size ({chunk_tokens}).")
    units = _split_units(text, count, chunk_tokens)
    sizes = [count(u) for u, _ in units]
    chunks, start = [], 0
    while start < len(units):
        end, total = start, 0
        while end < len(units) and total + sizes[end] <= chunk_tokens:
            total += sizes[end]
            end += 1
        end = max(end, start + 1)
        chunks.append(units[start][0] + "".join(("\n\n" if para else " ") + u for u, para in units[start + 1:end]))
        if end >= len(units):
            break
        # Overlap: restart at the last units of this chunk that fit in overlap_tokens, but always move on.
        back, carried = end, 0
        while back - 1 > start and carried + sizes[back - 1] <= overlap_tokens:
            back -= 1
            carried += sizes[back]
        start = back
    return chunks


def normalise_for_dedup(text: str) -> str:
    return " ".join(text.lower().split())


def make_passages(docs: list[Document], count: Callable[[str], int] | None = None, chunk_tokens: int = 200,
                  overlap_tokens: int = 32) -> tuple[list[Passage], PassageStats]:
    """Split documents into passages; drop and count empty and duplicate ones."""
    count = count or approx_token_count
    stats = PassageStats(documents=len(docs))
    seen: set[str] = set()
    passages: list[Passage] = []
    for d in docs:
        if not d.text.strip():
            stats.empty_dropped += 1
            continue
        chunks = chunk_text(d.text, count, chunk_tokens, overlap_tokens)
        if len(chunks) > 1:
            stats.documents_split += 1
        for i, chunk in enumerate(chunks):
            if not chunk.strip():
                stats.empty_dropped += 1
                continue
            key = hashlib.sha256(normalise_for_dedup(chunk).encode()).hexdigest()
            if key in seen:
                stats.duplicates_dropped += 1
                continue
            seen.add(key)
            passages.append(Passage(passage_id=f"{d.doc_id}#{i}", doc_id=d.doc_id, text=chunk, title=d.title))
    stats.passages = len(passages)
    return passages, stats


def fingerprint(passages: list[Passage]) -> str:
    """Content hash of the passages (ids and texts, in order): names the corpus in manifests and caches."""
    h = hashlib.sha256()
    for p in passages:
        h.update(p.passage_id.encode())
        h.update(b"\x00")
        h.update(p.text.encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]
