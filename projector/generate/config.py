"""generate's options, one field per command-line flag (``projector.cli``): plain and visible in one place.
``projector.generate.stage`` runs them; the LLM endpoint's options are ``projector.llm.runner.EndpointOptions``,
the endpoint encoder's ``projector.embed.endpoint.EncoderOptions``."""
from __future__ import annotations

from dataclasses import dataclass

from projector.cli import option
from projector.embed.endpoint import EncoderOptions
from projector.generate import qa, sampling
from projector.llm.runner import EndpointOptions


@dataclass
class GenerateConfig(EndpointOptions, EncoderOptions):
    """generate's options; the LLM endpoint's are ``projector.llm.runner.EndpointOptions``."""

    corpus: str = option(help="JSONL/CSV/Parquet file, folder of .txt/.md files, or a saved datasets folder")
    out: str = option(help="output folder (created; re-running with the same settings resumes)")
    task: str = option("qa", choices=("qa", "pairs"),
                       help="qa: questions the LLM writes for each passage (query -> passage); pairs: candidate "
                            "pairs the LLM labels similar or not in the sense of --criterion")
    text_field: str = option("text", help="field holding the text (JSONL/CSV/Parquet/datasets)")
    id_field: str | None = option(None, help="field holding a unique document id; None numbers the rows")
    title_field: str | None = option("title", help="optional field holding a title (shown to the LLM)")
    chunk_tokens: int = option(200, help="passage size in encoder tokens (all-MiniLM-L6-v2 reads at most 256)")
    chunk_overlap: int = option(32, help="tokens shared by consecutive passages of one document")
    encoder: str | None = option(None, help="sentence-transformers name or folder whose tokenizer sizes passages "
                                            "(and that embeds, for --task pairs); None: the bundled "
                                            "all-MiniLM-L6-v2")
    questions_per_passage: int = option(2, help="qa: questions asked per passage (one request each: more per "
                                                "request share the passage's prompt cost)")
    query_examples: str | None = option(None, help="qa: a file of 1-16 (best 4-8) real queries of your users, one a "
                                                   "line (or JSON lines with a text or query field, and best a "
                                                   "passage field: the passage the query finds), shown to the LLM "
                                                   "as style examples (with passages: few-shot pairs, prompt "
                                                   "qa-shots); None: a mix of query forms")
    prompt_version: str = option("v2", choices=qa.PROMPT_VERSIONS,
                                 help="qa: the packaged prompt; v2: a mix of query forms (keyword query, "
                                      "question, statement) or --query-examples' style, shared text first and "
                                      "the passage last; v1: two similar questions (runs made before v2)")
    max_passages: int | None = option(
        None, help="qa: generate for a seeded sample of this many passages; the sample only grows, so a "
                   "larger number later keeps what was made (None: all)",
        unset_by=("--all", "generate for every passage (drops --max-passages)"))
    sample: str = option("uniform", choices=sampling.SAMPLES,
                         help="qa: how --max-passages are chosen; uniform: a seeded random sample; cover: the "
                              "passages nearest the centroids of k-means clusters of the frozen embeddings, "
                              "coarse to fine (embeds the corpus once, through the cache)")
    criterion: str | None = option(None, help='pairs: the sense of similarity the LLM judges, e.g. "same nationality"')
    judge: str = option("pairwise", choices=("pairwise", "attribute"),
                        help="pairs: pairwise: the LLM judges candidate pairs (one call per pair); attribute: the "
                             "LLM names each item's value for --criterion once (one call per item, every two "
                             "labelled items a pair; rows are items: id, text, label, split)")
    labels: str | None = option(None, help='attribute: the label set, "a,b=synonym|other spelling,c" (synonyms '
                                           "and spellings are merged onto each name; unsure answers are kept as "
                                           "unknown); None: the LLM proposes a set once from a sample of train "
                                           "items")
    label_probabilities: str = option("auto", choices=("auto", "on", "off"),
                                      help="attribute: ask each item with the labels as lettered options and read "
                                           "one token's log-probabilities as a distribution over the label set "
                                           "(kept in records.jsonl and the items' confidence/distribution "
                                           "columns; no unknown); auto: if a probe at the start finds the "
                                           "endpoint returns them, else JSON replies; off: JSON replies")
    trusted_labels: str | None = option(None, help="attribute: JSON lines of items you labelled yourself ('id' or "
                                                   "'text', and 'label'): asked first, the LLM's agreement with "
                                                   "them said before the long run and kept in manifest.json "
                                                   "(label_quality); without --labels their labels are the set")
    neighbours: int = option(3, help="pairs: nearest neighbours per item under the frozen encoder as candidates "
                                     "(likely positives)")
    random_pairs: int = option(2, help="pairs: random partners per item as candidates (likely negatives)")
    max_items: int | None = option(None, help="pairs: items to draw candidates for, a seeded sample (None: all)")
    rewrite: bool = option(False, help="first rewrite every passage into plain content (recorded in the manifest, "
                                       "to be applied the same way in production)")
    rewrite_prompt_file: str | None = option(None, help="override the rewrite prompt (string.Template with $text)")
    prompt_file: str | None = option(None, help="override the task prompt (string.Template with $passage, $title, "
                                                "$n; $text_a, $text_b, $criterion)")
    validation_fraction: float = option(0.1, help="share of --split-by units in the validation split")
    test_fraction: float = option(0.1, help="share of --split-by units in the test split")
    split_by: str = option("passage", choices=("passage", "document"),
                           help="the unit no two splits share (document: all passages of a document together)")
    seed: int = option(0, help="seeds the passage/item sample, the candidate pairs and the splits")
    retry_failed: bool = option(False, help="on resume, ask again for requests recorded as failed")
    batch: bool = option(False, help="send requests through the OpenAI Batch API (files + batches) instead of live")
    batch_poll: float = option(30.0, help="with --batch: seconds between batch status checks")
    batch_file_only: bool = option(False, help="with --batch: only write the request JSONL (for vLLM's offline "
                                               "run_batch)")
    batch_results: str | None = option(None, help="with --batch: collect results from this JSONL (an offline "
                                                  "runner's output)")

    def settings(self) -> dict:
        """What must match for a re-run to resume the same run (not the endpoint or speed settings).

        The sample sizes (--max-passages, --max-items) may change: the seeded sample only grows, so a run of
        60 passages extends to 200 or --all, keeping what was made.
        """
        keep = ("task", "text_field", "id_field", "title_field", "chunk_tokens", "chunk_overlap", "encoder",
                "questions_per_passage", "criterion", "neighbours", "random_pairs",
                "rewrite", "seed", "split_by", "validation_fraction", "test_fraction")
        if self.judge != "pairwise":  # named only when set, so runs made before --judge still resume
            keep += ("judge", "labels")
        if self.sample != "uniform":  # likewise for --sample
            keep += ("sample",)
        return {k: getattr(self, k) for k in keep}
