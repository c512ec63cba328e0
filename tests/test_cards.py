"""The model and dataset cards: present, and their numbers equal to the committed results."""
import json

import pytest

from ivt_lib.configs import ROOT
from ivt_lib.core.stats import proportion_ci

BASE = json.loads((ROOT / "results" / "base_model.json").read_text())


@pytest.mark.parametrize("folder, report", [("base_model", BASE), ("base_model_refine_mix", BASE["ablation_base"])])
def test_model_card_metrics_are_the_results(folder, report):
    card = (ROOT / "data" / folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers")
    for name, m in {"overall": report["overall"], **{f"{f}-like": v for f, v in report["by_family"].items()}}.items():
        lo, hi = proportion_ci(round(m["acc@0.5"] * m["n"]), m["n"])
        assert f"| {name} ({m['n']}) | {100 * m['acc@0.5']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |" in card, name
    o = report["overall"]
    assert f"| {100 * o['acc@0.7']:.1f} | {100 * o['acc@0.9']:.1f} | {o['mean_iou']:.3f} |" in card


def test_pure_base_card_states_its_known_limits():
    card = (ROOT / "data" / "base_model" / "README.md").read_text()
    colour = BASE["word_binding"]["refcocog"]["colour"]
    assert f"{100 * colour['honoured']:.1f} % vs {100 * colour['chance']:.1f} %" in card
    vp = BASE["visual_probe"]["pure grounder"]["colour"]
    assert f"{100 * vp['lm_token']:.1f} %" in card and f"chance {100 * vp['majority']:.1f} %" in card


def test_dataset_card_sizes_are_the_stored_splits():
    from datasets import load_from_disk

    card = (ROOT / "data" / "scenes" / "README.md").read_text()
    dd = load_from_disk(str(ROOT / "data" / "scenes"))
    assert f"`train` {len(dd['train']):,} / `validation` {len(dd['validation'])} / `test` {len(dd['test'])}" in card
    for field in dd["test"].features:
        assert f"| `{field}` |" in card or f"`{field}`," in card or f", `{field}` |" in card, field
