"""Paper-style figures: per-step curves, improve/degrade/stay bars, sample and trajectory grids."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

if matplotlib.get_backend().lower() != "module://matplotlib_inline.backend_inline":
    matplotlib.use("Agg")  # headless scripts and tests; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402

from ..core.loop import Trajectory  # noqa: E402
from ..core.render import draw_boxes  # noqa: E402

GT_RGB, PRED_RGB = (0, 230, 0), (255, 40, 40)


def per_step_curves(runs: Mapping[str, Sequence[dict]], title: str = "IoU and accuracy per refinement step"):
    """Acc@0.5 and mean IoU against the step, one line per configuration (``runs[name] = per_step metrics``), with
    95 % bands (Wilson for Acc@0.5, ±1.96 SE for mean IoU) and full-scale axes, so a few samples never look like a
    collapse."""
    from ..core.stats import proportion_ci

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, ps in runs.items():
        steps = list(range(len(ps)))
        line = axes[0].plot(steps, [m["acc@0.5"] * 100 for m in ps], marker="o", label=name)[0]
        if all("n" in m for m in ps):
            ci = [proportion_ci(round(m["acc@0.5"] * m["n"]), m["n"]) for m in ps]
            axes[0].fill_between(steps, [100 * lo for lo, _ in ci], [100 * hi for _, hi in ci],
                                 color=line.get_color(), alpha=0.15)
        axes[1].plot(steps, [m["mean_iou"] for m in ps], marker="o", label=name, color=line.get_color())
        if all("mean_iou_se" in m for m in ps):
            axes[1].fill_between(steps, [m["mean_iou"] - 1.96 * m["mean_iou_se"] for m in ps],
                                 [m["mean_iou"] + 1.96 * m["mean_iou_se"] for m in ps], color=line.get_color(),
                                 alpha=0.15)
    axes[0].set(xlabel="step (0 = grounding)", ylabel="Acc@0.5 (%)", ylim=(0, 100))
    axes[1].set(xlabel="step (0 = grounding)", ylabel="mean IoU", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(range(max(len(p) for p in runs.values())))
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def stability_bars(stab: Mapping[str, Mapping[str, float]], title: str = "Last step vs step 0",
                   paper: Mapping[str, Mapping[str, float]] | None = None):
    """Improve / stay / degrade shares per configuration, with 95 % Wilson error bars on improve and degrade when
    the sample count ``n`` is known, and the paper's degrade share (``paper[name]["degrade"]``) as a black tick."""
    import textwrap

    from ..core.stats import proportion_ci

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(stab), 3.6))
    names = list(stab)
    bottom = [0.0] * len(names)
    for key, colour in (("improve", "#2a9d4b"), ("stay", "#9a9a9a"), ("degrade", "#d1495b")):
        vals = [stab[n][key] * 100 for n in names]
        ax.bar(names, vals, bottom=bottom, color=colour, label=key)
        if key != "stay":
            for i, n in enumerate(names):
                if stab[n].get("n"):
                    lo, hi = proportion_ci(round(stab[n][key] * stab[n]["n"]), stab[n]["n"])
                    top = bottom[i] + vals[i]
                    ax.errorbar([i], [top], yerr=[[vals[i] - 100 * lo], [100 * hi - vals[i]]], color="k", capsize=3,
                                lw=1)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, n in enumerate(names):
        if paper and n in paper and "degrade" in paper[n]:  # degrade is the top segment: it starts at 100 - share
            ax.plot([i - 0.45, i + 0.45], [100 - 100 * paper[n]["degrade"]] * 2, color="k", lw=2.5,
                    label="paper's degrade share (starts here)" if i == min(j for j, m in enumerate(names)
                                                                           if m in paper) else None)
    ax.set_xticks(range(len(names)), [textwrap.fill(n, 16) for n in names], fontsize=8)
    ax.set(ylabel="% of samples", ylim=(0, 100), title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def sample_grid(samples: Sequence[dict], trajs: Sequence[Trajectory], step: int = 0, ncol: int = 6):
    """Ground truth (green) and the prediction at ``step`` (red) for a few samples, with the expression and IoU."""
    n = len(samples)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.5 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s, tr in zip(axes.flat, samples, trajs):
        st = tr.steps[step]
        ax.imshow(draw_boxes(s["image"], [(s["bbox"], GT_RGB), (st.box, PRED_RGB)], scale=2))
        ax.set_title(f"{s['expression'][:34]}\nIoU {st.iou:.2f}" + ("" if st.parse_ok else " (parse fail)"),
                     fontsize=6.5)
    fig.tight_layout()
    return fig


def trajectory_figure(samples: Sequence[dict], trajs: Sequence[Trajectory], title: str = ""):
    """One row per sample, one column per step: GT (green) and the step's box (red) with its IoU."""
    nstep = len(trajs[0].steps)
    fig, axes = plt.subplots(len(samples), nstep, figsize=(2.1 * nstep, 2.2 * len(samples)), squeeze=False)
    for r, (s, tr) in enumerate(zip(samples, trajs)):
        for c, st in enumerate(tr.steps):
            ax = axes[r][c]
            ax.imshow(draw_boxes(s["image"], [(s["bbox"], GT_RGB), (st.box, PRED_RGB)], scale=2))
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"step {c}: IoU {st.iou:.2f}" + ("" if st.parse_ok else " (parse fail)"), fontsize=7)
            if c == 0:
                ax.set_ylabel(s["expression"][:28], fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def trace_examples(records: Sequence[dict], ncol: int = 4):
    """Teacher-trace training examples: the image the model sees (previous box drawn) and the teacher's answer."""
    import textwrap

    n = len(records)
    nrow = max(1, (n + ncol - 1) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, records):
        img = r["images"][0]
        ax.imshow(img.resize((img.width * 2, img.height * 2)))
        answer = r["messages"][-1]["content"][0]["text"]
        ax.set_title(f"{r['id']} (step {r['step']}/{r['T']})\n" + "\n".join(textwrap.wrap(answer, 44)), fontsize=6)
    fig.tight_layout()
    return fig


def grpo_curves(logs: Sequence[dict]):
    """GRPO training curves: reward mean/std, KL, clip fraction and per-step IoU of the rollouts."""
    it = [e["iteration"] for e in logs]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].plot(it, [e["reward_mean"] for e in logs], label="reward mean")
    axes[0].plot(it, [e["reward_std"] for e in logs], label="reward std")
    axes[1].plot(it, [e["kl"] for e in logs], label="KL to SFT")
    axes[1].plot(it, [e["clip_frac"] for e in logs], label="clip fraction")
    steps = len(logs[0]["iou_per_step"]) if logs else 0
    for t in range(steps):
        axes[2].plot(it, [e["iou_per_step"][t] for e in logs], label=f"IoU step {t}")
    for ax, title in zip(axes, ("reward (final step)", "KL and clipping", "rollout IoU per step")):
        ax.set(xlabel="GRPO update", title=title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def grpo_validation(runs: Mapping[str, tuple[dict, Sequence[dict]]]):
    """GRPO validation curves, one line per run (``runs[name] = (val0, training logs)``): greedy last-step Acc@0.5,
    per-step degradation and stay share on the fixed validation subset, beside the training reward and KL; the
    accuracy carries its 95 % Wilson band when the subset's size ``n`` is logged."""
    from ..core.stats import proportion_ci

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for name, (val0, logs) in runs.items():
        pts = ([(0, val0)] if val0 else []) + [(e["iteration"], e["val"]) for e in logs if "val" in e]
        line = axes[0].plot([i for i, _ in pts], [100 * v["last_acc@0.5"] for _, v in pts], marker="o", label=name)[0]
        if pts and all(v.get("n") for _, v in pts):  # 95 % Wilson band: how much of the curve is noise
            ci = [proportion_ci(round(v["last_acc@0.5"] * v["n"]), v["n"]) for _, v in pts]
            axes[0].fill_between([i for i, _ in pts], [100 * lo for lo, _ in ci], [100 * hi for _, hi in ci],
                                 color=line.get_color(), alpha=0.15)
        axes[1].plot([i for i, _ in pts], [v["degradation"] for _, v in pts], marker="o", color=line.get_color())
        axes[2].plot([i for i, _ in pts], [100 * v["stay"] for _, v in pts], marker="o", color=line.get_color())
        it = [e["iteration"] for e in logs]
        axes[3].plot(it, [e["reward_mean"] for e in logs], color=line.get_color(), alpha=0.8, label=f"{name}: reward")
        axes[3].plot(it, [10 * e["kl"] for e in logs], color=line.get_color(), ls=":", label=f"{name}: 10 x KL")
    titles = ("validation last-step Acc@0.5 (%)", "validation degradation", "validation stay (%)", "training")
    for ax, title in zip(axes, titles):
        ax.set(xlabel="GRPO update", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=6)
    fig.tight_layout()
    return fig


def paper_bars(rows: Sequence[dict]):
    """Our Acc@0.5 beside the paper's, per configuration (different models and data: compare shapes, not values)."""
    import numpy as np

    names = [r["configuration"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 + 1.7 * len(names), 3.6))
    ax.bar(x - 0.2, [100 * r["ours acc@0.5"] for r in rows], 0.4, label="ours (tiny Qwen3-VL, synthetic)")
    ax.bar(x + 0.2, [100 * (r["paper acc@0.5"] or 0) for r in rows], 0.4, label="paper (Qwen3-VL-4B, real)")
    ax.set_xticks(x, [n.replace(" + ", "\n+ ").replace(", ", ",\n") for n in names], fontsize=7)
    ax.set(ylabel="Acc@0.5 (%)", title="Deployable answer: ours vs the paper")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def loop_illustration(sample: dict, traj: Trajectory):
    """What the model sees at each step (previous box drawn in red) and what it answers."""
    import textwrap

    from ..core.render import draw_box

    n = len(traj.steps)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3.6), squeeze=False)
    for t, st in enumerate(traj.steps):
        seen = sample["image"] if t == 0 else draw_box(sample["image"], traj.steps[t - 1].box)
        ax = axes[0][t]
        ax.imshow(draw_boxes(seen, [(sample["bbox"], GT_RGB)], width=1, scale=2))
        ax.set_xticks([]), ax.set_yticks([])
        head = "step 0: ground" if t == 0 else f"step {t}: refine"
        ax.set_title(f"{head} (IoU {st.iou:.2f})\n" + "\n".join(textwrap.wrap(st.text, 40)[:4]), fontsize=6.5)
    fig.suptitle(f'"{sample["expression"]}" (green: ground truth; red: the box fed back)', fontsize=8)
    fig.tight_layout()
    return fig


def per_step_seeds(by_seed: Mapping[str, Mapping[int, Sequence[dict]]]):
    """Acc@0.5 and mean IoU per refinement step, mean ± sd over training seeds (``by_seed[row][seed] = per_step``),
    each seed's own curve faint behind it."""
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, seeds in by_seed.items():
        curves = list(seeds.values())
        steps = list(range(min(len(c) for c in curves)))
        for ax, key, scale in ((axes[0], "acc@0.5", 100), (axes[1], "mean_iou", 1)):
            vals = np.array([[scale * c[t][key] for t in steps] for c in curves])
            line = ax.errorbar(steps, vals.mean(0), yerr=vals.std(0, ddof=1) if len(curves) > 1 else None,
                               marker="o", capsize=4, label=f"{name} ({len(curves)} seeds)")
            for v in vals:
                ax.plot(steps, v, color=line[0].get_color(), alpha=0.2, lw=0.8)
    axes[0].set(xlabel="step (0 = grounding)", ylabel="Acc@0.5 (%), mean ± sd over seeds")
    axes[1].set(xlabel="step (0 = grounding)", ylabel="mean IoU, mean ± sd over seeds")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(steps)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def view_illustration(sample: dict, shift: float = 4.0, margin: float = 0.5, size: int = 128):
    """The same scene with its true box and with that box shifted ``shift`` px, as the paper's overlay shows it and
    as the zoom view's second image shows it (the window placed as the loop places it: on the drawn box)."""
    from ..core.feedback import zoom_image, zoom_window
    from ..core.render import draw_box

    x1, y1, x2, y2 = sample["bbox"]
    boxes = {"aligned": (x1, y1, x2, y2), f"shifted {shift:g} px": (x1 + shift, y1, x2 + shift, y2)}
    fig, axes = plt.subplots(1, 4, figsize=(10, 3))
    for j, (name, box) in enumerate(boxes.items()):
        img = sample["image"]
        panels = [("overlay (paper)", draw_box(img, box)),
                  ("zoom window (ours)", zoom_image(img, box, zoom_window(box, img.width, img.height, margin), size))]
        for k, (view, im) in enumerate(panels):
            ax = axes[2 * j + k]
            ax.imshow(im.resize((256, 256), 0))
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{name}: {view}", fontsize=8)
    fig.suptitle(f'"{sample["expression"]}": the box as a refine step sees it', fontsize=9)
    fig.tight_layout()
    return fig
