"""The refinement explorer: an ipywidgets app to step through each sample's trajectory.

Pick a configuration and a filter (all, a family, improved, degraded, worst degradations), then a sample and a step;
it shows the image with the box that was fed back (red) and the ground truth (green), the model's text at each step,
and the IoU-per-step curve. All state lives in :class:`Explorer`, so tests drive it from Python.
"""
from __future__ import annotations

import html
import io
from typing import Mapping, Sequence

from ..core.loop import Trajectory
from ..core.render import draw_box, draw_boxes

FILTERS = ("all", "improved", "degraded", "worst degradations")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _curve_png(ious: Sequence[float], step: int) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 2.2))
    ax.plot(range(len(ious)), ious, "-o", color="C0")
    ax.plot([step], [ious[step]], "o", color="C3", ms=10, mfc="none")
    ax.set(xlabel="step", ylabel="IoU", ylim=(0, 1.02), xticks=range(len(ious)))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def panel_png(sample: dict, tr: Trajectory, step: int, scale: int = 3) -> bytes:
    """The image the model saw at ``step`` (the previous box drawn in red), with its answer (yellow) and the truth
    (green); used by the explorer and the side-by-side view."""
    t = min(step, len(tr.steps) - 1)
    seen = sample["image"] if t == 0 else draw_box(sample["image"], tr.steps[t - 1].box)
    return _png(draw_boxes(seen, [(tr.gt, (0, 230, 0)), (tr.steps[t].box, (255, 200, 0))], width=1, scale=scale))


class Explorer:
    """Widgets + state. ``configs`` maps a name to trajectories; ``samples`` maps sample id -> record (image, bbox)."""

    def __init__(self, configs: Mapping[str, Sequence[Trajectory]], samples: Mapping[str, dict], scale: int = 3):
        import ipywidgets as w

        if not configs:
            raise ValueError("Explorer needs at least one configuration of trajectories")
        self.configs, self.samples, self.scale = dict(configs), dict(samples), scale
        fams = sorted({t.family for trs in configs.values() for t in trs})
        self.config = w.Dropdown(options=list(configs), description="config")
        self.filter = w.Dropdown(options=list(FILTERS) + [f"family: {f}" for f in fams], description="filter")
        self.sample = w.IntSlider(min=0, max=0, description="sample")
        self.step = w.IntSlider(min=0, max=0, description="step")
        self.image = w.Image(format="png")
        self.curve = w.Image(format="png")
        self.text = w.HTML()
        self.title = w.HTML()
        for c in (self.config, self.filter):
            c.observe(lambda _: self._refilter(), names="value")
        for c in (self.sample, self.step):
            c.observe(lambda _: self.render(), names="value")
        self.widget = w.VBox([w.HBox([self.config, self.filter]), w.HBox([self.sample, self.step]), self.title,
                              w.HBox([self.image, w.VBox([self.curve, self.text])])])
        for widget, name in ((self.widget, "explorer"), (self.config, "config"), (self.filter, "filter"),
                             (self.step, "step"), (self.image, "image"), (self.title, "title")):
            widget.add_class(f"ivt-{name}")  # stable hooks for the browser test (tests/test_browser.py)
        self._refilter()

    def indices(self) -> list[int]:
        """Indices of the current configuration's trajectories that pass the filter."""
        trajs = self.configs[self.config.value]
        f = self.filter.value
        d = [t.steps[-1].iou - t.steps[0].iou for t in trajs]
        if f == "improved":
            return [i for i, x in enumerate(d) if x >= 0.01]
        if f == "degraded":
            return [i for i, x in enumerate(d) if x <= -0.01]
        if f == "worst degradations":
            return sorted(range(len(trajs)), key=lambda i: d[i])[:20]
        if f.startswith("family: "):
            return [i for i, t in enumerate(trajs) if t.family == f[len("family: "):]]
        return list(range(len(trajs)))

    @property
    def current(self) -> Trajectory | None:
        """The trajectory on display (None when the filter is empty)."""
        idx = self.indices()
        return self.configs[self.config.value][idx[self.sample.value]] if idx else None

    def _refilter(self) -> None:
        idx = self.indices()
        self.sample.max = max(0, len(idx) - 1)
        self.sample.value = min(self.sample.value, self.sample.max)
        tr = self.current
        self.step.max = len(tr.steps) - 1 if tr else 0
        self.render()

    def render(self) -> None:
        """Redraw the image, the texts and the IoU curve for the selected sample and step."""
        tr = self.current
        if tr is None:
            self.title.value, self.text.value = "<b>no sample matches this filter</b>", ""
            self.image.value, self.curve.value = b"", b""  # never leave a stale sample on screen
            return
        self.step.max = len(tr.steps) - 1
        t = min(self.step.value, self.step.max)
        s = self.samples[tr.sample_id]
        self.image.value = panel_png(s, tr, t, self.scale)
        self.curve.value = _curve_png(tr.ious, t)
        n = len(self.indices())
        self.title.value = (f"{html.escape(self.config.value)} &middot; {html.escape(self.filter.value)} "
                            f"({self.sample.value + 1} of {n}): <b>{html.escape(tr.sample_id)}</b> ({tr.family}): "
                            f"\"{html.escape(s['expression'])}\" &mdash; step {t}, IoU {tr.steps[t].iou:.3f}")
        bold = ' style="font-weight:bold"'
        rows = "".join(f"<li{bold if i == t else ''}>step {i} (IoU {st.iou:.2f}): {html.escape(st.text)}</li>"
                       for i, st in enumerate(tr.steps))
        self.text.value = f"<ol start=0 style='font-size:11px'>{rows}</ol>"


def save_static(explorer: Explorer, path, params: dict | None = None, wall_s: float | None = None):
    """A static PNG of the current view (papermill does not keep widget state)."""
    from PIL import Image

    from pathlib import Path

    from ..core.io import atomic_write_bytes, atomic_write_json, provenance, relative_paths

    img = Image.open(io.BytesIO(explorer.image.value))
    curve = Image.open(io.BytesIO(explorer.curve.value))
    canvas = Image.new("RGB", (img.width + curve.width + 10, max(img.height, curve.height)), "white")
    canvas.paste(img, (0, 0))
    canvas.paste(curve.convert("RGB"), (img.width + 10, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_json(Path(path).with_suffix(".provenance.json"), relative_paths(provenance(params, wall_s)))
    return atomic_write_bytes(path, buf.getvalue())
