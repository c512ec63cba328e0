"""The diagnostic scripts run on the shipped base and report what their notes in the README rely on."""
import importlib.util

from ivt_lib.configs import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_val_binding_reports_families_and_word_binding():
    out = _load("diag_val_binding").val_binding("data/base_model", n=24)
    assert out["n"] == 24 and 0.0 <= out["acc@0.5"] <= 1.0
    assert set(out["by_family"]) <= {"refadv", "refcocog", "refl4"} and out["by_family"]
    assert all({"family", "word", "honoured %", "chance %"} <= set(r) for r in out["word_binding"])


def test_keep_signal_counts_keeps_among_good_starts():
    out = _load("diag_keep_signal").keep_signal("data/base_model", n=16, group=2)
    assert out["n"] == 16 and out["good_starts"] >= 1  # the base gets some of 16 right (74 % on validation)
    assert 0.0 <= out["greedy_keep"] <= 1.0 and 0.0 <= out["sampled_keep"] <= 1.0
    assert out["groups_with_a_keep"] >= out["sampled_keep"] - 1e-9  # a group with any keep counts once


def test_contrast_binding_counts_where_boxes_land_and_pairs_two_models():
    mod = _load("diag_contrast_binding")
    recs = mod.contrast_scenes(4, "colour")
    assert [(r["expression"], r["bbox"]) for r in recs] == \
        [(r["expression"], r["bbox"]) for r in mod.contrast_scenes(4, "colour")]  # the same fresh scenes every time
    assert all(len(r["objects"]) >= 2 for r in recs)
    out = mod.contrast_binding(["data/base_model", "data/base_model"], n=6)
    for m in out["models"].values():
        assert sum(m["landed"].values()) == 6 and 0.0 <= m["acc@0.5"] <= 1.0
    assert out["second_vs_first"]["d_acc@0.5"] == 0.0  # a model against itself
    assert 0.25 <= out["chance_random_object"] <= out["chance_axis_blind"] <= 1.0  # 2-4 objects; the other word helps
