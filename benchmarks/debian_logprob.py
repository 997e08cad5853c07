"""Experiment (issue 10): label debian-pkgs train items by the embedded LLM's next-token probabilities over
lettered options (one prompt evaluation per item, no free text, no "unknown" escape) instead of a JSON reply.

    python benchmarks/debian_logprob.py interface 150      # -> benchmarks/results/debian-pkgs-logprob-interface.json

The items are the first N of the committed attribute run (benchmarks/pairs/debian-pkgs-CRITERION), so the two
label sources compare on the same items; the human labels are read only to score. Runs the GGUF in-process
with llama-cpp-python (the shared prompt prefix stays in the KV cache from one item to the next).
Measured (interface, 150 items): item accuracy 0.533 (JSON replies: 0.213), but the labels' implied pairs agree
with the human ones on 0.536 of pairs (always "different": 0.641), and LDA on them scores test mAP 0.43-0.46
against cosine 0.505: better labels, still too noisy to teach a map.
"""
from __future__ import annotations

import json
import os
import string
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.files import write_text  # noqa: E402


def out_file(crit: str) -> Path:
    return REPO / "benchmarks" / "results" / f"debian-pkgs-logprob-{crit}.json"


def main(argv=None) -> int:
    """CRITERION N: label the first N train items; a rerun resumes (the file holds every finished item)."""
    argv = sys.argv[1:] if argv is None else argv
    from llama_cpp import Llama

    from projector.llm.models import resolve_model

    da = load("debian_attribute")
    crit = argv[0]
    n = int(argv[1])
    os.chdir(REPO)  # the run folders are repo-relative
    data = da.default_data()
    items = {r["id"]: r for r in da.read_items(data)}
    meta = json.loads((data / "meta.json").read_text())
    # The committed attribute run's items first (the JSON and log-prob labels then compare on the same items), then
    # a seeded permutation of the other train items; a rerun resumes (the file holds every finished item).
    first = [i for i in da.llm_labels(da.run_dir_of(crit))[0] if items[i]["split"] == "train"]
    rest = sorted(set(i for i, r in items.items() if r["split"] == "train") - set(first))
    llm_ids = (first + [rest[k] for k in np.random.default_rng(0).permutation(len(rest))])[:n]
    out_path = out_file(crit)
    done = json.loads(out_path.read_text()) if out_path.is_file() else {}
    names = list(da.LABELS[crit])
    letters = string.ascii_uppercase[:len(names)]
    threads = int(os.environ.get("PROJECTOR_LLM_THREADS", "2"))
    llm = Llama(model_path=str(resolve_model()), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)

    def tok(s):
        return llm.tokenize(s.encode(), add_bos=False, special=True)

    letter_ids = [tok(x)[0] for x in letters]
    assert all(len(tok(x)) == 1 for x in letters)
    opts = "\n".join(f"{x}. {nm}" for x, nm in zip(letters, names))

    def prompt(text):
        text = " ".join(text.split())[:400]
        user = (f"Task: put one item into one group. Items in one group {meta['criteria'][crit]}.\n"
                f"Groups:\n{opts}\n\nDecide from what the text says the item is and how it is used.\n\n"
                f"Item:\n\"\"\"\n{text}\n\"\"\"\nWhich group is this item in? Answer with the letter only.")
        return ("<|im_start|>system\nYou are a careful classifier.<|im_end|>\n<|im_start|>user\n" + user
                + "<|im_end|>\n<|im_start|>assistant\n")

    out = {i: done[i] for i in llm_ids if i in done}
    t0 = time.time()
    for k, i in enumerate(i for i in llm_ids if i not in out):
        toks = tok(prompt(items[i]["text"]))
        # reuse the shared prefix already in the KV cache
        common = 0
        for a, b in zip(llm._input_ids[:llm.n_tokens], toks):
            if a != b:
                break
            common += 1
        llm.n_tokens = min(common, len(toks) - 1)
        llm.eval(toks[llm.n_tokens:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
        full = logits - logits.max()
        lp_all = full - np.log(np.exp(full).sum())
        z = lp_all[letter_ids]
        p = np.exp(z - z.max())
        p /= p.sum()
        out[i] = {"probs": p.round(4).tolist(), "mass": float(np.exp(lp_all[letter_ids]).sum()),
                  "label": names[int(p.argmax())], "human": items[i]["labels"][crit]}
        if k % 10 == 0:
            print(k, round(time.time() - t0, 1), flush=True)
            write_text(out_path, json.dumps(out))
    mp = da.LABELS[crit]
    acc = np.mean([mp[o["label"]] == o["human"] for o in out.values()])
    print(crit, "n", len(out), "acc", round(acc, 3), "s/item", round((time.time() - t0) / max(1, len(out) - len(done)), 2))
    print(Counter(o["label"] for o in out.values()))
    print(Counter((o["human"], o["label"]) for o in out.values()).most_common(10))
    write_text(out_path, json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
