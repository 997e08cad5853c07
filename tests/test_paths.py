"""Ids, titles and text from a corpus or a dataset never choose where projector writes.

A corpus whose ids and titles look like paths ("../../evil", an absolute path into the test's root, "a/b",
"..", "~", Windows paths, NUL-free odd unicode) goes through generate (qa, pairs, the Batch API file) and
train. Every file under the test's root is listed before and after: only --out folders and the embedding
cache may change, and the ids come back unchanged in the outputs. (Reading the code agrees: every file name
projector writes is fixed or made of a split name, a round number or a hash; none comes from the data.)
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from openai_server import FakeOpenAI

TEXT = "Paragraph about {i}: the quick brown fox jumps over the lazy dog number {i}, twice over."


def weird_ids(root: Path) -> list[str]:
    return ["../../evil", "../../../../escape", f"{root}/outside/abs", "/etc/projector-evil", "a/b", "a/../../b",
            "..", ".", "~", "~/x", "C:\\evil\\x", "\\\\server\\share", "\u202eexe.txt", "名前/ファイル", "e\u0301",
            "con", "nul", ".hidden", "-rf", "x" * 300, "tab\tand\nnewline", "%2e%2e%2fencoded", "$HOME", "*?[]"]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def changed_outside(before: dict, after: dict, allowed: list[str]) -> list[str]:
    changed = {k for k in after if before.get(k) != after[k]} | {k for k in before if k not in after}
    return sorted(k for k in changed if not any(k == a or k.startswith(a + "/") for a in allowed))


def test_ids_and_titles_never_pick_a_file_name(tmp_path, monkeypatch):
    from projector.generate.stage import GenerateConfig, generate
    from projector.train.stage import train

    root = tmp_path / "root"
    (root / "outside").mkdir(parents=True)
    (root / "outside" / "keep.txt").write_text("must stay")
    monkeypatch.setenv("PROJECTOR_CACHE_DIR", str(root / "cache"))
    ids = weird_ids(root)
    rows = [{"id": d, "title": d[::-1] + "/../t", "text": TEXT.format(i=i)} for i, d in enumerate(ids)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    work = root / "a" / "b"   # "../../evil" from an output folder here lands inside root, where we look
    before = snapshot(root)
    assert not Path("/etc/projector-evil").exists()

    common = dict(corpus=str(corpus), id_field="id", chunk_tokens=60, chunk_overlap=0, backoff=0.05, timeout=5.0)
    with FakeOpenAI() as srv:
        generate(GenerateConfig(**common, out=str(work / "qa"), base_url=srv.base_url, model="m", max_passages=None,
                                validation_fraction=0.3, test_fraction=0.2))
        generate(GenerateConfig(**common, out=str(work / "pairs"), base_url=srv.base_url, model="m", task="pairs",
                                criterion="same number", neighbours=2, random_pairs=1))
    generate(GenerateConfig(**common, out=str(work / "batch"), model="m", batch=True, batch_file_only=True))
    train(pairs=str(work / "qa"), out=str(work / "model"), lr=3e-3, batch_size=4, epochs=2, patience=2, threads=1,
          sentence_transformers=False)

    after = snapshot(root)
    outs = [f"a/b/{n}" for n in ("qa", "pairs", "batch", "model")]
    assert changed_outside(before, after, outs + ["cache"]) == []
    assert (root / "outside" / "keep.txt").read_text() == "must stay" and not (root / "outside" / "abs").exists()
    assert not Path("/etc/projector-evil").exists()
    # and the ids are data, kept as they were
    passages = [json.loads(line) for line in (work / "qa" / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted({p["doc_id"] for p in passages}) == sorted(ids)
    assert {p["title"] for p in passages} == {d[::-1] + "/../t" for d in ids}
    written = sorted(k for k in after if k not in before)
    assert all(k.startswith(tuple(o + "/" for o in outs + ["cache"])) for k in written), written
    print(f"{len(ids)} path-like ids: {len(written)} files written, all under --out or the cache")


def test_a_folder_corpus_with_odd_file_names_stays_read_only(tmp_path, monkeypatch):
    from projector.generate.stage import GenerateConfig, generate

    root = tmp_path / "root"
    docs = root / "docs"
    for name in ("a b.txt", "名前.md", "..hidden.txt", "\u202eevil.txt", "sub/dir/x.txt", "-rf.txt"):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(TEXT.format(i=name), encoding="utf-8")
    monkeypatch.setenv("PROJECTOR_CACHE_DIR", str(root / "cache"))
    before = snapshot(root)
    with FakeOpenAI() as srv:
        generate(GenerateConfig(corpus=str(docs), out=str(root / "out"), base_url=srv.base_url, model="m",
                                chunk_tokens=60, chunk_overlap=0, backoff=0.05))
    assert changed_outside(before, snapshot(root), ["out", "cache"]) == []
    ids = {json.loads(line)["doc_id"] for line in (root / "out" / "passages.jsonl").read_text().splitlines()}
    assert "sub/dir/x.txt" in ids and "名前.md" in ids
