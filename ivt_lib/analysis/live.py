"""Live mode and the side-by-side view of the explorer (notebook 06).

* :class:`SideBySide`: one sample under every configuration in a row, one shared step slider, each panel with its
  image (the box fed back in red, the answer in yellow, the truth in green) and its IoU curve.
* :class:`LiveRun`: run the refinement loop on one sample (a test sample, or a fresh scene with an expression of
  your own) under one or more models, in a background thread, so the kernel stays responsive. It can be stopped
  between models (one model's T steps run as one batched loop call).
* :class:`LiveExplorer`: the widgets around both: pick or generate a scene, edit the expression, choose models and
  T, press Run; the results appear in the side-by-side view. Bad input is reported in the widget, which stays usable.

All state lives in these objects, so tests drive them from Python and the browser test clicks the same widgets.
"""
from __future__ import annotations

import html
import random
import threading
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .explorer import _curve_png, _png, panel_png
from ..core.loop import Trajectory, run_loop
from ..core.render import draw_boxes
from ..corpora.records import scene_to_record
from ..corpora.scenes import FAMILIES, generate_scene


class SideBySide:
    """One sample under every configuration: ``configs`` maps a name to trajectories, ``samples`` id -> record."""

    def __init__(self, configs: Mapping[str, Sequence[Trajectory]], samples: Mapping[str, dict], scale: int = 2):
        import ipywidgets as w

        self.w, self.scale, self.samples = w, scale, dict(samples)
        self.sample = w.Dropdown(description="sample")
        self.step = w.IntSlider(min=0, max=0, description="step")
        self.title = w.HTML()
        self.row = w.HBox()
        self.panels: dict[str, tuple] = {}
        self.sample.observe(lambda _: self.render(), names="value")
        self.step.observe(lambda _: self.render(), names="value")
        self.widget = w.VBox([w.HBox([self.sample, self.step]), self.title, self.row])
        for widget, name in ((self.widget, "side"), (self.step, "side-step"), (self.title, "side-title")):
            widget.add_class(f"ivt-{name}")  # stable hooks for the browser test (tests/test_browser.py)
        self.set_configs(configs)

    def set_configs(self, configs: Mapping[str, Sequence[Trajectory]]) -> None:
        """Show these configurations (one panel each); the sample list is the ids they all share."""
        self.configs = {k: {t.sample_id: t for t in v} for k, v in configs.items()}
        shared = sorted(set.intersection(*(set(v) for v in self.configs.values())) & set(self.samples)
                        if self.configs else set())
        w = self.w
        self.panels = {k: (w.HTML(f"<b>{html.escape(k)}</b>"), w.Image(format="png", _dom_classes=("ivt-panel-image",)),
                           w.Image(format="png"), w.HTML()) for k in self.configs}
        self.row.children = [w.VBox(list(p)) for p in self.panels.values()]
        self.sample.options = shared
        self.sample.value = shared[0] if shared else None
        self.render()

    def render(self) -> None:
        """Redraw every panel at the shared step."""
        sid = self.sample.value
        if sid is None:
            self.title.value = "<b>no sample is shared by these configurations</b>"
            for _, img, curve, text in self.panels.values():
                img.value, curve.value, text.value = b"", b"", ""
            return
        s = self.samples[sid]
        self.step.max = max(len(c[sid].steps) - 1 for c in self.configs.values())
        t = self.step.value
        self.title.value = f"<b>{html.escape(sid)}</b>: \"{html.escape(s['expression'])}\" &mdash; step {t}"
        for name, (_, img, curve, text) in self.panels.items():
            tr = self.configs[name][sid]
            k = min(t, len(tr.steps) - 1)
            img.value = panel_png(s, tr, k, self.scale)
            curve.value = _curve_png(tr.ious, k)
            st = tr.steps[k]
            text.value = (f"<small>IoU {st.iou:.3f}{'' if st.parse_ok else ' (parse failure: ' + html.escape(str(st.reason)) + ')'}"
                          f"<br>{html.escape(st.text)}</small>")


def fresh_scene(family: str, seed: int, expression: str | None = None) -> dict:
    """A new scene of ``family`` from ``seed`` (never one of the committed splits' ids), optionally re-worded.

    An edited expression keeps the scene's target box as the ground truth: the IoU then says how well the model
    found *that* object under your wording."""
    rec = scene_to_record(generate_scene(random.Random(f"live-{family}-{seed}"), family), f"live-{family}-{seed}")
    return {**rec, "expression": expression} if expression else rec


class LiveRun:
    """The loop on one sample under several models, in a background thread; ``results`` fills in as models finish.

    ``loader(folder) -> Policy`` defaults to :func:`ivt_lib.core.models.load_policy` (greedy, HF); policies are cached per
    folder, so a second run does not reload them."""

    def __init__(self, loader: Callable | None = None, coord_format: str = "qwen3"):
        self.loader, self.coord_format = loader, coord_format
        self.cache: dict[str, object] = {}
        self.results: dict[str, Trajectory] = {}
        self.errors: dict[str, str] = {}
        self.done, self._stop, self.thread = threading.Event(), threading.Event(), None
        self.done.set()
        self.on_update: Callable[[], None] = lambda: None

    def check(self, sample: dict, models: Mapping[str, str], T: int) -> str | None:
        """Why this run cannot start (None if it can): an empty expression, no model, a bad T."""
        if not str(sample.get("expression", "")).strip():
            return "type an expression first"
        if not models:
            return "choose at least one model"
        if not (isinstance(T, int) and 0 <= T <= 8):
            return f"T={T!r}: choose 0 to 8 refine steps"
        return None

    def start(self, sample: dict, models: Mapping[str, str], T: int) -> str | None:
        """Start in the background; returns the reason it did not start, else None."""
        why = self.check(sample, models, T) or (None if self.done.is_set() else "a run is still going: stop it first")
        if why:
            return why
        self.results, self.errors = {}, {}
        self.done.clear()
        self._stop.clear()
        self.thread = threading.Thread(target=self._run, args=(dict(sample), dict(models), T), daemon=True)
        self.thread.start()
        return None

    def stop(self) -> None:
        """Ask the run to stop after the model it is on."""
        self._stop.set()

    def _policy(self, folder: str):
        if folder not in self.cache:
            if self.loader is None:
                from ..core.models import load_policy

                if not (Path(folder) / "config.json").exists():
                    raise FileNotFoundError(f"no model folder at {folder} (it needs a config.json)")
                self.cache[folder] = load_policy(folder, show_progress=False)
            else:
                self.cache[folder] = self.loader(folder)
        return self.cache[folder]

    def _run(self, sample: dict, models: Mapping[str, str], T: int) -> None:
        try:
            for name, folder in models.items():
                if self._stop.is_set():
                    self.errors[name] = "stopped before it ran"
                    continue
                try:
                    tr = run_loop(self._policy(folder), [sample], T=T, coord_format=self.coord_format,
                                  show_progress=False)[0]
                    self.results[name] = tr
                    if not any(s.parse_ok for s in tr.steps):
                        self.errors[name] = "answered nothing parsable at any step (IoU 0)"
                except Exception as exc:  # one bad model must not end the others' run, nor the widget
                    self.errors[name] = f"{type(exc).__name__}: {exc}"
                self.on_update()
        finally:
            self.done.set()
            self.on_update()


class LiveExplorer:
    """Widgets for live mode: a test sample or a fresh scene, an editable expression, models and T, Run and Stop; the
    results fill a :class:`SideBySide` view. ``models`` maps a name to a model folder (e.g. the shipped ones)."""

    def __init__(self, samples: Mapping[str, dict], models: Mapping[str, str], run: LiveRun | None = None,
                 scale: int = 2):
        import ipywidgets as w

        if not samples:
            raise ValueError("LiveExplorer needs at least one sample to start from")
        self.samples, self.models, self.run = dict(samples), dict(models), run or LiveRun()
        self.source = w.ToggleButtons(options=["test sample", "new scene"], description="scene")
        self.sample_id = w.Dropdown(options=sorted(self.samples), description="sample")
        self.family = w.Dropdown(options=list(FAMILIES), description="family")
        self.seed = w.IntText(value=0, description="seed")
        self.expression = w.Text(description="expression", layout=w.Layout(width="520px"))
        self.chosen = w.SelectMultiple(options=list(self.models), value=tuple(list(self.models)[:1]), description="models")
        self.folder = w.Text(description="+ folder", placeholder="any saved model folder")
        self.T = w.BoundedIntText(value=2, min=0, max=8, description="T")
        self.run_button, self.stop_button = w.Button(description="Run", button_style="primary"), w.Button(description="Stop")
        self.progress = w.IntProgress(min=0, max=1, description="models")
        self.message = w.HTML()
        self.preview = w.Image(format="png")
        self.view = SideBySide({}, {}, scale)
        for c in (self.source, self.sample_id, self.family, self.seed):
            c.observe(lambda _: self.load_scene(), names="value")
        self.expression.observe(lambda _: self._on_expression(), names="value")
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.run.stop())
        self.run.on_update = self._update
        self.widget = w.VBox([w.HBox([self.source, self.sample_id, self.family, self.seed]), self.expression,
                              w.HBox([self.chosen, w.VBox([self.folder, self.T])]),
                              w.HBox([self.run_button, self.stop_button, self.progress]), self.message,
                              w.HBox([self.preview, self.view.widget])])
        for widget, name in ((self.widget, "live"), (self.expression, "expression"), (self.run_button, "run"),
                             (self.message, "message")):
            widget.add_class(f"ivt-{name}")
        self.load_scene()

    def scene(self) -> dict:
        """The sample a run would use, with the expression as typed."""
        return {**self._base, "expression": self.expression.value}

    def load_scene(self) -> None:
        """Show the chosen scene and put its own expression in the text box (to edit or replace)."""
        base = (self.samples[self.sample_id.value] if self.source.value == "test sample"
                else fresh_scene(self.family.value, int(self.seed.value)))
        self._base = base
        self.expression.value = base["expression"]
        self._on_expression()  # also when the new scene's expression equals the old one (no change event)
        self.preview.value = _png(draw_boxes(base["image"], [(base["bbox"], (0, 230, 0))], width=1, scale=2))

    def _on_expression(self) -> None:
        # Say at once what Run would do with the typed text: a person sees an empty box is refused before pressing
        # Run, and the message confirms the kernel holds the text (a front end may send a click before a buffered edit).
        if not self.run.done.is_set():
            return  # a run's own progress owns the message
        typed = self.expression.value
        if not typed.strip():
            self.message.value = "<b style='color:#b00'>type an expression first</b>"
        elif typed != self._base["expression"]:
            self.message.value = (f"edited: IoU stays against the green box, the object of the scene's own expression "
                                  f"\"{html.escape(self._base['expression'])}\"")
        else:
            self.message.value = ""

    def selected_models(self) -> dict[str, str]:
        """The chosen models, plus the typed folder when there is one."""
        out = {k: self.models[k] for k in self.chosen.value}
        if self.folder.value.strip():
            out[f"folder: {self.folder.value.strip()}"] = self.folder.value.strip()
        return out

    def start(self) -> None:
        """Run (Run button): report why not in the widget, or start the background run."""
        models = self.selected_models()
        self.progress.max, self.progress.value = max(1, len(models)), 0
        self._sample, self._own_expression = self.scene(), self._base["expression"]  # fixed for this run
        why = self.run.start(self._sample, models, int(self.T.value))
        self.message.value = f"<b style='color:#b00'>{html.escape(why)}</b>" if why else "running…"

    def _update(self) -> None:
        r = self.run
        self.progress.value = len(set(r.results) | set(r.errors))
        if r.results:
            self.view.samples = {self._sample["id"]: self._sample}
            self.view.set_configs({k: [v] for k, v in r.results.items()})
        notes = [f"{html.escape(k)}: {html.escape(v)}" for k, v in r.errors.items()]
        state = "done" if r.done.is_set() else "running…"
        if self._sample["expression"] != self._own_expression:  # the truth is still the scene's own target
            state += (f" (IoU is against the green box, the object of the scene's own expression "
                      f"\"{html.escape(self._own_expression)}\")")
        self.message.value = state + ("<br><b style='color:#b00'>" + "<br>".join(notes) + "</b>" if notes else "")
