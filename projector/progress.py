"""The training progress bar: one tqdm bar over every batch of every epoch, shown on a terminal only.

    bar = TrainingBar(epochs=cfg.epochs, steps=steps, done_epochs=state["epoch"], enabled=main)
    bar.step()                        # after each batch: the bar moves, with pairs/s and ETA
    bar.epoch(row, better, log, msg, *args)   # after validation: postfix (loss, val metric) + the epoch's log line
    bar.close()

Why batches, not epochs: an epoch over a million pairs takes minutes, and no stage should stay silent for
more than a few seconds. The ETA assumes every epoch runs; early stopping ends sooner. On a pipe or a log
file (CI, tests, ``> train.log``) tqdm draws nothing (``disable=None``) and the per-epoch log lines are
all there is, as before; on a terminal those lines are written above the bar instead of through it.
"""
from __future__ import annotations

import logging

from tqdm import tqdm


class TrainingBar:
    def __init__(self, epochs: int, steps: int, done_epochs: int = 0, enabled: bool = True):
        self.epochs = epochs
        self._bar = tqdm(total=epochs * steps, initial=done_epochs * steps, unit="batch", dynamic_ncols=True,
                         desc=f"epoch {min(done_epochs + 1, epochs)}/{epochs}", disable=None if enabled else True,
                         leave=True)
        self.shown = not self._bar.disable

    def step(self, n: int = 1) -> None:
        self._bar.update(n)

    def epoch(self, row: dict, better: bool, log: logging.Logger, msg: str, *args, key: str = "val_ndcg@10") -> None:
        """After an epoch: the bar's postfix (the loss and ``row[key]``, the early-stopping metric), and
        ``log.info(msg, *args)`` written so that it does not tear the bar."""
        if self.shown:
            self._bar.set_postfix({"loss": f"{row['train_loss']:.4f}",
                                   key.replace("@10", ""): f"{row[key]:.4f}{' (best)' if better else ''}"},
                                  refresh=False)
            if row["epoch"] < self.epochs:
                self._bar.set_description(f"epoch {row['epoch'] + 1}/{self.epochs}", refresh=False)
            if log.isEnabledFor(logging.INFO):
                self._bar.write(f"projector.train: {msg % args}")   # the CLI's log format (projector.cli)
        else:
            log.info(msg, *args)

    def close(self) -> None:
        self._bar.close()
