"""Shared fixtures: small CPU budgets, a tiny randomly initialised model built once per session."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import ivt_lib  # noqa: E402,F401  (the torchvision shim must run before transformers is imported)
import pytest  # noqa: E402

from ivt_lib.config import ROOT  # noqa: E402

BASE_MODEL = ROOT / "data" / "base_model"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A freshly built (untrained) tiny Qwen3-VL saved to disk."""
    from ivt_lib.tiny_model import build_tiny

    d = tmp_path_factory.mktemp("tiny")
    build_tiny(d)
    return d


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """(model, processor) loaded from the tiny folder through the one loader."""
    from ivt_lib.models import load_model

    return load_model(tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def test_samples():
    """The first 12 samples of the committed test split."""
    from ivt_lib.data import load_split

    return load_split("test", limit=12)
