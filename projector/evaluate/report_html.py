"""Write an evaluation as report.html: one self-contained page (plots embedded as base64 PNG, no external file).

    report_html.write(result, plots, "runs/proj/eval-test")   # called by projector.evaluate.report.write
    report_html.verdict(result)                               # the one-sentence headline(s), also printed

The page reads top to bottom as a person checks a model: the verdict (trained vs cosine on the primary metric,
with both 95% CIs and the paired CI of the difference, in one sentence that can be quoted), the warnings,
the headline table, the plots (metrics, differences, reliability, training curves, score histograms) and the
full tables. ``result`` is the dict ``projector.evaluate`` builds (report.json's content); ``plots`` the PNG
names ``projector.evaluate.report`` wrote into the same folder. tests/evaluate/test_report_html.py renders it in
Chromium.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from projector.files import write_text

NAMES = {"ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@10": "Recall@10", "accuracy@1": "Accuracy@1",
         "map": "mAP", "p@10": "P@10",
         "roc_auc": "ROC-AUC", "average_precision": "average precision", "accuracy": "accuracy"}
CAPTIONS = {
    "metrics.png": "Headline metrics per row, bootstrap 95% CIs.",
    "deltas.png": "Each row minus cosine, paired bootstrap 95% CIs: a CI right of 0 is a real gain.",
    "reliability.png": "Reliability of probability(): points on the diagonal are calibrated.",
    "training.png": "Training curves (train_log.jsonl): loss and validation metrics per epoch.",
    "scores.png": "Score histograms of positive and negative pairs.",
}


def _n(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _size(result: dict) -> str:
    d = result["data"]
    if result["task"] == "retrieval":
        return f"{d['queries']} queries against {d['corpus']} passages"
    if result["task"] == "labelled":
        return f"{d['queries']} items as queries over {d['pool']} items, '{d['label']}' as relevance"
    return f"{d['pairs']} labelled pairs"


# A difference to cosine counts (better, worse, a * in report.md) only when its paired CI clears 0 by this much:
# the verdicts print three decimals, and a model that IS cosine (its export when nothing beat it) ranks through
# float32 and breaks ties otherwise, measured here at +0.0002 (CI +0.00003 to +0.0005) on 150 items -- "+0.000
# (+0.000 to +0.000), better than cosine" is not what a reader may be told.
MIN_DIFFERENCE = 5e-4


def direction(d: dict) -> int:
    """+1 when a difference's paired CI (``d["ci95"]``) lies above 0 by at least MIN_DIFFERENCE, -1 below, else 0."""
    lo, hi = d["ci95"]
    return 1 if lo >= MIN_DIFFERENCE else -1 if hi <= -MIN_DIFFERENCE else 0


def verdict(result: dict) -> list[str]:
    """One sentence per trained model row: its primary metric and CI, cosine's, and the paired difference."""
    m = result["primary_metric"]
    name = NAMES.get(m, m)
    rows = {r["name"]: r for r in result["rows"]}
    cos = rows["cosine"]
    lo0, hi0 = cos["ci95"][m]
    models = [r for r in result["rows"] if r["kind"] == "model"]
    where = f"On {result['data']['name']} ({_size(result)})"
    if not models:
        return [f"{where}, cosine reaches {name} {_n(cos['metrics'][m])} (95% CI {_n(lo0)}–{_n(hi0)}); "
                "no trained model was evaluated (pass --model)."]
    out = []
    for r in models:
        lo, hi = r["ci95"][m]
        d = r["delta_vs_cosine"][m]
        dlo, dhi = d["ci95"]
        word = {1: "better than cosine", -1: "worse than cosine"}.get(
            direction(d), "not distinguishable from cosine (the CI of the difference includes 0)")
        out.append(f"{where}, the trained projection '{r['name']}' reaches {name} {_n(r['metrics'][m])} "
                   f"(95% CI {_n(lo)}–{_n(hi)}) against {_n(cos['metrics'][m])} ({_n(lo0)}–{_n(hi0)}) for "
                   f"cosine: {d['delta']:+.3f} (paired 95% CI {dlo:+.3f} to {dhi:+.3f}), {word}.")
    return out


def warnings(result: dict) -> list[str]:
    """What a reader must know before quoting the numbers."""
    out = []
    for r in result["rows"]:
        if r.get("model", {}).get("warning"):
            out.append(f"{r['name']}: {r['model']['warning']}")
    if (result.get("config") or {}).get("split") == "train" and not (result.get("config") or {}).get("beir"):
        out.append("Evaluated on the train split: the models and the closed form were fitted on it, so the "
                   "numbers are optimistic; use --split test.")
    n = result["data"].get("queries", result["data"].get("pairs", 0))
    if n < 50:
        out.append(f"Only {n} {'pairs' if result['task'] == 'pairs' else 'queries'}: the CIs are wide; "
                   "more held-out data narrows them.")
    return out


def _table(head: list[str], body: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table; ``body`` cells are HTML already (callers escape), ``classes`` one per row."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    classes = classes or [""] * len(body)
    tr = "".join(f'<tr class="{c}">' + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                 for row, c in zip(body, classes))
    return f"<table><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>"


def headline_table(result: dict) -> str:
    """Each row's headline metrics with their CI, and the paired difference to cosine under it."""
    head = result["headline"]
    body = []
    for r in result["rows"]:
        cells = [html.escape(r["name"]), html.escape(r["kind"])]
        for m in head:
            lo, hi = r["ci95"][m]
            d = r["delta_vs_cosine"][m]
            cell = f"<b>{_n(r['metrics'][m])}</b> <small>[{_n(lo)}, {_n(hi)}]</small>"
            if r["name"] != "cosine":
                sign = {1: "up", -1: "down"}.get(direction(d), "")
                cell += (f'<br><small class="{sign}">Δ {d["delta"]:+.3f} '
                         f'[{d["ci95"][0]:+.3f}, {d["ci95"][1]:+.3f}]</small>')
            cells.append(cell)
        cal = r.get("calibration") or {}
        cells.append(_n(cal.get("ece@15")) if "calibration_note" not in r else "n/a")
        body.append(cells)
    classes = ["model" if r["kind"] == "model" else "" for r in result["rows"]]
    return _table(["row", "kind"] + [NAMES.get(m, m) for m in head] + ["ECE"], body, classes)


def metrics_table(result: dict) -> str:
    keys = list(result["rows"][0]["metrics"])
    return _table(["row"] + keys, [[html.escape(r["name"])] + [_n(r["metrics"].get(k)) for k in keys]
                                   for r in result["rows"]])


def _img(out: Path, name: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    cap = html.escape(CAPTIONS.get(name, name))
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
.verdict{font-size:1.2em;background:#eef6ee;border-left:6px solid #2a7a2a;padding:.7em 1em;margin:.6em 0}
.warn{background:#fff4e0;border-left:6px solid #d08000;padding:.4em 1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{color:#555;font-size:.9em}small{color:#666}tr.model{background:#f3f8ff}
small.up{color:#1d6b1d}small.down{color:#a32020}"""


def page(result: dict, plots: list[str], out: Path) -> str:
    d = result["data"]
    order = [p for p in CAPTIONS if p in plots] + [p for p in plots if p not in CAPTIONS]
    warn = warnings(result)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>projector evaluation: {html.escape(d['name'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Evaluation: {html.escape(d['name'])}</h1>",
        *[f'<p class="verdict" id="verdict">{html.escape(s)}</p>' for s in verdict(result)],
        f"<p><small>Task {html.escape(result['task'])}; encoder {html.escape(str(result.get('encoder')))}; "
        f"{html.escape(_size(result))}. Every row is scored by the same evaluator on the same embeddings; "
        "CIs are bootstrap 95% over queries (or pairs).</small></p>",
    ]
    if result.get("notes"):
        parts.append("<ul>" + "".join(f"<li><small>{html.escape(n)}</small></li>" for n in result["notes"]) + "</ul>")
    if warn:
        parts.append('<div class="warn" id="warnings"><b>Warnings</b><ul>' +
                     "".join(f"<li>{html.escape(w)}</li>" for w in warn) + "</ul></div>")
    parts += ["<h2>Headline metrics</h2>", "<p><small>Mean [bootstrap 95% CI]; Δ: paired difference to cosine "
              "[95% CI], green where the CI is above 0, red below.</small></p>", headline_table(result)]
    parts += ["<h2>Plots</h2>", *[_img(out, p) for p in order]]
    parts += ["<h2>All metrics</h2>", metrics_table(result)]
    if "calibration_sampling" in d:
        parts.append(f"<p><small>Calibration pairs: {html.escape(str(d['calibration_sampling']))}.</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(result: dict, plots: list[str], out) -> Path:
    """Write ``out/report.html`` (atomic) and return its path."""
    out = Path(out)
    path = out / "report.html"
    write_text(path, page(result, plots, out))
    return path
