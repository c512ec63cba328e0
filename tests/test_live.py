"""Live mode and the side-by-side view (ivt_lib.analysis.live), driven from Python with scripted policies."""

from ivt_lib.analysis import live
from ivt_lib.core.loop import Generation
from ivt_lib.core.parsing import format_box, parse_box


class Shift:
    """Step 0 answers a fixed box; each refine step shifts the stated box right by ``d`` (0-1000 units)."""

    def __init__(self, d=50):
        self.d = d

    def generate(self, messages, images):
        out = []
        for m in messages:
            prev = parse_box(m[0]["content"][1]["text"])
            b = (300, 300, 600, 600) if not prev.ok else (prev.box[0] + self.d, prev.box[1], prev.box[2] + self.d,
                                                          prev.box[3])
            out.append(Generation(format_box(b), -0.2))
        return out


class Mute:
    def generate(self, messages, images):
        return [Generation("I cannot tell.", -3.0) for _ in messages]


def loader(folder):
    if folder == "missing":
        raise FileNotFoundError("no model folder at missing")
    return {"shift": Shift(), "still": Shift(0), "mute": Mute()}[folder]


def run_to_end(run, sample, models, T=2):
    assert run.start(sample, models, T) is None
    run.thread.join(30)
    assert run.done.is_set()


def test_live_run_covers_every_model_and_reports_bad_ones(test_samples):
    run = live.LiveRun(loader)
    run_to_end(run, test_samples[0], {"a": "shift", "b": "missing", "c": "mute"})
    assert set(run.results) == {"a", "c"} and len(run.results["a"].steps) == 3
    assert "no model folder" in run.errors["b"] and "nothing parsable" in run.errors["c"]
    assert all(s.iou == 0.0 for s in run.results["c"].steps)


def test_live_run_refuses_bad_input_without_starting(test_samples):
    run = live.LiveRun(loader)
    assert "expression" in run.start({**test_samples[0], "expression": "  "}, {"a": "shift"}, 2)
    assert "model" in run.start(test_samples[0], {}, 2)
    assert "T=" in run.start(test_samples[0], {"a": "shift"}, 99)
    assert run.thread is None and run.done.is_set()


def test_stop_skips_the_models_not_yet_run(test_samples):
    run = live.LiveRun(loader)
    run.on_update = run.stop  # ask to stop as soon as the first model is done
    run_to_end(run, test_samples[0], {"a": "shift", "b": "still", "c": "shift"})
    assert list(run.results) == ["a"] and run.errors == {"b": "stopped before it ran", "c": "stopped before it ran"}


def test_fresh_scene_is_seeded_and_takes_an_expression():
    a, b = live.fresh_scene("refadv", 3), live.fresh_scene("refadv", 3)
    assert a["id"] == b["id"] and a["bbox"] == b["bbox"] and a["expression"] == b["expression"]
    assert live.fresh_scene("refadv", 4)["id"] != a["id"]
    assert live.fresh_scene("refadv", 3, "the thing on the left")["expression"] == "the thing on the left"


def test_side_by_side_shares_one_step_slider(test_samples):
    from ivt_lib.core.loop import run_loop

    samples = {s["id"]: s for s in test_samples[:3]}
    configs = {"shift": run_loop(Shift(), test_samples[:3], T=2, show_progress=False),
               "still": run_loop(Shift(0), test_samples[:2], T=2, show_progress=False)}
    v = live.SideBySide(configs, samples)
    assert list(v.sample.options) == sorted(s["id"] for s in test_samples[:2])  # the ids both configurations have
    before = {k: p[1].value for k, p in v.panels.items()}
    v.step.value = 2
    after = {k: p[1].value for k, p in v.panels.items()}
    assert after["shift"] != before["shift"]  # the moved box is drawn
    assert "step 2" in v.title.value
    v.set_configs({"only": configs["shift"][2:]})
    v.set_configs({"a": configs["shift"][:1], "b": configs["still"][1:2]})  # nothing shared
    assert v.sample.value is None and "no sample" in v.title.value


def test_live_explorer_runs_and_reports_in_the_widget(test_samples):
    samples = {s["id"]: s for s in test_samples[:3]}
    app = live.LiveExplorer(samples, {"shift": "shift", "mute": "mute"}, live.LiveRun(loader))
    app.chosen.value = ("shift", "mute")
    app.start()
    app.run.thread.join(30)
    assert app.progress.value == 2 and "done" in app.message.value and "nothing parsable" in app.message.value
    assert set(app.view.panels) == {"shift", "mute"} and app.view.panels["shift"][1].value
    app.expression.value = ""
    assert "type an expression" in app.message.value  # said as soon as the box is empty, before Run
    app.message.value = ""
    app.start()
    assert "type an expression" in app.message.value  # Run says why too, and the widget stays usable
    app.source.value = "new scene"
    app.family.value, app.seed.value = "refl4", 5
    assert app.expression.value == live.fresh_scene("refl4", 5)["expression"]
    assert app.message.value == ""  # a new scene clears the warning
    app.expression.value = "the biggest object"
    assert "edited: IoU stays against the green box" in app.message.value
    app.run_button.click()  # the button, as a person presses it: its wiring is part of the widget
    app.run.thread.join(30)
    assert app.view.title.value.count("the biggest object") == 1
    assert "IoU is against the green box" in app.message.value  # a typed expression keeps the scene's own truth


def test_typing_during_a_run_leaves_the_run_message(test_samples):
    samples = {s["id"]: s for s in test_samples[:1]}
    app = live.LiveExplorer(samples, {"shift": "shift"}, live.LiveRun(loader))
    app.run.done.clear()  # as if a run were going
    app.message.value = "running…"
    app.expression.value = ""
    assert app.message.value == "running…"
    app.run.done.set()
