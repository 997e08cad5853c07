"""SetFit beside projector on debian-pkgs (issue 24): the same N trusted labels, its own Trainer, CPU seconds.

    python benchmarks/debian_setfit.py interface 40 0        # criterion, N labels, seed -> debian-pkgs-setfit.json

SetFit (``setfit`` on PyPI) fine-tunes the whole encoder contrastively on pairs drawn from the labelled items,
then fits a classification head. For a ranking benchmark its fine-tuned body is what compares with a
projection: the test items are embedded by it and scored like every other row (label mAP, classes of >= 10
test items, cosine of the embeddings). Same labels as ``benchmarks/debian_conditions.py`` (its label files),
same frozen starting point (the bundled all-MiniLM-L6-v2), SetFit's default recipe (batch 16, 1 epoch, 20
pair iterations per item). One run resumes nothing: a finished (criterion, N, seed) is skipped.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402

from projector.files import write_text  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "debian-pkgs-setfit.json"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    criterion, n, seed = argv[0], int(argv[1]), int(argv[2])
    key = f"n{n}-s{seed}"
    done = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if key in done.get(criterion, {}):
        print(f"{criterion} {key}: done ({done[criterion][key]['map']:.4f})")
        return 0
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from projector.embed.encoder import encoder_source
    from projector.metrics import label_map

    torch.set_num_threads(2)
    dc = load("debian_conditions")
    da = dc._attribute()
    data = da.default_data()
    items = {r["id"]: r for r in da.read_items(data)}
    labels = [json.loads(x) for x in (REPO / dc.trusted_labels(criterion, n, seed, data)).read_text().splitlines()]
    train = Dataset.from_dict({"text": [items[r["id"]]["text"] for r in labels], "label": [r["label"] for r in labels]})
    test = [r for r in items.values() if r["split"] == "test" and criterion in r["labels"]]
    y_test = np.array([r["labels"][criterion] for r in test], dtype=object)

    model = SetFitModel.from_pretrained(encoder_source(None), labels=sorted(set(train["label"])))
    before = model.model_body.encode([r["text"] for r in test], normalize_embeddings=True)
    args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20, seed=seed,
                             output_dir=str(REPO / "runs" / "setfit-checkpoints"))  # runs/: ignored by git
    trainer = Trainer(model=model, args=args, train_dataset=train)
    t0 = time.process_time()
    wall = time.time()
    trainer.train()
    cpu, wall = time.process_time() - t0, time.time() - wall
    after = model.model_body.encode([r["text"] for r in test], normalize_embeddings=True)
    row = {"human_labels": n, "seed": seed, "map": round(label_map(after, y_test)["map"], 4),
           "cosine_map": round(label_map(before, y_test)["map"], 4), "train_seconds": round(wall, 1),
           "train_cpu_seconds": round(cpu, 1), "labels": dc.trusted_labels(criterion, n, seed, data).as_posix(),
           "recipe": "setfit 1.2.0 defaults: batch 16, 1 epoch, 20 iterations; body = bundled all-MiniLM-L6-v2",
           "threads": 2}
    done = json.loads(OUT.read_text()) if OUT.is_file() else {}  # re-read: another run may have written
    done.setdefault(criterion, {})[key] = row
    write_text(OUT, json.dumps(done, indent=1) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
