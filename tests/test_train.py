"""projector.train end to end on tiny pairs folders built here (the pairs format of projector.generate)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from projector.errors import DataError

ITEMS = ["mango", "banana", "cherry", "lemon", "peach", "apple", "pear", "plum", "grape", "melon",
         "carrot", "potato", "tomato", "onion", "garlic", "pumpkin", "spinach", "ginger", "coconut", "walnut",
         "almond", "honey", "chocolate", "vanilla", "cinnamon", "rice", "pepper", "cabbage", "salmon", "butter"]


def make_qa_pairs(root: Path, items=ITEMS) -> Path:
    """A retrieval task where frozen cosine is wrong in a learnable way.

    The corpus has, per item, a recipe and a song. Queries describe a song about the item, but the
    relevant passage is the item's *recipe* (think "find the dish that goes with this playlist"): cosine
    prefers the song, a linear map can learn to move "song" queries onto "recipe" documents. Splits are by
    item (passage), so validation/test items are never seen in training.
    """
    from datasets import Dataset, DatasetDict

    root.mkdir(parents=True, exist_ok=True)
    passages, rows = [], {"train": [], "validation": [], "test": []}
    for i, item in enumerate(items):
        recipe = {"passage_id": f"r{i}", "doc_id": f"d{i}", "title": f"{item} recipe",
                  "text": f"Recipe: slice the {item}, cook it slowly with a little salt and serve it warm."}
        song = {"passage_id": f"s{i}", "doc_id": f"d{i}", "title": f"{item} song",
                "text": f"Song lyrics: a cheerful melody about the {item}, sung with guitar and drums."}
        passages += [recipe, song]
        split = "train" if i < 20 else "validation" if i < 25 else "test"
        rows[split].append({"query": f"a catchy tune with guitar celebrating the {item}",
                            "passage": recipe["text"], "passage_id": recipe["passage_id"], "doc_id": f"d{i}"})
    (root / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    DatasetDict({k: Dataset.from_list(v) for k, v in rows.items()}).save_to_disk(str(root / "dataset"))
    (root / "manifest.json").write_text(json.dumps({"task": "qa", "rewrite": None, "corpus_fingerprint": "test"}))
    return root
