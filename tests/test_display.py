"""How notebooks show tables and log lines (ivt_lib.analysis.display)."""
import logging

import pandas as pd

from ivt_lib.analysis import display
from ivt_lib.configs import ROOT


def test_tables_read_like_the_paper():
    df = pd.DataFrame({"acc@0.5": [0.72871, float("nan")], "mean_iou": [0.665962, 0.5], "n": [505, 12],
                       "ci_acc@0.5": [[-0.0772, -0.0238], [0.0, 0.1]], "configuration": ["a", "b"]})
    out = display.paper_frame(df)
    assert list(out.columns) == ["acc@0.5 (%)", "mean_iou", "n", "ci_acc@0.5 (%)", "configuration"]
    assert out.iloc[0].tolist() == ["72.9", "0.666", "505", "[-7.7, -2.4]", "a"]
    assert out.iloc[1, 0] == "–"  # a missing number is a dash, never NaN


def test_paths_are_shown_relative_to_the_project():
    assert display.rel(ROOT / "data" / "base_model") == "data/base_model"
    assert display.rel("/elsewhere/model") == "/elsewhere/model"


def test_log_lines_go_to_stdout_without_machine_paths(capsys, monkeypatch):
    import warnings

    lib = logging.getLogger("ivt_lib")  # put back afterwards: other tests read these loggers through caplog
    monkeypatch.setattr(lib, "handlers", list(lib.handlers))
    monkeypatch.setattr(lib, "propagate", lib.propagate)
    monkeypatch.setattr(lib, "level", lib.level)
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    display.setup_notebook()
    logging.getLogger("ivt_lib.core.models").info("loaded %s (4.9 M params)", ROOT / "data" / "base_model")
    out = capsys.readouterr()
    assert out.out == "loaded data/base_model (4.9 M params)\n" and out.err == ""
