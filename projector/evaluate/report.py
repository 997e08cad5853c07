"""Write an evaluation (the dict built by ``projector.evaluate``) as report.json, report.md, report.html and PNG plots.

    report.write(result, "runs/proj/eval-test")    # also prints the table

Plots (matplotlib, Agg backend, no display needed): ``metrics.png`` headline metrics per row with bootstrap
95% CIs; ``reliability.png`` reliability diagram of every row that has ``probability()``; ``scores.png``
score histograms of positives vs negatives per row; ``training.png`` training curves from each model's
train_log.jsonl. A plot with nothing to show is not written (e.g. no reliability diagram without a model).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from projector.evaluate import report_html
from projector.files import write_json, write_text

CAL_KEYS = ["logloss", "brier", "ece@15"]


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _delta(d: dict | None) -> str:
    if not d:
        return "—"
    lo, hi = d["ci95"]
    star = " *" if report_html.direction(d) else ""
    return f"{d['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}]{star}"


def tables(result: dict) -> str:
    """Markdown: metrics table, deltas to cosine with CIs, calibration table."""
    rows = result["rows"]
    metric_keys = list(rows[0]["metrics"])
    lines = ["| row | " + " | ".join(metric_keys) + " |", "|---|" + "---:|" * len(metric_keys)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(r["metrics"].get(k)) for k in metric_keys) + " |")
    head = result["headline"]
    lines += ["", "Difference to cosine, paired bootstrap 95% CI (* = CI clears 0 by "
              f"{report_html.MIN_DIFFERENCE}):", "",
              "| row | " + " | ".join(f"Δ {m}" for m in head) + " |", "|---|" + "---:|" * len(head)]
    for r in rows:
        if r["name"] != "cosine":
            lines.append(f"| {r['name']} | " + " | ".join(_delta(r["delta_vs_cosine"].get(m)) for m in head) + " |")
    cal_title = "Calibration of probability() on " + (
        f"(query, passage) pairs, sampled {result['data']['calibration_sampling']}" if result["task"] == "retrieval"
        else result["data"]["calibration_sampling"] if result["task"] == "labelled" else "the labelled pairs")
    lines += ["", cal_title + ":", "", "| row | " + " | ".join(CAL_KEYS) + " |", "|---|" + "---:|" * len(CAL_KEYS)]
    for r in rows:
        if "calibration_note" in r:
            lines.append(f"| {r['name']} | " + " | ".join(["n/a"] * len(CAL_KEYS)) + " |")
        else:
            lines.append(f"| {r['name']} | " + " | ".join(_fmt(r["calibration"].get(k)) for k in CAL_KEYS) + " |")
    if any("calibration_note" in r for r in rows):
        lines.append("\nn/a: the row has no probability (cosine and the baselines give a similarity, not a "
                     "probability; none is invented).")
    return "\n".join(lines)


def markdown(result: dict, plots: list[str]) -> str:
    d = result["data"]
    info = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("name", "calibration_sampling", "class_sizes"))
    parts = [f"# Evaluation: {d['name']}", "",
             f"Task: {result['task']}; encoder: {result['encoder']}; {info}.",
             "Every row is scored by the same evaluator on the same embeddings; baselines are fitted on the "
             "corpus embeddings only (the closed form on the pairs' train split).", "",
             *[f"- {n}" for n in result.get("notes", [])]]
    for r in result["rows"]:
        if "model" in r:
            m = r["model"]
            parts.append(f"- model `{r['name']}` ({m['path']}): {m['mode']}, rank {m['rank']}, exported candidate "
                         f"'{m['selected']}', trained on {m['trained_on']}" + (f". WARNING: {m['warning']}"
                                                                              if m.get("warning") else ""))
    parts += ["", tables(result), ""]
    parts += [f"![{p}]({p})" for p in plots]
    return "\n".join(parts) + "\n"


def write(result: dict, out) -> Path:
    """Write report.json, report.md, config.json and the plots into ``out``; print the tables."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hist = result.pop("_hist", {})
    plots = [p for p in (plot_metrics(result, out), plot_deltas(result, out), plot_reliability(result, out), plot_scores(hist, out),
                         plot_training(result.get("training_logs", {}), out)) if p]
    write_json(out / "report.json", result, indent=1, allow_nan=False, default=_json_default)
    write_json(out / "config.json", result.get("config", {}), indent=1)
    write_text(out / "report.md", markdown(result, plots))
    page = report_html.write(result, plots, out)   # the same report as one self-contained page
    print(f"\n{result['data']['name']}: {result['task']}  (encoder {result['encoder']})\n")
    print(tables(result))
    print(f"\nreport: {page}  (and {out / 'report.md'})")
    for sentence in report_html.verdict(result):
        print(sentence)
    return out


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(result: dict, out: Path) -> str:
    plt = _plt()
    rows, head = result["rows"], result["headline"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) * len(head) / 2), 4))
    w = 0.8 / len(rows)
    for j, r in enumerate(rows):
        vals = [r["metrics"][m] for m in head]
        ci = np.array([r["ci95"][m] for m in head])   # (n_metrics, 2)
        err = np.stack([np.array(vals) - ci[:, 0], ci[:, 1] - np.array(vals)]).clip(min=0)
        ax.bar(np.arange(len(head)) + j * w, vals, w, yerr=err, capsize=2, label=r["name"])
    ax.set_xticks(np.arange(len(head)) + w * (len(rows) - 1) / 2, head)
    ax.set_ylabel("metric (95% bootstrap CI)")
    ax.set_title(result["data"]["name"])
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, "metrics.png")


def plot_deltas(result: dict, out: Path) -> str | None:
    """Each row minus cosine on the headline metrics, with the paired bootstrap 95% CI."""
    rows = [r for r in result["rows"] if r["name"] != "cosine"]
    if not rows:
        return None
    plt = _plt()
    head = result["headline"]
    fig, axes = plt.subplots(1, len(head), figsize=(3.2 * len(head), 0.35 * len(rows) + 1.5), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), head):
        d = np.array([r["delta_vs_cosine"][m]["delta"] for r in rows])
        ci = np.array([r["delta_vs_cosine"][m]["ci95"] for r in rows])      # (rows, 2)
        y = np.arange(len(rows))
        ax.errorbar(d, y, xerr=np.stack([d - ci[:, 0], ci[:, 1] - d]).clip(min=0), fmt="o", capsize=3)
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(y, [r["name"] for r in rows])
        ax.set_title(f"Δ {m} vs cosine", fontsize=9)
    fig.suptitle("difference to cosine, paired bootstrap 95% CI", fontsize=9)
    return _save(fig, out, "deltas.png")


def plot_reliability(result: dict, out: Path) -> str | None:
    rows = [r for r in result["rows"] if "reliability" in r]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for r in rows:
        rel = r["reliability"]
        keep = np.array(rel["count"]) > 0
        ax.plot(np.array(rel["confidence"])[keep], np.array(rel["positive_rate"])[keep], "o-",
                label=f"{r['name']} (ECE {r['calibration'].get('ece@15', float('nan')):.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title("reliability (15 bins)")
    ax.legend(fontsize=7)
    return _save(fig, out, "reliability.png")


def plot_scores(hist: dict, out: Path) -> str | None:
    if not hist:
        return None
    plt = _plt()
    n = len(hist)
    cols = min(4, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(3.2 * cols, 2.6 * math.ceil(n / cols)),
                             squeeze=False)
    for ax, (name, h) in zip(axes.flat, hist.items()):
        s, y = np.asarray(h["scores"]), np.asarray(h["labels"])
        bins = np.linspace(s.min(), s.max(), 40)
        ax.hist(s[y == 0], bins, alpha=0.6, density=True, label="negatives")
        ax.hist(s[y == 1], bins, alpha=0.6, density=True, label="positives")
        ax.set_title(name, fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, out, "scores.png")


def plot_training(logs: dict, out: Path) -> str | None:
    curves = {}
    for name, path in logs.items():
        try:
            curves[name] = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        except (OSError, json.JSONDecodeError):
            continue   # a missing or broken log only loses its plot
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    plt = _plt()
    keys = ["train_loss", "val_logloss", "val_ndcg@10"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        for name, rows in curves.items():
            pts = [(r.get("epoch", i), r[key]) for i, r in enumerate(rows) if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", ms=3, label=name)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return _save(fig, out, "training.png")


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _plt().close(fig)
    return name
