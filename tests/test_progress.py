"""Progress bars on for people, off for unattended runs (ivt_lib.core.progress)."""
import os

import pytest

from ivt_lib.core import progress


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("0", False), ("off", False), ("False", False)])
def test_enabled_reads_the_environment(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(progress.ENV, raising=False)
    else:
        monkeypatch.setenv(progress.ENV, value)
    assert progress.enabled() is on


def test_quiet_switches_off_ours_and_the_libraries(monkeypatch):
    for k in progress.QUIET_ENV:
        monkeypatch.setenv(k, "1" if k == progress.ENV else "0")  # recorded, so quiet() is undone after the test
    progress.quiet()
    assert not progress.enabled()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"


def test_loop_prints_no_bar_when_quiet(monkeypatch, capsys, test_samples):
    from ivt_lib.core.loop import Generation, run_loop

    class Box:
        def generate(self, messages, images):
            return [Generation('{"bbox_2d": [1, 1, 500, 500]}', -0.1) for _ in messages]

    monkeypatch.setenv(progress.ENV, "1")
    run_loop(Box(), test_samples[:2], T=2, show_progress=True)
    assert "refine steps" in capsys.readouterr().err
    monkeypatch.setenv(progress.ENV, "0")
    run_loop(Box(), test_samples[:2], T=2, show_progress=True)
    assert "refine steps" not in capsys.readouterr().err


def test_quiet_trainer_drops_the_log_printer(tmp_path):
    """Unattended (no progress bars), Trainer prints each log dict; the notebooks plot log_history instead."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True, report_to="none", use_cpu=True)
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
    kinds = lambda: [type(c) for c in trainer.callback_handler.callbacks]  # noqa: E731
    assert PrinterCallback in kinds()
    assert progress.quiet_trainer(trainer) is trainer and PrinterCallback not in kinds()
