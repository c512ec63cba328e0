"""Progress bars: live widgets when a person runs a notebook, none in an unattended papermill run, where only the
widgets' frozen text fallback ("generate: 0%| | 0/16") would survive into the executed notebook.

``make reproduce`` (``ivt_lib.reproduction.reproduce``) sets :data:`QUIET_ENV` for the kernels it starts; ivt's own bars and the
Trainer's read :func:`enabled`, and transformers / datasets read their own variables (weights loading, shard writing).
"""
from __future__ import annotations

import os

ENV = "IVT_PROGRESS"
QUIET_ENV = {ENV: "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def enabled() -> bool:
    """False when ``IVT_PROGRESS`` is 0/false/off (an unattended run), else True."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def quiet() -> None:
    """Turn every progress bar off for this process and the kernels it starts (papermill runs)."""
    os.environ.update(QUIET_ENV)


def quiet_trainer(trainer):
    """Without progress bars, transformers' Trainer prints every log dict (``{'loss': '0.7179', ...}``) through its
    PrinterCallback; drop it: the logs stay in ``trainer.state.log_history``, which the notebooks plot. Returns it."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer
