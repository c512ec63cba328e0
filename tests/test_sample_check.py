"""Odd samples are named before the loop runs anything (issue 33, "Odd inputs to the loop"): each probe's sample is
refused with an error naming it and why, the batch is never started, and the other samples are not blamed."""
import io

import pytest
from PIL import Image

from ivt_lib.core.loop import Generation, HFPolicy, run_loop
from ivt_lib.core.parsing import format_box


class CountingPolicy:
    """Answers a fixed box; counts the generate calls (an invalid batch must make none)."""

    def __init__(self):
        self.calls = 0

    def generate(self, messages, images):
        self.calls += 1
        return [Generation(format_box((100, 100, 400, 400)), -0.5) for _ in messages]


def _with(samples, i, **change):
    out = [dict(s) for s in samples]
    out[i].update(change)
    return out


def _truncated_png(size=(128, 128)) -> Image.Image:
    buf = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buf, format="PNG")  # noise: the pixel data is most of the file
    return Image.open(io.BytesIO(buf.getvalue()[: len(buf.getvalue()) // 2]))


PROBES = {  # issue 33's odd inputs: the change to one sample, and the words its error must contain
    "a 1x300 px image": (lambda s: {"image": Image.new("RGB", (1, 300)), "bbox": [0, 0, 1, 10]},
                         "1x300 px: aspect ratio 300:1 is over 200:1"),
    "a truncated PNG": (lambda s: {"image": _truncated_png()},
                        "image cannot be decoded (OSError: image file is truncated"),
    "image=None": (lambda s: {"image": None}, "image is missing (None)"),
    "a box outside the image": (lambda s: {"bbox": [140.0, 10.0, 200.0, 60.0]}, "is not inside the 128x128 image"),
    "an empty expression": (lambda s: {"expression": ""}, "expression is empty"),
    "a 5,000-character expression": (lambda s: {"expression": "d" * 5000},
                                     "expression is 5,000 characters long, over the limit of 1,000"),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_each_odd_sample_is_named_and_nothing_runs(test_samples, probe):
    change, words = PROBES[probe]
    samples = _with(test_samples[:4], 2, id="odd-one", **change(test_samples[2]))
    pol = CountingPolicy()
    with pytest.raises(ValueError) as err:
        run_loop(pol, samples, T=1, show_progress=False)
    msg = str(err.value)
    assert "1 of 4 samples cannot be run" in msg and "sample 'odd-one' (#2): " in msg and words in msg, msg
    assert pol.calls == 0  # refused before the first batch
    assert all(f"'{s['id']}'" not in msg for s in samples if s["id"] != "odd-one")  # the good ones are not blamed


def test_the_real_processor_would_have_crashed_on_the_narrow_image(tiny, test_samples):
    """The tiny model's processor refuses 1x300 px ("absolute aspect ratio must be smaller than 200"), which crashed
    the whole batch naming no sample; now it is named, and the error is the loop's, before any generation."""
    model, proc = tiny
    samples = _with(test_samples[:3], 1, id="narrow", image=Image.new("RGB", (1, 300)), bbox=[0, 0, 1, 10])
    with pytest.raises(ValueError, match=r"sample 'narrow' \(#1\): image is 1x300 px"):
        run_loop(HFPolicy(model, proc, max_new_tokens=4), samples, T=0, show_progress=False)
    with pytest.raises(ValueError, match="aspect ratio"):  # the limit is the processor's own
        proc.image_processor(images=[Image.new("RGB", (1, 300))], return_tensors="pt")
    proc.image_processor(images=[Image.new("RGB", (1, 200))], return_tensors="pt")  # 200:1 passes both


def test_every_bad_sample_is_listed_and_the_listed_ones_can_be_removed(test_samples):
    from ivt_lib.core.sample_check import InvalidSamplesError, sample_problems

    samples = _with(_with(test_samples[:5], 0, image=None, expression="  "), 3, bbox=[10, 10, 5, 20])
    with pytest.raises(InvalidSamplesError) as err:
        run_loop(CountingPolicy(), samples, T=1, show_progress=False)
    probs = err.value.problems
    assert [p.index for p in probs] == [0, 3] and probs == sample_problems(samples)
    assert probs[0].reasons == ("image is missing (None)", "expression is only whitespace")
    assert "empty or inverted" in probs[1].reasons[0]
    keep = [s for i, s in enumerate(samples) if i not in {p.index for p in probs}]
    assert len(run_loop(CountingPolicy(), keep, T=1, show_progress=False)) == 3


def test_boxes_on_the_edge_and_wide_images_within_the_limit_pass(test_samples):
    """The shipped data and what the processor accepts stay accepted: a box touching the border (1 px float slack),
    an image of exactly 200:1."""
    from ivt_lib.core.sample_check import box_problem, image_problem

    assert box_problem([-0.5, 0, 128.9, 128], 128, 128) is None
    assert box_problem([0, 0, 129.5, 128], 128, 128) is not None
    assert box_problem([0, 0, float("nan"), 5], 128, 128) is not None
    assert image_problem(Image.new("RGB", (200, 1)))[0] is None
    assert image_problem(Image.new("RGB", (201, 1)))[0] is not None
    assert image_problem(Image.new("L", (4, 4)))[1].mode == "RGB"
    from ivt_lib.corpora.splits import load_split

    assert run_loop(CountingPolicy(), load_split("test"), T=0, show_progress=False)  # every shipped sample passes


def test_a_prompt_past_the_models_positions_is_refused_not_answered(tiny, test_samples):
    """8,003 tokens came back as "ddd..." (no_box) past the tiny model's 4,096 positions; HFPolicy now refuses a
    prompt that, with its answer budget, does not fit (whatever built the prompt)."""
    from ivt_lib.core.prompts import step0_messages

    model, proc = tiny
    pol = HFPolicy(model, proc, max_new_tokens=4)
    limit = model.config.text_config.max_position_embeddings
    words = " ".join(["red"] * (limit + 10))
    msgs = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": words}]}],
            step0_messages("the red circle")]
    img = test_samples[0]["image"]
    with pytest.raises(ValueError, match=rf"prompt #0 is \d+ tokens: .* passes the model's {limit} positions"):
        pol.generate(msgs, [img, img])
    assert len(pol.generate(msgs[1:], [img])) == 1


def test_the_loop_names_the_sample_whose_prompt_is_too_long(tiny, test_samples):
    """A prompt past the positions can still come from a long expression under the limit (a refine step adds the
    stated box; multi-byte characters take several tokens): the loop's error names that sample and step."""
    from ivt_lib.core.loop import PromptTooLong

    model, proc = tiny
    pol = HFPolicy(model, proc, max_new_tokens=4)
    samples = _with(test_samples[:3], 1, id="wordy", expression="the red circle " * 20)
    pol.max_positions = 100 + 4 + 2  # the short prompts fit, the wordy one does not
    with pytest.raises(PromptTooLong, match=r"sample 'wordy' \(#1\), step 0: prompt #1 is \d+ tokens"):
        run_loop(pol, samples, T=1, show_progress=False)
