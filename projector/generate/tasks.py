"""The generation tasks, one entry each in ``TASKS``: what the LLM is asked (the prompt, the jobs), the rows its
replies become (and the pairs folder's layout they go to), and what the manifest and the summary say of them.

``projector.generate.stage`` runs whichever task ``task_for(cfg)`` names, through the methods of ``Task`` and
nothing else: a new task is a class beside the others and one line in ``TASKS``, not another branch in the stage.

  qa         questions a passage answers, one request per passage (``projector.generate.qa``)
  pairwise   candidate pairs judged similar or not under --criterion (``projector.generate.pairwise``)
  attribute  each item's value for --criterion, once (``projector.generate.judging`` runs it,
             ``projector.generate.attribute`` owns its labels and rows)
"""
from __future__ import annotations

from typing import Protocol

from projector.generate.judging import AttributeTask
from projector.generate.pairwise import PairwiseTask
from projector.generate.qa import QuestionsTask
from projector.llm.client import Prompt
from projector.llm.records import Job


class Task(Protocol):
    name: str       # the key in TASKS
    layout: str     # the pairs folder layout its rows are written in (projector.formats.pairs)
    progress: str   # what the progress line calls the work
    prompt: Prompt  # the task's prompt (its version is part of what a resume must match)
    logprobs: bool  # the embedded server must return log-probabilities

    def prepare(self, passages, split_of: dict) -> None:
        """Read what the task needs beside the corpus, before any LLM call (bad input fails here); may move
        items between splits (``split_of``: passage_id -> split)."""

    def resume_identity(self) -> dict:
        """Settings beyond the config's that a resumed run must share (e.g. the query examples' fingerprint)."""

    def jobs(self, llm, passages, split_of: dict, done: dict, records) -> list[Job]:
        """The requests of this run (``done``: the recorded results by key; a task may run preliminary jobs)."""

    def rows(self, jobs: list[Job], done: dict, passages, split_of: dict) -> tuple[list[dict], int]:
        """The dataset rows from the recorded results (the record log is the only source of truth), and how many
        requests failed for good."""

    def manifest(self, manifest: dict, rows: list[dict], jobs: list[Job], done: dict) -> None:
        """Add the task's fields and counts to ``manifest`` (in place)."""

    def report(self, manifest: dict, rows: list[dict]) -> list[str]:
        """Lines said after the run's summary."""

    def check(self, manifest: dict, rows: list[dict]) -> None:
        """Refuse (ProjectorError) a folder that cannot train, once everything is written."""


TASKS: dict[str, type] = {"qa": QuestionsTask, "pairwise": PairwiseTask, "attribute": AttributeTask}


def task_name(cfg) -> str:
    """The registry key of a config: --task qa, or --task pairs with its --judge."""
    return "qa" if cfg.task == "qa" else cfg.judge


def task_for(cfg, out) -> Task:
    """The task a config runs, built (its prompt read and its inputs checked) for the folder ``out``."""
    return TASKS[task_name(cfg)](cfg, out)
