"""The forest plot of the verdict, and the figure check: no text outside the canvas, no overlapping tick labels."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ivt_lib.analysis import forest, plots  # noqa: E402
from ivt_lib.configs import ROOT  # noqa: E402

LONG = ["base + naive iteration", "refine-mix base + naive iteration (ablation)", "SFT + IVT",
        "SFT (ours: keep data) + IVT", "SFT + GRPO + IVT", "SFT + GRPO (ours: refine credit) + IVT"]


def test_the_check_catches_overlapping_ticks_and_text_off_the_canvas():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(LONG, [1] * len(LONG))
    fig.text(1.2, 0.5, "off the canvas")
    problems = forest.text_problems(fig)
    assert any("overlapping tick labels" in p for p in problems)
    assert "outside the canvas: 'off the canvas'" in problems
    plt.close(fig)


def test_forest_plot_of_the_committed_verdict_is_readable():
    ev = json.loads((ROOT / "results" / "evaluation.json").read_text())
    fig = forest.forest_figure(ev["deployable_vs_oracle"])
    assert forest.text_problems(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    rows = [r for r in ev["deployable_vs_oracle"] if r["configuration"] != forest.BASE]
    assert len(labels) == len(rows)  # every configuration x rule, base single shot being the zero line
    assert sum("ORACLE" in t for t in labels) == sum("ORACLE" in r["rule"] for r in rows)
    assert all("pass" in t for t in labels)  # each row shows its forward passes
    plt.close(fig)


def test_stability_bars_with_long_names_and_the_papers_shares_are_readable():
    stab = {n: {"improve": 0.1, "stay": 0.3, "degrade": 0.6, "n": 505} for n in LONG}
    fig = plots.stability_bars(stab, paper={"SFT + IVT": {"degrade": 0.634}, "SFT + GRPO + IVT": {"degrade": 0.248}})
    assert forest.text_problems(fig) == []
    assert any("paper" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)
