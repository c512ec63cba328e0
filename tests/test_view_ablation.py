"""The view ablation (ivt_lib.analysis.view_ablation): answers that depend on the window change with it."""
from __future__ import annotations

from PIL import Image

from ivt_lib.analysis import view_ablation as va
from ivt_lib.core.loop import Generation
from ivt_lib.core.parsing import format_box


def scenes(n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        img = Image.new("RGB", (128, 128), (30, 30, 30))
        img.paste((0, 0, 255), (40, 40, 70, 70))
        out.append({"id": str(i), "image": img, "width": 128, "height": 128, "bbox": (40, 40, 70, 70),
                    "expression": "the blue square"})
    return out


class WindowReader:
    """Answers the truth's place in the window (250..750) when the window shows anything, else a far-off box."""

    def generate(self, messages, images, seeds=None):
        return [Generation(format_box((250, 250, 750, 750)) if ims[1].getbbox() else format_box((0, 0, 50, 50)))
                for ims in images]


class FullImageReader:
    """Ignores the window: always the same answer."""

    def generate(self, messages, images, seeds=None):
        return [Generation(format_box((250, 250, 750, 750))) for _ in images]


def test_a_window_reader_changes_its_answer_when_the_window_is_blanked():
    r = va.ablation(WindowReader(), scenes())
    assert r["arms"]["window blanked"]["changed_vs_shown"]["share"] == 1.0
    # (250, 250, 750, 750) in the window is the start itself (4 px off the truth): a hit; the blank-window answer misses
    assert r["arms"]["window as shown"]["acc@0.5"]["share"] == 1.0
    assert r["arms"]["window blanked"]["acc@0.5"]["share"] == 0.0
    assert r["n"] == 12


def test_a_model_that_ignores_the_window_never_changes():
    r = va.ablation(FullImageReader(), scenes())
    for arm in va.ARMS[1:]:
        assert r["arms"][arm]["changed_vs_shown"]["share"] == 0.0
