"""Shared CLI plumbing: a user-fixable error is one line on stderr and a non-zero exit, never a traceback."""
import logging
import signal
import sys

from projector.errors import ProjectorError


def run(main_fn, stage: str, argv=None) -> int:
    """Call ``main_fn(argv)``; turn ProjectorError into one line + exit 2, Ctrl-C into exit 130."""
    logging.basicConfig(level=logging.INFO, format=f"projector.{stage}: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "sentence_transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per request would bury the progress bar
    def _terminate(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (kill, a scheduler's stop) cleans up like Ctrl-C: servers stopped, log kept

    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals to the host
        pass
    try:
        main_fn(argv)
    except ProjectorError as e:
        print(f"projector.{stage}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"projector.{stage}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    return 0
