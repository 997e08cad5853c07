"""benchmarks/generation_throughput.py rewrites its tables but keeps the findings people wrote under them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from generation_throughput import with_findings  # noqa: E402

NEW = "# Generation throughput\n\n| run | pairs/s |\n|---|---|\n| b | 0.5 |\n\n## Commands\n\n```bash\nrun b\n```\n"
OLD = ("# Generation throughput\n\n| run | pairs/s |\n|---|---|\n| a | 0.4 |\n\n"
       "## Findings (written by hand)\n\n- **4 a request: 1.31x.** Measured on a quiet machine.\n\n  | x | y |\n\n"
       "## Commands\n\n```bash\nrun a\n```\n")


def test_a_rerun_keeps_the_hand_written_findings_and_takes_the_new_tables():
    md = with_findings(NEW, OLD)
    assert "| b | 0.5 |" in md and "| a | 0.4 |" not in md and "run b" in md and "run a" not in md
    assert "## Findings (written by hand)\n\n- **4 a request: 1.31x.** Measured on a quiet machine.\n\n  | x | y |" in md
    assert md.index("## Findings") < md.index("## Commands") and md.count("## Findings") == 1
    assert with_findings(NEW, None) == NEW and with_findings(NEW, NEW) == NEW
    assert with_findings(NEW, md) == md  # a rerun of the rewritten file: the same file
