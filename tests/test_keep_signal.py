"""The keep-signal diagnostic on fake policies (no model): exact keep rates, CIs, seeds, feedback views."""
import pytest
from PIL import Image

from ivt_lib.analysis import keep_signal as ks
from ivt_lib.core import boxes as bx
from ivt_lib.core import models
from ivt_lib.core.loop import Generation
from ivt_lib.core.parsing import format_box, parse_box
from ivt_lib.core.sampling import derive_seed
from ivt_lib.core.stats import proportion_ci

W, H = 200, 160
GT = [(20, 16, 100, 96), (60, 40, 180, 150), (10, 10, 90, 60), (100, 20, 190, 140)]


def samples(n=4):
    """``n`` blank images; the fake answers step 0 right for even samples, far off for odd ones."""
    return [{"image": Image.new("RGB", (W, H), (90, 90, 90)), "expression": f"thing {i}", "bbox": GT[i % len(GT)],
             "id": f"s{i}", "family": "fake"} for i in range(n)]


class FakePolicy:
    """Step 0: the ground truth (even samples) or a far box (odd). Refine: repeat the stated box ("keep") when
    ``keep(seed)`` says so, else move it 300 units right. ``seed`` is None for greedy calls."""

    def __init__(self, keep=lambda seed: True):
        self.keep, self.calls = keep, []

    def generate(self, messages, images, seeds=None):
        self.calls.append((messages, images, seeds, getattr(self, "temperature", None)))
        out = []
        for j, m in enumerate(messages):
            text = m[0]["content"][-1]["text"]
            prev = parse_box(text)
            if not prev.ok:  # step 0
                i = int(text.split("thing ")[1].split()[0].strip("\"'.,:;"))
                box = GT[i % len(GT)] if i % 2 == 0 else (0, 0, 8, 8)
                out.append(Generation(format_box(bx.to_model_frame(box, W, H)), -0.1))
            elif self.keep(None if seeds is None else seeds[j]):
                out.append(Generation(format_box(prev.box), -0.2))
            else:
                x1, y1, x2, y2 = prev.box
                out.append(Generation(format_box((x1 + 300, y1, x2 + 300, y2)), -1.0))
        return out


def test_a_policy_that_always_keeps_has_keep_rate_one():
    out = ks.keep_signal_policy(FakePolicy(), samples(4), group=3)
    assert set(out) == set(ks.KEYS)
    assert out["n"] == 4 and out["good_starts"] == 2 and out["sampled"] == 6  # odd samples start far off
    assert out["greedy_keep"] == out["sampled_keep"] == out["groups_with_a_keep"] == 1.0
    assert out["greedy_keep_ci"] == pytest.approx(list(proportion_ci(2, 2)))
    assert out["sampled_keep_ci"] == pytest.approx(list(proportion_ci(6, 6)))
    assert out["groups_with_a_keep_ci"] == pytest.approx(list(proportion_ci(2, 2)))
    assert out["sampled_iou_keep"] > 0.95 and out["sampled_iou_move"] is None
    assert out["greedy_step1_iou"] > 0.95


def test_a_policy_that_always_moves_never_keeps():
    out = ks.keep_signal_policy(FakePolicy(keep=lambda seed: False), samples(4), group=2)
    assert out["greedy_keep"] == out["sampled_keep"] == out["groups_with_a_keep"] == 0.0
    assert out["sampled_keep_ci"][0] == 0.0 < out["sampled_keep_ci"][1] < 1.0
    assert out["sampled_iou_keep"] is None and out["sampled_iou_move"] < 0.5


def test_sampled_keeps_follow_the_per_draw_seeds():
    keep = lambda seed: seed is not None and seed % 2 == 0  # greedy (seed None) always moves
    group, n = 3, 8
    pol = FakePolicy(keep)
    out = ks.keep_signal_policy(pol, samples(n), group=group, temperature=0.7)
    draws = [derive_seed(i, 1) % 2 == 0 for i in range(n // 2 * group)]  # draw i of the expanded list: seed i
    groups = [any(draws[g * group:(g + 1) * group]) for g in range(n // 2)]
    assert out["greedy_keep"] == 0.0
    assert out["sampled_keep"] == pytest.approx(sum(draws) / len(draws))
    assert out["groups_with_a_keep"] == pytest.approx(sum(groups) / len(groups))
    assert out["groups_with_a_keep"] >= out["sampled_keep"]


def test_sampling_copy_is_used_at_the_temperature_and_the_original_stays_greedy():
    pol = FakePolicy()
    pol.temperature = 0.0
    ks.keep_signal_policy(pol, samples(2), group=2, temperature=0.7)  # the copy shares ``calls``
    assert [(t, seeds is not None) for *_, seeds, t in pol.calls] == [(0.0, False), (0.0, False), (0.7, True)]
    assert pol.temperature == 0.0


def test_good_iou_sets_the_starts_and_none_good_gives_nones():
    assert ks.keep_signal_policy(FakePolicy(), samples(4), group=1, good_iou=0.0)["good_starts"] == 4
    out = ks.keep_signal_policy(FakePolicy(), samples(4), group=1, good_iou=1.01)
    assert out["n"] == 4 and out["good_starts"] == 0
    assert all(out[k] is None for k in ks.KEYS if k not in ("n", "good_starts"))


def test_feedback_reaches_the_refine_step():
    pol = FakePolicy()
    out = ks.keep_signal_policy(pol, samples(2), group=2, feedback="zoom")
    assert all(isinstance(im, list) and len(im) == 2 for _, ims, *_ in pol.calls[1:] for im in ims)  # image + zoomed window
    assert out["greedy_keep"] == out["sampled_keep"] == 1.0  # the box stated in the window comes back unchanged
    with pytest.raises(ValueError):
        ks.keep_signal_policy(FakePolicy(), samples(2), feedback="nope")


def test_the_path_wrapper_loads_a_policy_and_names_the_model(monkeypatch):
    loaded = []
    monkeypatch.setattr(models, "load_policy", lambda path, **kw: loaded.append((path, kw)) or FakePolicy())
    out = ks.keep_signal("some/model", samples(2), group=2, device="cpu")
    assert loaded == [("some/model", {"device": "cpu", "show_progress": False})]
    assert out["model"] == "some/model" and out["greedy_keep"] == 1.0 and set(out) == {"model", *ks.KEYS}
