"""Notebook hygiene, parameters vs config dataclasses vs tier YAMLs, and papermill smoke runs of every notebook."""
import ast
import json

import nbformat
import papermill as pm
import pytest

from ivt_lib.reproduction import executor
from ivt_lib.configs import NOTEBOOK_CONFIGS, ROOT, TIERS, load_tier

NBS = executor.notebooks()
IDS = [p.stem for p in NBS]


def test_every_notebook_has_a_config():
    assert len(NBS) >= 2
    assert set(IDS) <= set(NOTEBOOK_CONFIGS), "each numbered notebook needs a config dataclass"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_committed_notebook_is_clean(nb):
    n = nbformat.read(nb, as_version=4)
    code = [c for c in n.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be the parameters cell"
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "outputs must be stripped"
        tree = ast.parse("\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        bad = [x for x in ast.walk(tree) if isinstance(x, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not bad, f"no def/class in notebooks: {[b.name for b in bad]}"
        assert "!" not in [l.lstrip()[:1] for l in c.source.splitlines()], "no shell cells"
    assert any("assert " in c.source for c in code), "an assert cell is required"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_parameters_match_dataclass_and_yaml(nb):
    params = pm.inspect_notebook(str(nb))
    cls = NOTEBOOK_CONFIGS[nb.stem]
    fields = set(cls.__dataclass_fields__)
    assert set(params) == fields, f"notebook params vs {cls.__name__}: {set(params) ^ fields}"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{name} needs a type annotation"
        assert p["help"], f"{name} needs a one-line comment"
        default = ast.literal_eval(p["default"])
        assert default == cls.__dataclass_fields__[name].default, f"{name}: notebook and dataclass defaults differ"
    for tier in TIERS:
        section = load_tier(tier).get(nb.stem, {})
        assert set(section) <= set(params), f"{tier}.yaml keys that are not parameters: {set(section) - set(params)}"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_no_cell_rebinds_a_parameter(nb):
    """An import or assignment that reuses a parameter's name silently replaces the parameter (notebook 04 once
    imported the module ``single_step`` over its ``single_step: bool`` parameter, so the ablation could not be
    switched off)."""
    params = set(pm.inspect_notebook(str(nb)))
    n = nbformat.read(nb, as_version=4)
    bound = []
    for c in [c for c in n.cells if c.cell_type == "code"][1:]:
        for x in ast.walk(ast.parse(c.source)):
            if isinstance(x, (ast.Import, ast.ImportFrom)):
                bound += [(a.asname or a.name).split(".")[0] for a in x.names]
            elif isinstance(x, ast.Name) and isinstance(x.ctx, ast.Store):
                bound.append(x.id)
            elif isinstance(x, (ast.For, ast.comprehension)) and isinstance(x.target, ast.Name):
                bound.append(x.target.id)
    clash = sorted(params & set(bound))
    assert not clash, f"{nb.stem}: cells rebind parameters {clash}"


def test_invalid_parameters_fail_before_work(tmp_path):
    nb = NBS[0]
    with pytest.raises(pm.PapermillExecutionError, match="batch_size"):
        pm.execute_notebook(str(nb), str(tmp_path / "bad.ipynb"), parameters={"batch_size": 0, "tier": "smoke"},
                            cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    out = nbformat.read(tmp_path / "bad.ipynb", as_version=4)
    ran = [c for c in out.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) <= 3, "the config cell must be the first cell doing work"


def test_grpo_notebook_says_to_run_notebook_03_first(tmp_path):
    """Notebook 04's guard fires for a missing local SFT model (it once could not: any relative path passed it)."""
    nb = next(p for p in NBS if p.stem == "04_grpo")
    params = {**load_tier("smoke")["04_grpo"], "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "r"),
              "figures_dir": str(tmp_path / "f")}
    with pytest.raises(pm.PapermillExecutionError, match="run notebook 03 first"):
        pm.execute_notebook(str(nb), str(tmp_path / "no_sft.ipynb"), parameters=params, cwd=str(ROOT),
                            kernel_name="python3", progress_bar=False)


EXPECTED = {"00_base_model": "base_model.json", "01_naive_iteration_collapse": "naive_iteration.json",
            "02_teacher_data_synthesis": "teacher_traces.json", "03_sft": "sft.json", "04_grpo": "grpo.json",
            "05_evaluation": "evaluation.json", "06_explore": None}


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_smoke_tier_runs(nb, smoke_chain):
    root, errors = smoke_chain
    assert nb.stem not in errors, f"{nb.stem} failed under papermill: {errors.get(nb.stem)}"
    out = nbformat.read(root / nb.name, as_version=4)
    assert all(c.get("execution_count") for c in out.cells if c.cell_type == "code"), "every cell must run"
    name = EXPECTED[nb.stem]
    if name:
        json.loads((root / "results_dir" / name).read_text())
    figs = list((root / "figures_dir").glob("*.png"))
    assert figs and all(f.with_suffix(".provenance.json").exists() for f in figs)


def test_notebook_defaults_are_the_default_tier():
    """'Run All' in JupyterLab must be what `make reproduce` runs: params/default.yaml sets nothing but the tier name,
    and the assert floors would catch a collapse (SFT once scored 3.6 % with floors of 0)."""
    import yaml

    from ivt_lib.configs import TIER_FOLDERS

    raw = yaml.safe_load((ROOT / "params" / "default.yaml").read_text())
    assert set(raw) == set(IDS)
    for nb, section in raw.items():
        assert section == {"tier": "default"}, f"{nb}: default.yaml must not override the notebook's defaults"
    for nb, section in load_tier("default").items():  # the folders it leaves out are the tier's: the defaults
        assert section == {"tier": "default", **TIER_FOLDERS["default"]}, nb
        assert {k: NOTEBOOK_CONFIGS[nb].__dataclass_fields__[k].default for k in TIER_FOLDERS["default"]} == \
            TIER_FOLDERS["default"], nb
    for nb in NBS:
        params = pm.inspect_notebook(str(nb))
        if "min_acc" in params and nb.stem in ("00_base_model", "01_naive_iteration_collapse", "03_sft", "04_grpo"):
            assert ast.literal_eval(params["min_acc"]["default"]) >= 0.3
            assert ast.literal_eval(params["min_parse_rate"]["default"]) >= 0.9


def test_one_parameter_per_notebook_reaches_its_code(smoke_chain):
    """A parameter the notebook ignored would leave the default's footprint (505 samples, 80 GRPO updates...): each
    notebook's smoke-tier result must show the smoke value of one parameter that shapes it."""
    root, errors = smoke_chain
    smoke = load_tier("smoke")
    res = lambda name: json.loads((root / "results_dir" / name).read_text())  # noqa: E731
    if "00_base_model" not in errors:
        assert res("base_model.json")["overall"]["n"] == smoke["00_base_model"]["n_samples"]
    if "01_naive_iteration_collapse" not in errors:
        n = res("naive_iteration.json")
        assert len(n["per_step"]) == smoke["01_naive_iteration_collapse"]["T"] + 1
        assert len(n["curve_per_step"]) == smoke["01_naive_iteration_collapse"]["T_curve"] + 1
    if "02_teacher_data_synthesis" not in errors:
        assert res("teacher_traces.json")["own_errors"]["n_samples"] == smoke["02_teacher_data_synthesis"]["n_samples"]
    if "03_sft" not in errors:
        assert res("sft.json")["sft"]["steps"] == smoke["03_sft"]["max_steps"]
    if "04_grpo" not in errors:
        log = res("grpo.json")["training_log"]
        assert len(log) == smoke["04_grpo"]["iterations"]
        assert all("val" in e for e in log) and smoke["04_grpo"]["val_every"] == 1
    if "05_evaluation" not in errors:
        ev = res("evaluation.json")
        assert ev["fitted_rules"]["base + naive iteration"]["move_gate"]["n_val"] == smoke["05_evaluation"]["val_n"]
        assert sum(r["n"] for r in ev["per_family"] if r["configuration"] == "base, single shot") == \
            smoke["05_evaluation"]["n_samples"]
    # 06 checks its own: its assert cell requires the widget to open on start_config and start_filter


def test_executed_notebooks_read_cleanly(smoke_chain):
    """What an unattended run leaves for a reader: no frozen progress bars ("generate: 0%| | 0/16", "Loading
    weights"), no echoed figure paths, no NaN in a table (step 0's passes once showed NaN; so did the paper's
    unreported numbers and an empty histogram column)."""
    root, _ = smoke_chain
    for nb in NBS:
        out = nbformat.read(root / nb.name, as_version=4)
        for i, c in enumerate(out.cells):
            for o in c.get("outputs", []) if c.cell_type == "code" else []:
                text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                assert "0%|" not in text and "it/s]" not in text, (nb.stem, i, text[:120])
                assert "PosixPath(" not in text, (nb.stem, i, text[:120])
                assert "NaN" not in text, (nb.stem, i, text[:300])  # a missing number says why, not NaN


def test_executed_notebooks_show_no_machine_paths_warnings_or_raw_tables(smoke_chain):
    """An executed notebook reads like the paper: no absolute paths of the machine that ran it, no library warnings
    or red INFO blocks on stderr, trl's log dicts never printed, tables as percentages (no 0.728713)."""
    import re

    from ivt_lib.configs import ROOT as root_dir

    root, _ = smoke_chain
    for nb in NBS:
        out = nbformat.read(root / nb.name, as_version=4)
        for i, c in enumerate(out.cells):
            for o in c.get("outputs", []) if c.cell_type == "code" else []:
                text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                where = (nb.stem, i, text[:160])
                assert str(root_dir) not in text, where  # (the smoke chain's own tmp folder is a test artefact)
                assert "Warning" not in text and "{'loss'" not in text and "{'train_runtime'" not in text, where
                assert not (o.get("name") == "stderr" and "INFO" in text), where
                if o.get("output_type") == "execute_result" and "text/html" in o.get("data", {}):
                    assert not re.search(r"\b0\.\d{5,}\b", text), where


def test_no_notebook_shadows_ipythons_display():
    """A notebook that calls IPython's display() must not bind that name to ivt_lib's display module (notebook 05's
    seeds cell once failed with "'module' object is not callable", a branch the one-seed smoke tier never runs)."""
    import re

    for nb in NBS:
        src = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
        binds = re.search(r"from ivt_lib\.analysis import [^\n#]*\bdisplay\b(?! as)", src)
        assert not (binds and re.search(r"(?<![.\w])display\(", src)), nb.stem
