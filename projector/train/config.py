"""train's options, one field per command-line flag (``projector.cli``: ``--rank``, ``--train-labels``, ...): plain
and visible in one place, the defaults measured where they say so. ``projector.train.stage`` runs them; the
endpoint encoder's options are ``projector.embed.endpoint.EncoderOptions``, your passage vectors'
``projector.embed.given.PassageVectorsOptions``."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from projector.cli import option
from projector.embed.endpoint import EncoderOptions
from projector.embed.given import PassageVectorsOptions
from projector.train.projection import ADAPTERS, MODES, NORMALIZE


@dataclass
class TrainConfig(EncoderOptions, PassageVectorsOptions):  # + --encoder-* (an endpoint), --passage-vectors
    pairs: str = option(help="pairs folder written by projector.generate")
    out: str = option(help="output folder (created; re-running the same command resumes)")
    mode: str | None = option(None, choices=MODES, help="asymmetric (W_q for queries, W_a for passages) or "
                                                       "symmetric (one W); None: asymmetric for task qa, "
                                                       "symmetric for pairs")
    rank: int | None = option(None, help="k <= d output dimensions; None: d (full rank)")
    encoder: str | None = option(None, help="sentence-transformers name or folder, or openai:MODEL (an embeddings endpoint: --encoder-base-url); None: the bundled all-MiniLM-L6-v2")
    query_template: str | None = option(None, help='e.g. "query: {text}", applied to queries / text_a before '
                                                   'embedding')
    document_template: str | None = option(None, help="applied to passages / text_b before embedding")
    init: str = option("identity", choices=("identity", "closed-form"),
                       help="identity (= cosine at step 0) or closed-form (start from the ridge map)")
    ridge: float = option(30.0, help="closed-form ridge strength (toward the identity); 30-100 measured best")
    normalize: str = option("both", choices=NORMALIZE,
                            help="L2-normalise projected vectors: both, query (folding into the corpus vectors "
                                 "is then exact) or none")
    adapter: str = option("full", choices=ADAPTERS,
                          help="how the trained map is learned: full (W itself), residual (ΔW in W = W₀ + ΔW, W₀ "
                               "the start: identity = cosine) or lowrank (W = W₀ + U Vᵀ, rank --adapter-rank); "
                               "the export is the plain W either way")
    adapter_rank: int = option(16, help="lowrank: r, the rank of ΔW = U Vᵀ (U (k, r), V (d, r))")
    stay_close: float = option(0.0, help="residual/lowrank: λ of a penalty λ·‖p(x) − p₀(x)‖² per training "
                                         "query and passage, keeping projected vectors near where the start map put "
                                         "them (the original embeddings with the identity start; Search-Adaptor)")
    query_only: bool = option(False, help="asymmetric: learn W_q only; W_a stays at its start (identity: stored "
                                          "passage vectors stay valid as they are)")
    epochs: int | None = option(None, help="upper bound: early stopping normally ends far sooner; None: 100, "
                                           "300 for items (an epoch of a few hundred items is one or two batches)")
    patience: int | None = option(None, help="epochs without a better validation NDCG@10 (items: label mAP) before "
                                             "stopping; None: 5, 20 for items")
    batch_size: int = option(256, help="pairs per step; every in-batch (query, other passage) cell is a negative")
    lr: float | None = option(None, help="AdamW learning rate; None: 1e-4 (1e-3 overfits qa within a few epochs), "
                                         "1e-3 for items (1e-4 stopped at cosine)")
    weight_decay: float = option(0.0, help="AdamW decoupled decay toward zero")
    identity_decay: float = option(0.0, help="decoupled decay toward the initial weights (identity), per step * lr")
    scale_init: float = option(20.0, help="initial logit scale s")
    bias_init: float = option(-10.0, help="initial logit bias b")
    hard_negatives: int = option(0, help="qa: per query, nearest non-positive passages under the frozen encoder "
                                         "(mined; a folder from projector teach brings judged ones instead)")
    judged_negatives: bool = option(True, help="qa: train on the hard negatives projector teach judged, where the "
                                               "pairs folder has them")
    hard_negative_margin: float = option(0.9, help="skip hard-negative candidates whose cosine to the positive "
                                                   "passage exceeds this (likely unlabelled positives)")
    random_negatives: int = option(0, help="qa: extra random passages per query and step")
    select_confidence: float = option(0.95, help="a candidate replaces cosine only when the paired bootstrap CI "
                                                 "of its validation gain, at this confidence, lies above 0 (on a "
                                                 "few dozen validation queries one query ranked higher is not a "
                                                 "gain); 0: the best validation mean wins")
    validation_queries: str | None = option(None, help="qa: JSON lines of your users' real queries, each with the "
                                                       "passages that answer it (query, and passage_id, "
                                                       "passage_ids or doc_id of the pairs folder's passages): "
                                                       "early stopping, selection and calibration use them instead "
                                                       "of the folder's validation split, which the LLM wrote; "
                                                       "None: that split")
    train_queries: str | None = option(None, help="qa: JSON lines of your users' real queries in the "
                                                  "--validation-queries format: train on them instead of the "
                                                  "folder's train split, which the LLM wrote (its passages are "
                                                  "still the corpus). Measured on Natural Questions: 250-2,000 real "
                                                  "queries gained +1.0 to +2.6% NDCG@10 over cosine where the local "
                                                  "LLM's questions gained +0.6%, and the two together gained less "
                                                  "than the real ones alone (on Debian package descriptions they "
                                                  "tied). Validate on other real queries")
    train_labels: str | None = option(None, help="items: JSON lines of items you labelled yourself ('id' of the "
                                                 "folder's items or 'text', and 'label'; projector.formats.labels): "
                                                 "train on them instead of the LLM's labels (--keep-llm-train: "
                                                 "beside them). 40 labels of debian-pkgs' interface criterion "
                                                 "beat cosine by +14-17% test mAP")
    validation_labels: str | None = option(None, help="items: JSON lines of items you labelled yourself, in the "
                                                      "--train-labels format (other items): early stopping, "
                                                      "selection, the noise gate and calibration use them instead "
                                                      "of the folder's validation split, which the LLM labelled")
    min_llm_confidence: float | None = option(None, help="items labelled with log-probabilities (generate --judge "
                                                         "attribute on an endpoint that returns them): train only "
                                                         "on the LLM labels whose probability reaches this; None: "
                                                         "all")
    relabel_llm: bool = option(True, help="items, with --train-labels and --keep-llm-train: relabel the LLM's items "
                                          "with a label model fitted on your labels (its log-probabilities and the "
                                          "embedding -> your label; projector.train.labelmodel) and train on the "
                                          "--llm-keep most confident; --no-relabel-llm: the LLM's own labels")
    llm_keep: float | None = option(None, help="items labelled with probabilities: the fraction of the LLM's "
                                               "items that train, most confident first; default 0.5 relabelled "
                                               "beside your labels, 0.3 with the LLM's labels alone (both measured "
                                               "on debian-pkgs interface; see docs/criterion.md)")
    keep_llm_train: bool = option(False, help="with --train-queries or --train-labels: train on the folder's train "
                                              "split too (the LLM's questions or labels beside yours; for qa with "
                                              "the hard negatives "
                                              "projector teach judged for them), to compare on your validation "
                                              "queries")
    val_max_queries: int = option(2000, help="validation queries scored against the whole corpus each epoch")
    calibration_hard_negatives: int = option(5, help="Platt scaling of s, b on validation: top-cosine "
                                                     "non-relevant passages per query")
    calibration_random_negatives: int = option(5, help="Platt scaling of s, b on validation: uniformly drawn "
                                                       "non-relevant passages per query (as projector.evaluate "
                                                       "samples its calibration pairs)")
    device: str = option("auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    threads: int | None = option(None, help="CPU threads for torch; None: torch's default. On a busy machine 1 can "
                                            "be several times faster than oversubscribed cores (measured: 12 vs "
                                            "70-150 ms per step at load 6 on 2 cores)")
    seed: int = option(0, help="the same command and seed give the same matrices")
    cache_dir: str | None = option(None, help="embedding cache; None: $PROJECTOR_CACHE_DIR or "
                                              "~/.cache/projector/embeddings")
    encode_workers: int | None = option(None, help="encode with N processes (sentence-transformers' pool); None: "
                                                   "1 per GPU if there is more than one")
    encode_devices: str | None = option(None, help='comma list of devices for the encoding pool, e.g. '
                                                   '"cuda:0,cuda:1"')
    mmap_embeddings: bool = option(False, help="stream embeddings to OUT/embeddings/*.npy and train from memory maps "
                                               "(CPU; for embeddings larger than RAM)")
    sentence_transformers: bool = option(True, help="also write OUT/sentence-transformers/ (copies the encoder, "
                                                    "~90 MB)")

    def fingerprint(self) -> str:
        """Settings that change the trained matrices (not out/device/cache): a checkpoint resumes only on these."""
        skip = {"out", "device", "threads", "cache_dir", "sentence_transformers", "pairs", "encode_workers",
                "encode_devices", "mmap_embeddings",
                "judged_negatives",  # the data's fingerprint holds the negatives themselves
                "calibration_hard_negatives", "calibration_random_negatives",  # after the loop: resume still fine
                "select_confidence",
                "validation_queries", "train_queries", "keep_llm_train", "train_labels", "validation_labels",
                "min_llm_confidence", "relabel_llm", "llm_keep"}  # the data's fingerprint holds the queries themselves
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
