"""The generated report (results/README.md), the README's headline block, the findings page and the forest plot are
in sync with results/; the README is one screen plus links; its two commands are what CI runs."""
import re

from ivt_lib.configs import ROOT
from ivt_lib.reproduction import findings
from ivt_lib.reproduction import report as readme

FIX = "run `python -m ivt_lib.reproduction.report` after a default-tier run"


def test_report_in_sync():
    assert (ROOT / "results" / "README.md").read_text() == readme.render(ROOT / "results"), FIX


def test_readme_headline_and_findings_in_sync():
    text = (ROOT / "README.md").read_text()
    assert text == findings.with_headline(text, ROOT / "results"), FIX
    assert (ROOT / "docs" / "findings.md").read_text() == findings.render(ROOT / "results"), FIX


def test_forest_plot_is_drawn_from_the_committed_results(tmp_path):
    import json
    import shutil

    from ivt_lib.analysis import forest

    ev = json.loads((ROOT / "results" / "evaluation.json").read_text())
    shutil.copy(ROOT / "figures" / "forest_acc05.png", tmp_path / "f.png")
    shutil.copy(ROOT / "figures" / "forest_acc05.provenance.json", tmp_path / "f.provenance.json")
    assert forest.save(ev, tmp_path / "f.png") == [], FIX  # redrawing changes no byte
    (tmp_path / "f.provenance.json").unlink()  # like every figure, it has a provenance sidecar
    assert forest.save(ev, tmp_path / "f.png") == [tmp_path / "f.png"] and (tmp_path / "f.provenance.json").exists()


def test_readme_is_one_screen_plus_links_for_a_reader():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert not re.search(r"\bissue \d+|#\d{2,}\b|\b[0-9a-f]{7,40}\b", text), "no issue numbers or commit hashes"
    for link in re.findall(r"\]\(([^)#]+)\)", text):  # every relative link resolves
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
    head = text.split("## Explore")[0]  # the first screen: the findings, with each number from the results
    assert "Naive iteration collapses" in head and "label-free" in head and "GRPO" in head


def test_findings_numbers_come_from_the_results(tmp_path):
    """Change one number in a results file: the findings page changes with it."""
    import json
    import shutil

    for f in ("base_model", "naive_iteration", "sft", "grpo", "evaluation", "seeds"):
        shutil.copy(ROOT / "results" / f"{f}.json", tmp_path / f"{f}.json")
    before = findings.render(tmp_path)
    n = json.loads((tmp_path / "naive_iteration.json").read_text())
    n["last"]["acc@0.5"] = 0.123
    (tmp_path / "naive_iteration.json").write_text(json.dumps(n))
    after = findings.render(tmp_path)
    assert "→ 12.3 at T=2" in after and "→ 12.3 at T=2" not in before


def test_readme_commands_are_what_ci_runs():
    text = (ROOT / "README.md").read_text()
    assert "make reproduce" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -euo pipefail" in ci
    mk = (ROOT / "Makefile").read_text()
    assert "rc -eq 5" in mk, "pytest's 'no tests collected' must fail"
    assert "\nlab: setup" in mk and "--ip=127.0.0.1" in mk and "make lab" in text, "the README's `make lab` must exist"


def test_render_handles_results(tmp_path):
    import json

    m = {"acc@0.5": 0.5, "acc@0.7": 0.25, "acc@0.9": 0.0, "mean_iou": 0.4, "parse_rate": 1.0, "n": 4}
    (tmp_path / "base_model.json").write_text(json.dumps({"overall": m, "by_family": {"refadv": m}}))
    out = readme.render(tmp_path)
    assert "| pure base (data/base_model), overall | 50.0 | 25.0 | 0.0 | 0.400 | 100.0 | 1 |" in out
    assert "refadv-like" in out


def test_deployable_table_leads_and_carries_cis(tmp_path):
    import json

    row = {"configuration": "SFT + IVT", "rule": "verifier (label-free, fitted on validation)", "passes": 3.0,
           "acc@0.5": 0.75, "acc@0.7": 0.7, "acc@0.9": 0.4, "mean_iou": 0.7, "d_acc@0.5": 0.02,
           "ci_acc@0.5": [-0.01, 0.05], "d_mean_iou": 0.01, "ci_mean_iou": [-0.004, 0.02], "gained": 12, "lost": 2,
           "p": 0.013}
    ev = {"deployable_vs_oracle": [row], "verdict": {"text": "No label-free rule ..."}, "table": []}
    (tmp_path / "evaluation.json").write_text(json.dumps(ev))
    m = {"acc@0.5": 0.5, "acc@0.7": 0.25, "acc@0.9": 0.0, "mean_iou": 0.4, "parse_rate": 1.0, "n": 4}
    (tmp_path / "base_model.json").write_text(json.dumps({"overall": m, "by_family": {}}))
    out = readme.render(tmp_path)
    assert out.index("Base grounders") < out.index("Deployable vs oracle")  # one section per notebook, in order
    assert "| +2.0 [-1.0, +5.0] | 12/2 | 0.013 | +0.010 [-0.004, +0.020] |" in out
    assert "**Verdict (generated from the numbers):** No label-free rule" in out


def test_phase1_table_shows_every_recipe_and_load(tmp_path):
    import json

    m = {"acc@0.5": 0.5, "acc@0.7": 0.25, "acc@0.9": 0.0, "mean_iou": 0.4, "parse_rate": 1.0, "n": 4}
    st = {"degradation": 0.05, "degrade": 0.3, "improve": 0.2, "stay": 0.5, "mean_delta_iou": 0.0}
    pair = {"d_acc@0.5": -0.1, "ci_acc@0.5": [-0.2, 0.0], "mcnemar": {"gained": 1, "lost": 3, "p": 0.6}}
    run = {"per_step": [m, m, m], "step0": m, "last": m, "oracle_best_step (uses GT)": m, "stability": st,
           "paired": {"last step (T=2) vs own step 0": pair}}
    sft = {**run, "ours_recipe": {**run, "vs_paper_recipe_last": pair}}
    (tmp_path / "sft.json").write_text(json.dumps(sft))
    (tmp_path / "sft.provenance.json").write_text(json.dumps(
        {"wall_s": 9.0, "cpus": 2, "machine": "x", "packages": {"torch": "t"}, "load_avg_1_15": [1.5, 2.0], "note": "n"}))
    out = readme.render(tmp_path)
    assert "| paper recipe (IoU filter [0, 0.85], linear-path targets) | 50.0 | 50.0 | 50.0 | 0.050 | 30.0 | " \
           "-10.0 [-20.0, +0.0], 0.6 | – |" in out
    assert "| ours (extra row): keep trajectories" in out and "1/3 flips" in out
    assert "| 03_sft | 9 s | 2 CPUs, x, torch t | 1.5/2.0 | n |" in out


def test_seeds_section_shows_spread_contrasts_hard_cases_curves_and_times(tmp_path):
    import json

    from ivt_lib.analysis import seed_stats
    from ivt_lib.reproduction import seeds

    r = {"step0": {"acc@0.5": 0.5}, "last": {"acc@0.5": 0.45}, "oracle_best_step (uses GT)": {"acc@0.5": 0.6},
         "stability": {"degradation": 0.07, "improve": 0.2, "degrade": 0.4, "stay": 0.4},
         "val0": {"degradation": 0.1}, "training_log": [{"iteration": 10, "val": {"degradation": 0.05}}]}
    per = {s: {"SFT + IVT": r, "SFT + GRPO + IVT": r, "SFT (ours: keep data) + IVT": r} for s in (0, 1)}
    c = {"d_acc@0.5": 0.04, "ci_acc@0.5": [0.01, 0.07], "mcnemar": {"p": 0.01}, "significant": True}
    paired = {"0": {"contrasts": {"SFT + GRPO + IVT vs SFT + IVT, last step": c}, "hard_cases": {
        "SFT + IVT": {"n": 10, "mean_iou_step0": 0.1, "mean_iou_last": 0.2, "gain": 0.1, "ci_gain": [0.05, 0.15]}}}}
    (tmp_path / "seeds.json").write_text(json.dumps({
        "summary": seeds.summarize(per), "paired_by_seed": paired,
        "validation_curves": seed_stats.validation_curves(per),
        "seconds": {"1": {"03_sft": 600, "04_grpo": 500, "runs": [{"extra_rows": False, "03_sft": 600, "04_grpo": 500,
                                                                   "note": "alone"}]},
                    # the lanes run a seed's notebooks as two tasks: a run records one notebook (this raised KeyError)
                    "2": {"03_sft": 700, "04_grpo": 900, "runs": [{"extra_rows": True, "03_sft": 700},
                                                                  {"extra_rows": True, "04_grpo": 900}]}}}))
    out = readme.render(tmp_path)
    assert "| SFT (ours: keep data) + IVT | 0, 1 | 50.0 ± 0.0 |" in out
    assert "paper-recipe rows and ours" in out  # an extra row has two seeds
    assert "| 0 | +4.0 [+1.0, +7.0], p=0.01 |" in out and "0: +0.100 [+0.050, +0.150]" in out
    assert "| SFT + GRPO + IVT | 0: 0.100 → 0.050; 1: 0.100 → 0.050 | +0.050 ± 0.000 |" in out
    assert "seed 1: 03 600 s + 04 500 s (without the extra rows) [alone]" in out
    assert "seed 2: 03 700 s (with the extra rows), then 04 900 s (with the extra rows)" in out


def test_visual_probe_line_shows_each_stage_and_chance(tmp_path):
    import json

    m = {"acc@0.5": 0.5, "acc@0.7": 0.25, "acc@0.9": 0.0, "mean_iou": 0.4, "parse_rate": 1.0, "n": 4}
    vp = {"pure grounder": {"colour": {"majority": 0.21, "n_objects": 100, "pixels": 0.99, "pre_merger": 0.98,
                                       "lm_token": 0.3}}}
    (tmp_path / "base_model.json").write_text(json.dumps({"overall": m, "by_family": {}, "visual_probe": vp}))
    out = readme.render(tmp_path)
    assert "pure grounder, colour 99.0 → 98.0 → **30.0** (chance 21.0)" in out
    (tmp_path / "base_model.json").write_text(json.dumps({"overall": m, "by_family": {}}))
    assert "Image-token probes" not in readme.render(tmp_path)


def test_grpo_sweep_section_shows_each_start_and_arm_with_its_paired_ci(tmp_path):
    import json

    m = {"acc@0.5": 0.7, "acc@0.7": 0.5, "acc@0.9": 0.2, "mean_iou": 0.6, "parse_rate": 1.0, "n": 10}
    st = {"degradation": 0.08, "mean_delta_iou": -0.02, "improve": 0.2, "degrade": 0.5, "stay": 0.3, "n": 10}
    arm = {"step0": m, "last": {**m, "acc@0.5": 0.6}, "stability": st, "training_log": [{"iteration": 1, "kl": 0.02}],
           "vs_sft_start": {"d_acc@0.5": -0.1, "ci_acc@0.5": [-0.2, 0.0], "significant": False}}
    (tmp_path / "grpo_sweep.json").write_text(json.dumps({
        "T": 2, "n_val": 10, "starts": {"runs/sft": {"step0": m, "last": m, "stability": st}}, "arms": {"hot": arm}}))
    out = readme.render(tmp_path)
    assert "| SFT start (no GRPO): `runs/sft` | 70.0 | 70.0 | 0.080 | 50.0 | 30.0 | – | – |" in out
    assert "| hot | 70.0 | 60.0 | 0.080 | 50.0 | 30.0 | 0.020 | -10.0 [-20.0, +0.0] no difference |" in out
    assert "on 10 validation samples" in out
    assert "grpo_sweep" not in readme.render(tmp_path / "nothing")


def test_run_time_note_says_when_training_was_loaded(tmp_path):
    import json

    (tmp_path / "grpo.json").write_text(json.dumps({"grpo_seconds": 2.5}))
    (tmp_path / "seeds.json").write_text(json.dumps({"seconds": {"1": {"04_grpo": 696.2, "03_sft": 700.0}}}))
    note = readme._loaded_note("04_grpo", tmp_path)
    assert note.startswith("training loaded from finished checkpoints") and note.endswith("seed 1: 696 s")
    (tmp_path / "grpo.json").write_text(json.dumps({"grpo_seconds": 700.0}))  # trained in this run: no note
    assert readme._loaded_note("04_grpo", tmp_path) == "" and readme._loaded_note("00_base_model", tmp_path) == ""


def test_full_tier_rows_render_under_their_own_heading(tmp_path):
    """results/full/ (make reproduce TIER=full) renders as a labelled sub-section with its own Phase-1 table and run
    times; the default tier's tables stay unlabelled, and the sweep falls back to the full tier's, labelled."""
    import json

    m = {"acc@0.5": 0.5, "acc@0.7": 0.25, "acc@0.9": 0.0, "mean_iou": 0.4, "parse_rate": 1.0, "n": 4}
    st = {"degradation": 0.05, "degrade": 0.3, "improve": 0.2, "stay": 0.5, "mean_delta_iou": 0.0}
    run = {"per_step": [m, m, m], "step0": m, "last": m, "oracle_best_step (uses GT)": m, "stability": st}
    full = tmp_path / "results" / "full"
    full.mkdir(parents=True)
    (tmp_path / "results" / "sft.json").write_text(json.dumps({**run, "sft": {"steps": 352}}))
    (full / "sft.json").write_text(json.dumps({**run, "sft": {"steps": 352}, "ours_recipe": {**run, "steps": 858}}))
    (full / "sft.provenance.json").write_text(json.dumps(
        {"wall_s": 90.0, "cpus": 2, "machine": "x", "packages": {"torch": "t"}, "load_avg_1_15": None}))
    out = readme.render(tmp_path / "results")
    assert "## Full tier (`make reproduce TIER=full`, `results/full/`)" in out
    assert "ours' SFT for its epochs (858 steps) instead of the paper recipe's step count (352)" in out
    assert "### Full tier: Phase 1 (SFT) recipes" in out and "\n### Phase 1 (SFT) recipes" in out
    assert "### Full tier: Run time per notebook" in out and "| 03_sft | 90 s |" in out
    assert "grpo_sweep`)" not in out  # no sweep anywhere: no sweep section
    (full / "grpo_sweep.json").write_text(json.dumps({"T": 2, "n_val": 5, "starts": {}, "arms": {}}))
    assert "grpo_sweep`), **full tier**" in readme.render(tmp_path / "results")


def test_trained_bullet_compares_the_views_and_needs_overlay_models():
    from ivt_lib.reproduction import findings

    def r(a4: float, kept: float, closer: float) -> dict:
        return {"representation": {"lm_4": {"aligned_vs_4px": {"acc": a4}}},
                "behaviour": {"gt": {"kept": kept}, "gt shifted 4 px": {"closer": closer}}}

    link = lambda nb, f: f"[{f}]"  # noqa: E731
    assert findings.trained_bullets({"SFT + IVT, zoom view, seed 0": {"zoom m0.5 s128": r(0.9, 0.9, 0.6)}}, link) == []
    text = findings.trained_bullets({"SFT + IVT, overlay view, seed 0": {"overlay": r(0.5, 0.1, 0.2)},
                                     "SFT + IVT, overlay view, seed 1": {"overlay": r(0.6, 0.3, 0.4)},
                                     "SFT + IVT, zoom view, seed 0": {"zoom m0.5 s128": r(0.9, 0.9, 0.6)}}, link)[0]
    assert "trained in the overlay view (2) / zoom view (1)" in text and "read at 55.0 % / 90.0 %" in text
    assert "keeps a true box in 20.0 % / 90.0 %" in text and text.endswith("[box_probe_trained.json]")
    sizes = {"paper recipe (own errors)": {"bins": {"[0.14, 0.28)": 0.04}}}
    with_sizes = findings.trained_bullets({"SFT + IVT, overlay view, seed 0": {"overlay": r(0.5, 0.1, 0.2)}}, link, sizes)[0]
    assert "in 4.0 % of refine rows [" in with_sizes and "jittered" not in with_sizes


def test_jittered_bullet_sets_the_ablation_beside_the_own_error_sft_and_stays_out_of_the_view_means():
    from ivt_lib.reproduction import findings

    def r(kept: float, c4: float, c8: float, cos: float) -> dict:
        return {"representation": {"lm_4": {"aligned_vs_4px": {"acc": 0.96}}},
                "behaviour": {"gt": {"kept": kept}, "gt shifted 4 px": {"closer": c4},
                              "gt shifted 8 px": {"closer": c8, "cosine_move_vs_needed": cos}}}

    link = lambda nb, f: f"[{f}]"  # noqa: E731
    z = "zoom m0.5 s128"
    trained = {"SFT + IVT, overlay view, seed 0": {"overlay": r(0.1, 0.5, 0.6, 0.6)},
               "SFT + IVT, zoom view, seed 0": {z: r(0.9, 0.6, 0.3, 0.0)},
               f"{findings.ABLATION}, zoom view, seed 0": {z: r(0.8, 0.7, 0.7, 0.5)},
               f"{findings.ABLATION}, zoom view, seed 1": {z: r(0.6, 0.9, 0.9, 0.7)}}
    last = lambda d, sig: {"d_acc@0.5_vs_step0": d, "significant_vs_step0": sig}  # noqa: E731
    m = lambda x, sd: {"mean": x, "sd": sd}  # noqa: E731
    view = {"configurations": {findings.ABLATION: {
        "per_seed": {0: {"rules": {"last step": last(0.01, False)}}, 1: {"rules": {"last step": last(-0.03, True)}}},
        "across_seeds": {"step 0": {"d_acc@0.5": m(-0.02, 0.01)}, "last step": {"d_acc@0.5": m(-0.03, 0.02)},
                         "ORACLE best step (uses GT)": {"d_acc@0.5": m(0.01, None)}}}}}
    text = findings.jittered_bullet(view, trained, link)
    assert "2 seeds" in text and "closer in 80.0 % (cosine +0.60) against 30.0 % (+0.00)" in text
    assert "from 4 px in 80.0 % against 60.0 %" in text and "true box in only 70.0 % against 90.0 %" in text
    assert "(validation). Test:" in text  # no trace sizes given
    sizes = {"paper ablation: jittered ground truth, zoom view": {"bins": {"[0, 1e-09)": 0.0}}}
    assert "(validation; its traces keep the box in 0.0 % of refine rows). Test:" in findings.jittered_bullet(
        view, trained, link, sizes)
    assert "+1.0, -3.0 pp (significant in 1)" in text and "ORACLE best step +1.0 pp" in text
    assert "step 0 -2.0 ± 1.0 pp" in text and text.endswith("[feedback_view.json]")
    assert findings.jittered_bullet({"configurations": {}}, trained, link) == ""  # not run: no bullet
    means = findings.trained_bullets(trained, link)[0]
    assert "zoom view (1)" in means and "true box in 10.0 % / 90.0 %" in means  # the ablation is not in the means
