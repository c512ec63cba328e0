"""The batched refinement loop, with a fake policy (exact behaviour) and with the tiny model (mechanics)."""
import numpy as np
import pytest

from ivt_lib.core import boxes as bx
from ivt_lib.core.loop import Generation, HFPolicy, run_loop
from ivt_lib.core.parsing import format_box, parse_box


class FakePolicy:
    """Step 0 answers a fixed box; a refine step shifts the stated previous box right by ``shift`` (0-1000 units)."""

    def __init__(self, step0=(100, 100, 400, 400), shift=100, fail_on=()):
        self.step0, self.shift, self.fail_on = step0, shift, set(fail_on)
        self.calls: list[tuple[list, list]] = []

    def generate(self, messages, images):
        self.calls.append((messages, images))
        out = []
        for m in messages:
            text = m[0]["content"][1]["text"]
            if any(f in text for f in self.fail_on):
                out.append(Generation("I am not sure.", -3.0))
                continue
            prev = parse_box(text)
            if not prev.ok:
                out.append(Generation(format_box(self.step0), -0.5))
            else:
                x1, y1, x2, y2 = prev.box
                out.append(Generation("Moving right. " + format_box((x1 + self.shift, y1, x2 + self.shift, y2)), -1.0))
        return out


def test_loop_records_every_step(test_samples):
    pol = FakePolicy()
    trajs = run_loop(pol, test_samples[:5], T=2, show_progress=False)
    assert len(pol.calls) == 3 and all(len(c[0]) == 5 for c in pol.calls)  # one batched call per step
    for tr, s in zip(trajs, test_samples):
        assert len(tr.steps) == 3 and all(st.parse_ok for st in tr.steps)
        w, h = s["image"].size
        for t, st in enumerate(tr.steps):
            want = bx.sanitize(bx.from_model_frame((100 + 100 * t, 100, 400 + 100 * t, 400), w, h), w, h)
            assert st.box == pytest.approx(want, abs=w / 1000 + 1e-6)
            assert st.iou == pytest.approx(bx.iou(st.box, s["bbox"]))


def test_rendered_previous_box_is_what_the_model_sees(test_samples):
    pol = FakePolicy()
    run_loop(pol, test_samples[:2], T=1, show_progress=False)
    orig = np.asarray(test_samples[0]["image"].convert("RGB")).astype(int)
    seen = np.asarray(pol.calls[1][1][0]).astype(int)
    x1, y1, x2, y2 = (int(round(v * 128 / 1000)) for v in (100, 100, 400, 400))
    assert (seen[y1 + 3:y2 - 3, x1 + 3:x2 - 3, 0] >= orig[y1 + 3:y2 - 3, x1 + 3:x2 - 3, 0]).all()
    assert np.abs(seen - orig)[y1:y2, x1:x2].sum() > 0  # the overlay is there
    assert (seen[y2 + 3:, :] == orig[y2 + 3:, :]).all()  # nothing drawn outside


def test_parse_failures_are_counted_not_raised(test_samples):
    trajs = run_loop(FakePolicy(fail_on=["red box"]), test_samples[:3], T=2, show_progress=False)
    for tr in trajs:
        assert tr.steps[0].parse_ok
        assert not tr.steps[1].parse_ok and tr.steps[1].iou == 0.0 and tr.steps[1].reason == "no_box"


def test_stop_when_still_freezes_samples(test_samples):
    pol = FakePolicy(shift=0)  # the box never moves
    trajs = run_loop(pol, test_samples[:4], T=3, stop_when_still=0.05, show_progress=False)
    assert [len(c[0]) for c in pol.calls] == [4, 4]  # frozen after the first refine step: no more generation
    for tr in trajs:
        assert len(tr.steps) == 4 and [s.stopped for s in tr.steps] == [False, False, True, True]


def test_start_boxes_and_no_drawing(test_samples):
    pol = FakePolicy()
    gts = [s["bbox"] for s in test_samples[:3]]
    trajs = run_loop(pol, test_samples[:3], T=1, start_boxes=gts, draw_previous=False, show_progress=False)
    assert len(pol.calls) == 1  # step 0 skipped
    assert all(tr.steps[0].iou == pytest.approx(1.0) for tr in trajs)
    for s, img in zip(test_samples, pol.calls[0][1]):
        assert (np.asarray(img) == np.asarray(s["image"].convert("RGB"))).all()


def test_bad_arguments(test_samples):
    with pytest.raises(ValueError, match="empty"):
        run_loop(FakePolicy(), [], T=1)
    with pytest.raises(ValueError, match="T must be"):
        run_loop(FakePolicy(), test_samples[:1], T=-1)


def test_tiny_model_runs_batched(tiny, test_samples):
    model, proc = tiny
    trajs = run_loop(HFPolicy(model, proc, max_new_tokens=8, batch_size=4), test_samples[:6], T=1,
                     show_progress=False)
    assert len(trajs) == 6 and all(len(t.steps) == 2 for t in trajs)
    assert all(np.isfinite(st.mean_logprob) and st.mean_logprob <= 0 for t in trajs for st in t.steps)
    assert all((st.box is None) == (not st.parse_ok) for t in trajs for st in t.steps)


def test_metrics_evaluation_and_explorer_do_not_import_transformers():
    """loop.py once imported transformers at import time, so every light module paid for it."""
    import subprocess
    import sys

    code = ("import sys, ivt_lib.core.metrics, ivt_lib.analysis.evaluation, ivt_lib.analysis.explorer, ivt_lib.core.stats, ivt_lib.analysis.deployable; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_qwen25_loop_reads_boxes_in_the_processors_resized_pixels():
    """Qwen2.5-VL writes pixels of the processor-resized image. A scripted policy that answers the right resized-pixel
    box (and keeps it on refinement) must score IoU 1 at every step; before the fix the loop read the answer as
    original pixels (500x375 resizes to 504x378), so IoU fell short of 1."""
    from types import SimpleNamespace

    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from ivt_lib.core import boxes as bx
    from ivt_lib.core.loop import Generation, run_loop
    from ivt_lib.core.parsing import format_box, parse_box

    ip = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=200 * 28 * 28)  # also caps: 1000x750 is downscaled
    samples = [{"id": f"s{i}", "family": "f", "expression": "the thing", "image": Image.new("RGB", (w, h)),
                "bbox": (0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h)} for i, (w, h) in enumerate([(500, 375), (1000, 750)])]

    class Scripted:
        processor = SimpleNamespace(image_processor=ip)

        def generate(self, messages, images, seeds=None):
            out = []
            for m, im in zip(messages, images):
                s = samples[[x["image"].size for x in samples].index(im.size)]
                _, gh, gw = ip(images=[im], return_tensors="pt")["image_grid_thw"][0].tolist()
                rw, rh = gw * 14, gh * 14  # what the processor really fed the model
                stated = parse_box(m[0]["content"][1]["text"])
                box = stated.box if stated.ok else bx.to_model_frame(s["bbox"], *im.size, "qwen25", resized=(rw, rh))
                out.append(Generation(format_box(box), -0.1))
            return out

    trajs = run_loop(Scripted(), samples, T=2, coord_format="qwen25", show_progress=False)
    for t in trajs:
        assert [round(v, 2) for v in t.ious] == [pytest.approx(1.0, abs=0.02)] * 3, t.ious
    assert bx.qwen25_resized_size(1000, 750, max_pixels=200 * 28 * 28) != (1000, 750)


def test_early_stop_and_still_rule_agree(test_samples):
    """The loop's stop-when-still early exit and metrics.still_rule share one predicate: the early-stopped run's
    last box is the box the rule picks on the full run (the policy is deterministic, so the steps before the stop
    are identical). The scripted policy first moves far (+100), then a little (+5): still at step 2 for eps 0.05,
    never still for eps 0.01."""
    from ivt_lib.core.metrics import still_rule

    class Slowing(FakePolicy):
        def generate(self, messages, images):
            out = []
            for m in messages:
                prev = parse_box(m[0]["content"][1]["text"])
                if not prev.ok:
                    out.append(Generation(format_box(self.step0), -0.5))
                    continue
                x1, y1, x2, y2 = prev.box
                d = 100 if x1 < 150 else 5
                out.append(Generation(format_box((x1 + d, y1, x2 + d, y2)), -1.0))
            return out

    for eps, stop_at in ((0.05, 2), (0.01, 3)):
        full = run_loop(Slowing(), test_samples[:3], T=3, show_progress=False)
        early = run_loop(Slowing(), test_samples[:3], T=3, stop_when_still=eps, show_progress=False)
        for f, e in zip(full, early):
            assert still_rule(eps)(f) == stop_at
            assert e.steps[-1].box == f.steps[stop_at].box
            assert [s.stopped for s in e.steps].count(True) == 3 - stop_at
