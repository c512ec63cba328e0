"""Shared fixtures: small CPU budgets, a tiny randomly initialised model built once per session."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import ivt_lib  # noqa: E402,F401  (the torchvision shim must run before transformers is imported)
import pytest  # noqa: E402

from ivt_lib.configs import ROOT  # noqa: E402

BASE_MODEL = ROOT / "data" / "base_model"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A freshly built (untrained) tiny Qwen3-VL saved to disk."""
    from ivt_lib.embedded.tiny_model import build_tiny

    d = tmp_path_factory.mktemp("tiny")
    build_tiny(d)
    return d


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """(model, processor) loaded from the tiny folder through the one loader."""
    from ivt_lib.core.models import load_model

    return load_model(tiny_dir, device="cpu")


@pytest.fixture(scope="session")
def test_samples():
    """The first 12 samples of the committed test split."""
    from ivt_lib.corpora.splits import load_split

    return load_split("test", limit=12)


def _redirect(params: dict, root) -> dict:
    """Point every output (and the upstream inputs that notebooks pass along) into ``root``."""
    out = dict(params)
    for k in ("results_dir", "figures_dir", "runs_dir"):
        out[k] = str(root / k)
    return out


@pytest.fixture(scope="session")
def smoke_chain(tmp_path_factory):
    """Run every notebook of the smoke tier in order, as `make reproduce TIER=smoke` does, in a fresh folder."""
    import os

    from ivt_lib.core import progress
    from ivt_lib.reproduction import executor
    from ivt_lib.configs import load_tier

    root = tmp_path_factory.mktemp("smoke")
    tier = load_tier("smoke")
    errors = {}
    saved = {k: os.environ.get(k) for k in progress.QUIET_ENV}
    progress.quiet()  # as ivt_lib.reproduction.reproduce runs them: unattended
    for nb in executor.notebooks():
        try:
            executor.execute(nb, root / nb.name, _redirect(tier[nb.stem], root))
        except Exception as exc:  # recorded per notebook; later notebooks may still run
            errors[nb.stem] = exc
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return root, errors
