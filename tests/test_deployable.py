"""Deployable vs oracle: per-rule answers and their true compute, paired rows, the generated verdict."""
import pytest

from ivt_lib.analysis import deployable as dep
from ivt_lib.analysis import selection as sel
from ivt_lib.core.loop import StepRecord, Trajectory

GT = (10.0, 10.0, 50.0, 50.0)
FAR = (70.0, 70.0, 110.0, 110.0)


def tr(boxes, sid, lps=None):
    from ivt_lib.core import boxes as bx

    lps = lps or [-0.5] * len(boxes)
    return Trajectory(sid, "f", GT, 128, 128, [StepRecord("", b, bx.iou(b, GT) if b else 0.0, b is not None, None, lp)
                                               for b, lp in zip(boxes, lps)])


def test_rule_answers_cost_their_true_passes():
    trajs = [tr([FAR, GT, GT], "a"), tr([GT, FAR, FAR], "b")]
    gate = {"tau": 0.5}
    ans = dep.rule_answers(trajs, 0.05, gate=gate, sampled=[[tr([GT], "a"), tr([FAR], "b")]] * 3)
    assert ans["step 0"] == ([0.0, 1.0], 1.0)
    assert ans["last step (T=2)"] == ([1.0, 0.0], 3.0)
    assert ans["ORACLE best step (uses GT)"] == ([1.0, 1.0], 3.0)
    assert ans["confidence (label-free)"][1] == 3.0
    assert ans["best-of-3 ORACLE (uses GT)"] == ([1.0, 0.0], 3.0)
    assert ans["self-consistency (label-free)"][1] == 3.0
    # stop-when-still: a stands still at step 2 (3 passes), b at step 2 too (FAR -> FAR)
    assert ans["stop-when-still (label-free)"] == ([1.0, 0.0], 3.0)
    gate_rows = [k for k in ans if k.startswith("move gate")]
    assert gate_rows and ans[gate_rows[0]] == ([1.0, 0.0], 3.0)
    single = dep.rule_answers([tr([GT], "a")])
    assert list(single) == ["step 0"]


def _rows(step0, refined, name="SFT + IVT", rule="last step (T=2)"):
    ref = step0
    return (dep.rows_for(dep.REFERENCE, {"step 0": (ref, 1.0)}, ref)
            + dep.rows_for(name, {"step 0": (step0, 1.0), rule: (refined, 3.0),
                                  "self-consistency (label-free)": (step0, 3.0)}, ref))


def test_verdict_no_gain_names_the_best_deployable():
    ious = [1.0, 0.0] * 50
    v = dep.verdict(_rows(ious, ious))
    assert not v["moonshot_met"] and v["text"].startswith("No label-free rule")
    assert v["best_deployable"]["acc@0.5"] == 0.5


def test_verdict_significant_gain_over_trajectory_meets_the_moonshot():
    step0 = [1.0] * 50 + [0.0] * 50
    v = dep.verdict(_rows(step0, [1.0] * 100))
    assert v["moonshot_met"] and v["text"].startswith("MOONSHOT MET")
    assert v["winners"] == [("SFT + IVT", "last step (T=2)")]


def test_verdict_needs_a_gain_over_the_configurations_own_step0():
    """Regression: a better-trained base whose refined answer only keeps its better step 0 beat base single shot and
    was reported as MOONSHOT MET (the refine-mix ablation base, +17 pp with refinement changing nothing)."""
    ref = [1.0] * 50 + [0.0] * 50
    better0 = [1.0] * 90 + [0.0] * 10
    rows = (dep.rows_for(dep.REFERENCE, {"step 0": (ref, 1.0)}, ref)
            + dep.rows_for("other base", {"step 0": (better0, 1.0), "confidence (label-free)": (better0, 3.0),
                                          "self-consistency (label-free)": (ref, 3.0)}, ref))
    conf = next(r for r in rows if r["rule"].startswith("confidence"))
    assert conf["significant"] and conf["d_acc@0.5_vs_step0"] == 0.0 and not conf["significant_vs_step0"]
    v = dep.verdict(rows)
    assert not v["moonshot_met"] and v["text"].startswith("No label-free rule")


def test_verdict_ignores_oracle_and_self_consistency():
    step0 = [1.0] * 50 + [0.0] * 50
    rows = (dep.rows_for(dep.REFERENCE, {"step 0": (step0, 1.0)}, step0)
            + dep.rows_for("x", {"ORACLE best step (uses GT)": ([1.0] * 100, 3.0),
                                 "self-consistency (label-free)": ([1.0] * 100, 3.0)}, step0))
    assert not dep.verdict(rows)["moonshot_met"]


def test_rows_carry_paired_ci_and_mcnemar():
    step0 = [1.0] * 50 + [0.0] * 50
    r = dep.rows_for("x", {"last": ([1.0] * 100, 3.0)}, step0)[0]
    assert r["d_acc@0.5"] == 0.5 and r["ci_acc@0.5"][0] > 0 and r["gained"] == 50 and r["lost"] == 0
    assert r["p"] < 1e-10 and r["significant"]


def test_common_samples_pairs_configs_of_different_sizes():
    a = [tr([GT], "s1"), tr([GT], "s2"), tr([GT], "s3")]
    b = [tr([FAR, GT], "s2"), tr([FAR, GT], "s1")]
    out = dep.common_samples({"a": a, "b": b})
    assert [t.sample_id for t in out["a"]] == ["s1", "s2"] == [t.sample_id for t in out["b"]]
    with pytest.raises(ValueError, match="share no sample"):
        dep.common_samples({"a": a, "c": [tr([GT], "zz")]})


class EchoPolicy:
    """Greedy: answers the truth at step 0 and keeps the stated box; sampling: a fixed far box on odd seeds."""

    temperature, top_p = 0.0, 1.0

    def generate(self, messages, images, seeds=None):
        from ivt_lib.core.loop import Generation
        from ivt_lib.core.parsing import format_box

        out = []
        for i, _ in enumerate(messages):
            bad = seeds is not None and seeds[i] % 2 == 1
            out.append(Generation(format_box((547, 547, 859, 859) if bad else (78, 78, 391, 391)), -0.3))
        return out


def test_fit_and_sample_fits_on_validation_and_samples_test(test_samples):
    test = test_samples[:6]
    val = test_samples[6:12]
    from ivt_lib.core.loop import run_loop

    trajs = run_loop(EchoPolicy(), test, T=2, show_progress=False)
    fitted, sampled = dep.fit_and_sample(EchoPolicy(), trajs, test, val, temperature=0.7)
    assert fitted["fitted_on"]["split"] == "validation" and fitted["fitted_on"]["n"] == 6
    assert "tau" in fitted["gate"] and len(sampled) == 3 and all(len(r) == 6 for r in sampled)
    with pytest.raises(ValueError, match="same samples"):
        dep.fit_and_sample(EchoPolicy(), trajs[::-1], test, val)
    assert sel.medoid([s[0].steps[0].box for s in sampled]) is not None


def test_verdict_shares_follow_the_row_order():
    """The per-configuration dict of results/evaluation.json keeps the rows' order, run after run (it iterated a set,
    whose order of strings changes with each process's hash seed)."""
    ref = [1.0, 0.0, 0.0, 0.0]
    names = [f"config {c}" for c in "qwertyuiopas"]
    rows = dep.rows_for(dep.REFERENCE, {"step 0": (ref, 1.0)}, ref)
    for n in names:
        rows += dep.rows_for(n, {"step 0": (ref, 1.0), "ORACLE best step (uses GT)": ([1.0, 1.0, 0.0, 0.0], 3.0),
                                 "best-of-3 ORACLE (uses GT)": ([1.0, 0.0, 1.0, 0.0], 3.0)}, ref)
    assert list(dep.verdict(rows)["best_of_n_share_of_oracle_gain"]) == names
