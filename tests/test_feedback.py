"""The feedback views (ivt_lib.core.feedback): the zoom window, its frame, the loop and the traces in it."""
from __future__ import annotations

import pytest
from PIL import Image

from ivt_lib.core import boxes as bx
from ivt_lib.core.feedback import (ViewSettings, answer_in_view, from_window, refine_view, to_window, zoom_image,
                                   zoom_window)
from ivt_lib.core.loop import Generation, flat_images, run_loop
from ivt_lib.core.parsing import answer_box, format_box
from ivt_lib.core.rewards import iou_reward

ZOOM = ViewSettings("zoom", 0.5, 128)


def scene(w: int = 128, h: int = 128) -> Image.Image:
    img = Image.new("RGB", (w, h), (230, 230, 230))
    img.paste((0, 0, 255), (40, 50, 70, 80))  # a blue square: the target (40, 50, 70, 80)
    return img


def test_window_is_square_centred_and_sized_by_the_margin():
    assert zoom_window((40, 50, 70, 80), 128, 128, 0.5) == (25, 35, 85, 95)  # side 30 * 2 = 60
    assert zoom_window((40, 50, 70, 60), 128, 128, 0.25) == (32, 32, 77, 77)  # longer side 30 * 1.5 = 45, centre 55
    assert zoom_window((10, 10, 12, 12), 128, 128, 0.5, min_side=16) == (3, 3, 19, 19)
    assert zoom_window(None, 128, 96) == (0, 0, 128, 128)  # no previous box: the whole image


def test_window_frame_round_trips_through_the_answer_text():
    img = scene()
    prev = (38.0, 52.0, 72.0, 79.0)
    v = refine_view(img, "the blue square", prev, 1, 2, ZOOM)
    assert v.window == zoom_window(prev, 128, 128, 0.5) and len(v.images) == 2
    target = (40.0, 50.0, 70.0, 80.0)
    text = format_box(answer_in_view(target, v, 128, 128))
    box, why = answer_box(text, 128, 128, "qwen3", None, v.window)
    assert why is None and bx.iou(box, target) > 0.97
    # the same text read in the image's frame is another box: the window matters
    assert bx.iou(answer_box(text, 128, 128)[0], target) < 0.5
    assert iou_reward([text], [target], [128], [128], window=[v.window])[0] > 0.97


def test_the_prompt_states_the_previous_box_in_the_window_frame_and_asks_for_it():
    v = refine_view(scene(), "the blue square", (40, 50, 70, 80), 1, 2, ZOOM)
    text = v.messages[0]["content"][-1]["text"]
    assert format_box((250, 250, 750, 750)) in text  # the box fills the middle half of its window
    assert "second image" in text
    assert [c["type"] for c in v.messages[0]["content"]] == ["image", "image", "text"]


def test_zoom_image_enlarges_the_window_with_the_box_drawn_and_black_outside():
    img = scene()
    win = zoom_window((0, 0, 20, 20), 128, 128, 0.5)  # reaches past the top-left corner
    crop = zoom_image(img, (0, 0, 20, 20), win, 128)
    assert crop.size == (128, 128)
    assert crop.getpixel((2, 2)) == (0, 0, 0)  # outside the image
    plain = zoom_image(img, None, zoom_window((40, 50, 70, 80), 128, 128), 128)
    drawn = zoom_image(img, (40, 50, 70, 80), zoom_window((40, 50, 70, 80), 128, 128), 128)
    r, g, b = drawn.getpixel((32, 64))  # the box's left edge, at 1/4 of the enlarged window
    assert r > 200 and g < 120 and plain.getpixel((32, 64)) != drawn.getpixel((32, 64))


def test_to_and_from_window_are_inverse():
    w = (5, -3, 65, 57)
    assert from_window(to_window((10, 10, 30, 40), w), w) == (10, 10, 30, 40)


def test_overlay_view_is_the_papers_single_image():
    v = refine_view(scene(), "x", (40, 50, 70, 80), 1, 2, ViewSettings())
    assert v.window is None and len(v.images) == 1
    assert "red box is the previous answer" in v.messages[0]["content"][-1]["text"]


def test_bad_view_settings_are_refused():
    with pytest.raises(ValueError, match="unknown feedback view"):
        ViewSettings("crop")
    with pytest.raises(ValueError, match="margin"):
        ViewSettings("zoom", -1)
    with pytest.raises(ValueError, match="grounding"):
        refine_view(scene(), "x", (1, 1, 5, 5), 1, 1, ZOOM, prompt_format="grounding")


class KeepPolicy:
    """Answers every refine step with the box stated in its prompt (a model that keeps), step 0 with a fixed box."""

    def __init__(self):
        self.images = []

    def generate(self, messages, images, seeds=None):
        self.images.append(images)
        out = []
        for m in messages:
            text = m[0]["content"][-1]["text"]
            if "Refinement" in text:
                out.append(Generation(text[text.index('{"bbox_2d"'):text.index("]}") + 2]))
            else:
                out.append(Generation(format_box((300, 400, 560, 640))))
        return out


def test_loop_in_the_zoom_view_maps_answers_back_and_keeps_a_kept_box():
    samples = [{"id": "a", "family": "f", "image": scene(), "expression": "the blue square", "bbox": (40, 50, 70, 80)}]
    pol = KeepPolicy()
    tr = run_loop(pol, samples, T=2, feedback="zoom", show_progress=False)[0]
    assert isinstance(pol.images[1][0], list) and len(pol.images[1][0]) == 2  # refine steps get two images
    assert not isinstance(pol.images[0][0], list)  # step 0 gets one
    assert tr.steps[1].window is not None and tr.steps[0].window is None
    for s in tr.steps[1:]:  # keeping the stated box in the window frame keeps the image box
        assert bx.iou(s.box, tr.steps[0].box) > 0.97
    assert len(flat_images(pol.images[1])) == 2
