"""ivt_lib: Iterative Visual Thinking companion library, in wings whose imports run one way, toward ``core``.

``core`` (boxes, parsing, render, prompts, rewards, the loop, metrics, stats, the model loader) <- ``configs`` <-
``corpora`` (scenes and splits, the paper's real sets) <- ``embedded`` (the tiny stand-in model and its training) <-
``training`` (teacher, SFT, GRPO) <- ``analysis`` (evaluation, probes, plots, the explorer) <- ``reproduction``
(papermill runs, lanes, seeds, sweeps, the report). ``tests/test_layout.py`` keeps that order and forbids cycles.
"""
from .core import compat as _compat

_compat.apply()  # must run before anything imports transformers/torchvision

__version__ = "0.1.0"
