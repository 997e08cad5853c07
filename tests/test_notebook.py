"""notebooks/walkthrough.ipynb executes top to bottom without an error (so it cannot rot).

The notebook drives the real embedded local LLM (a dozen passages, a rewrite of three, then the criterion
demo's 150 attribute judgments of bundled Debian programs, 40 of them with labels standing in for yours): minutes on 2 cores, hence marked `llm`. It runs on a
temp copy, in a fresh kernel, with its runs written under the test's temp folder; the committed notebook is
never modified. Run alone: pytest tests/test_notebook.py
"""
import os

import pytest

pytestmark = pytest.mark.llm

CELL_TIMEOUT = 1800  # seconds per cell: the generate cell waits on the LLM, slow on a busy 2-core machine


def test_walkthrough_notebook_runs_without_error(tmp_path, repo, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason='needs pip install -e ".[dev]"')
    nbclient = pytest.importorskip("nbclient", reason='needs pip install -e ".[dev]"')
    pytest.importorskip("ipykernel", reason='needs pip install -e ".[dev]"')
    pytest.importorskip("llama_cpp", reason='needs pip install "llama-cpp-python[server]" (scripts/setup.sh does)')

    nb = nbformat.read(repo / "notebooks" / "walkthrough.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook with outputs cleared: jupyter nbconvert --clear-output --inplace notebooks/walkthrough.ipynb"

    # The kernel inherits this environment: offline, the test's embedding cache (conftest), runs in tmp.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("PROJECTOR_REPO", str(repo))
    monkeypatch.setenv("PROJECTOR_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()  # raises CellExecutionError naming the cell and its traceback
    finally:
        nbformat.write(nb, tmp_path / "walkthrough.executed.ipynb")  # what ran, for a look after a failure

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "generate:" in text and "train:" in text and "same nationality" in text and "before (original_text)" in text
    # The criterion demo got to its last line: cosine vs projector on the held-out, human-labelled programs.
    assert "generate --judge attribute:" in text and "criterion demo (150 held-out programs" in text
    assert "cosine mAP" in text and "projector mAP" in text and "the LLM's labels alone" in text
    assert "the LLM agrees with your labels on" in text  # label quality, said before the long run
    assert os.path.isfile(tmp_path / "runs" / "criterion" / "eval" / "report.json")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the report's plots are shown inline"
    assert os.path.isfile(tmp_path / "runs" / "model" / "projector.json")
