"""ivt_lib.analysis.plots: every figure function on small hand-built inputs (structure: axes, lines, bars, titles)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ivt_lib.analysis import plots  # noqa: E402
from ivt_lib.core.loop import StepRecord, Trajectory  # noqa: E402
from ivt_lib.core.prompts import refine_messages, with_answer  # noqa: E402
from ivt_lib.core.render import draw_box  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _traj(rec, ious, parse=None):
    parse = parse or [True] * len(ious)
    x1, y1, x2, y2 = rec["bbox"]
    steps = [StepRecord(text=f"Moving the box a little to the right, step {t}. " * 3,
                        box=(x1 + 3 * t, y1, x2 + 3 * t, y2) if ok else None, iou=v if ok else 0.0, parse_ok=ok,
                        reason=None if ok else "no_box")
             for t, (v, ok) in enumerate(zip(ious, parse))]
    return Trajectory(rec["id"], rec["family"], tuple(rec["bbox"]), rec["image"].width, rec["image"].height, steps)


def _metrics(accs, ious):
    return [{"acc@0.5": a, "mean_iou": m} for a, m in zip(accs, ious)]


def test_per_step_curves():
    runs = {"naive": _metrics([0.8, 0.6, 0.5], [0.7, 0.55, 0.45]), "sft": _metrics([0.8, 0.85], [0.7, 0.75])}
    fig = plots.per_step_curves(runs, title="my title")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2
        assert list(ax.get_xticks()) == [0, 1, 2]  # the longest run sets the ticks
    acc_line = fig.axes[0].get_lines()[0]
    assert list(acc_line.get_ydata()) == pytest.approx([80, 60, 50])  # accuracy in %
    assert list(fig.axes[1].get_lines()[1].get_ydata()) == pytest.approx([0.7, 0.75])
    assert fig.get_suptitle() == "my title"
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["naive", "sft"]


def test_stability_bars():
    stab = {"naive": {"improve": 0.2, "stay": 0.3, "degrade": 0.5},
            "sft": {"improve": 0.5, "stay": 0.4, "degrade": 0.1},
            "grpo": {"improve": 0.1, "stay": 0.85, "degrade": 0.05}}
    fig = plots.stability_bars(stab, title="bars")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    bars = _bars(ax)
    assert len(bars) == 9  # 3 categories x 3 configurations
    assert ax.get_title() == "bars"
    # stacked: each configuration's bars sum to 100 %
    tops = sorted(b.get_y() + b.get_height() for b in bars)
    assert tops[-3:] == pytest.approx([100, 100, 100])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["naive", "sft", "grpo"]


def test_sample_grid(test_samples):
    recs = test_samples[:5]
    trajs = [_traj(r, [0.5 + 0.1 * i, 0.3], parse=[i != 2, True]) for i, r in enumerate(recs)]
    fig = plots.sample_grid(recs, trajs, step=0, ncol=3)
    assert isinstance(fig, Figure) and len(fig.axes) == 6  # 2 rows x 3 columns
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(bool(t) for t in titles) == 5 and titles[5] == ""
    assert "IoU 0.50" in titles[0] and recs[0]["expression"][:34] in titles[0]
    assert "(parse fail)" in titles[2] and "(parse fail)" not in titles[1]
    assert sum(bool(ax.images) for ax in fig.axes) == 5
    fig1 = plots.sample_grid(recs, trajs, step=1, ncol=3)
    assert all("IoU 0.30" in ax.get_title() for ax in fig1.axes[:5])


def test_trajectory_figure(test_samples):
    recs = test_samples[:3]
    trajs = [_traj(r, [0.9, 0.6, 0.4], parse=[True, i != 1, True]) for i, r in enumerate(recs)]
    fig = plots.trajectory_figure(recs, trajs, title="trajectories")
    assert isinstance(fig, Figure) and len(fig.axes) == 9  # 3 samples x 3 steps
    assert fig.get_suptitle() == "trajectories"
    assert fig.axes[0].get_title().startswith("step 0: IoU 0.90")
    assert fig.axes[5].get_title() == "step 2: IoU 0.40"
    assert "(parse fail)" in fig.axes[4].get_title()
    assert fig.axes[3].get_ylabel() == recs[1]["expression"][:28] and fig.axes[4].get_ylabel() == ""
    assert plots.trajectory_figure(recs[:1], trajs[:1]).get_suptitle() == ""  # no title: no suptitle


def _trace_record(rec, step, T, answer):
    msgs = refine_messages(rec["expression"], (100, 100, 400, 400), step, T)
    return {"id": f"{rec['id']}-s{step}", "sample_id": rec["id"], "step": step, "T": T,
            "messages": with_answer(msgs, answer), "images": [draw_box(rec["image"], rec["bbox"])], "start_iou": None}


def test_trace_examples(test_samples):
    records = [_trace_record(r, 1 + i % 2, 2, f"The box is too far left. answer {i}") for i, r in
               enumerate(test_samples[:5])]
    fig = plots.trace_examples(records, ncol=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 8  # 2 rows x 4 columns
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith(f"{test_samples[0]['id']}-s1 (step 1/2)") and "answer 0" in titles[0]
    assert titles[1].startswith(f"{test_samples[1]['id']}-s2 (step 2/2)")
    assert titles[5:] == ["", "", ""]
    im = fig.axes[0].images[0].get_array()
    assert im.shape[:2] == (2 * test_samples[0]["image"].height, 2 * test_samples[0]["image"].width)
    assert len(plots.trace_examples([], ncol=3).axes) == 3  # no records: one empty row


def test_grpo_curves():
    logs = [{"iteration": i, "reward_mean": 0.1 * i, "reward_std": 0.2, "kl": 0.01 * i, "clip_frac": 0.05,
             "iou_per_step": [0.5, 0.55 + 0.01 * i, 0.6]} for i in range(4)]
    fig = plots.grpo_curves(logs)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 3]
    assert [ax.get_title() for ax in fig.axes] == ["reward (final step)", "KL and clipping", "rollout IoU per step"]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx([0, 0.1, 0.2, 0.3])
    assert list(fig.axes[2].get_lines()[1].get_xdata()) == [0, 1, 2, 3]


def test_grpo_validation_plots_val0_and_every_logged_point():
    v = lambda a: {"last_acc@0.5": a, "degradation": 0.1 - a / 10, "stay": 0.3}  # noqa: E731
    logs = [{"iteration": i, "reward_mean": 0.5, "kl": 0.01, **({"val": v(0.1 * i)} if i % 2 == 0 else {})}
            for i in range(1, 5)]
    fig = plots.grpo_validation({"a": (v(0.0), logs), "b": ({}, logs)})
    assert len(fig.axes) == 4
    a_acc, b_acc = fig.axes[0].get_lines()
    assert list(a_acc.get_xdata()) == [0, 2, 4] and list(a_acc.get_ydata()) == pytest.approx([0, 20, 40])
    assert list(b_acc.get_xdata()) == [2, 4]  # no val0: the curve starts at the first logged point
    assert len(fig.axes[3].get_lines()) == 4  # reward and KL per run


def test_paper_bars():
    rows = [{"configuration": "base, single shot", "ours acc@0.5": 0.5, "paper acc@0.5": 0.796},
            {"configuration": "SFT + GRPO + IVT", "ours acc@0.5": 0.6, "paper acc@0.5": 0.806},
            {"configuration": "single-step GRPO (trl), no iteration", "ours acc@0.5": 0.4, "paper acc@0.5": None}]
    fig = plots.paper_bars(rows)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    bars = _bars(ax)
    assert len(bars) == 6
    heights = [b.get_height() for b in bars]
    assert heights == pytest.approx([50, 60, 40, 79.6, 80.6, 0])  # a missing paper number is a zero bar
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "base,\nsingle shot"


def test_loop_illustration(test_samples):
    rec = test_samples[1]
    tr = _traj(rec, [0.6, 0.7, 0.8])
    fig = plots.loop_illustration(rec, tr)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("step 0: ground (IoU 0.60)")
    assert titles[2].startswith("step 2: refine (IoU 0.80)")
    assert all(len(t.split("\n")) <= 5 for t in titles)  # header + at most 4 wrapped lines of text
    assert rec["expression"] in fig.get_suptitle()
    # what the model saw: the raw image at step 0, the previous box drawn (in red) afterwards
    a0, a1 = fig.axes[0].images[0].get_array(), fig.axes[1].images[0].get_array()
    assert (a0 != a1).any()


def test_per_step_seeds_shows_mean_and_spread_over_seeds():
    ps = lambda a: [{"acc@0.5": a, "mean_iou": a / 2}, {"acc@0.5": a - 0.1, "mean_iou": a / 2 - 0.05}]  # noqa: E731
    fig = plots.per_step_seeds({"SFT + IVT": {0: ps(0.7), 1: ps(0.72), 2: ps(0.68)}})
    ax = fig.axes[0]
    assert "3 seeds" in ax.get_legend_handles_labels()[1][0] or "3 seeds" in fig.axes[1].get_legend_handles_labels()[1][0]
    ys = [line.get_ydata() for line in ax.lines if len(line.get_ydata()) == 2]
    assert any(abs(y[0] - 70.0) < 1e-9 for y in ys)  # the mean curve
    from ivt_lib.analysis import forest
    assert forest.text_problems(fig) == []


def test_grpo_validation_carries_a_wilson_band_when_n_is_logged():
    val = {"last_acc@0.5": 0.6, "degradation": 0.1, "stay": 0.3, "n": 150}
    logs = [{"iteration": 10, "val": {**val, "last_acc@0.5": 0.62}, "reward_mean": 0.5, "kl": 0.01}]
    fig = plots.grpo_validation({"run": (val, logs)})
    assert fig.axes[0].collections, "no interval drawn"
