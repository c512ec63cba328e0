"""Tests for ivt_lib.configs: typed, validated notebook configs and the params/<tier>.yaml tiers."""
import os
from dataclasses import fields
from pathlib import Path

import pytest

from ivt_lib import configs
from ivt_lib.configs import (NOTEBOOK_CONFIGS, ROOT, BaseModelConfig, ConfigError, NaiveConfig, StageConfig,
                            load_tier, model_source, resolve_path)

REPO_ROOT = Path(__file__).resolve().parent.parent
HUB_ID = "Qwen/Qwen3-VL-4B-Instruct"
REAL_BASE_MODEL = REPO_ROOT / "data" / "base_model" / "config.json"
needs_real_base_model = pytest.mark.skipif(
    not REAL_BASE_MODEL.exists(), reason="data/base_model is absent (being retrained by ivt_lib.embedded.train_base?)")


@pytest.fixture(autouse=True)
def project_root(tmp_path_factory, monkeypatch):
    """Most tests run against a stand-in project root (a model folder with config.json, the real data/scenes and
    params/), so they do not depend on data/base_model, which the training script replaces while it runs.
    Tests that request ``real_root`` see the real tree."""
    root = tmp_path_factory.mktemp("project")
    for m in ("base_model", "base_model_refine_mix"):
        (root / "data" / m).mkdir(parents=True)
        (root / "data" / m / "config.json").write_text("{}")
    (root / "data" / "scenes").symlink_to(REPO_ROOT / "data" / "scenes", target_is_directory=True)
    (root / "params").symlink_to(REPO_ROOT / "params", target_is_directory=True)
    monkeypatch.setattr(configs.base, "ROOT", root)
    return root


@pytest.fixture
def real_root(project_root, monkeypatch):
    monkeypatch.setattr(configs.base, "ROOT", REPO_ROOT)
    return REPO_ROOT


def test_root_is_the_project_root(real_root):
    assert configs.ROOT == ROOT == REPO_ROOT
    assert (ROOT / "params" / "default.yaml").exists()
    assert (ROOT / "ivt_lib" / "configs" / "base.py").exists()


@pytest.mark.parametrize("cls", [StageConfig, BaseModelConfig, NaiveConfig])
def test_defaults_validate(cls, project_root):
    cfg = cls()
    assert cfg.tier == "default" and cfg.split == "test"
    assert cfg.path("model") == project_root / "data" / "base_model"
    assert cfg.path("dataset") == project_root / "data" / "scenes"
    assert cfg.limit is None  # n_samples=0 means the whole split


@needs_real_base_model
@pytest.mark.parametrize("cls", [StageConfig, BaseModelConfig, NaiveConfig])
def test_defaults_validate_on_real_tree(cls, real_root):
    cfg = cls()
    assert cfg.path("model") == REPO_ROOT / "data" / "base_model"
    assert cfg.path("dataset") == REPO_ROOT / "data" / "scenes"


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------------------------
# Invalid values: ConfigError naming the parameter
# ---------------------------------------------------------------------------------------------------------------

INVALID = [
    (StageConfig, {"tier": "huge"}, "tier"),
    (StageConfig, {"tier": "Smoke"}, "tier"),
    (StageConfig, {"split": "val"}, "split"),
    (StageConfig, {"split": "dev"}, "split"),
    (StageConfig, {"n_samples": -1}, "n_samples"),
    (StageConfig, {"n_samples": 2.5}, "n_samples"),
    (StageConfig, {"batch_size": 0}, "batch_size"),
    (StageConfig, {"batch_size": -4}, "batch_size"),
    (StageConfig, {"batch_size": "32"}, "batch_size"),
    (StageConfig, {"max_new_tokens": 0}, "max_new_tokens"),
    (StageConfig, {"dtype": "fp16"}, "dtype"),
    (StageConfig, {"dtype": "float64"}, "dtype"),
    (StageConfig, {"coord_format": "xyxy"}, "coord_format"),
    (StageConfig, {"device": "gpu"}, "device"),
    (StageConfig, {"device": "mps"}, "device"),
    (StageConfig, {"model": "data/no_such_model"}, "model"),
    (StageConfig, {"model": "runs/no_such_run"}, "model"),
    (StageConfig, {"model": "/definitely/not/a/model/dir"}, "model"),
    (StageConfig, {"model": "not a hub id"}, "model"),
    (StageConfig, {"dataset": "data/no_such_dataset"}, "dataset"),
    (StageConfig, {"dataset": "/definitely/not/a/dataset"}, "dataset"),
    (StageConfig, {"min_acc": 1.5}, "min_acc"),
    (StageConfig, {"min_acc": -0.1}, "min_acc"),
    (StageConfig, {"min_parse_rate": 1.01}, "min_parse_rate"),
    (NaiveConfig, {"T": 0}, "T"),
    (NaiveConfig, {"T": -1}, "T"),
    (NaiveConfig, {"T": 3, "T_curve": 2}, "T_curve"),
    (NaiveConfig, {"T_curve": 1}, "T_curve"),
    (NaiveConfig, {"still_eps": 0.0}, "still_eps"),
    (NaiveConfig, {"still_eps": 1.0}, "still_eps"),
    (NaiveConfig, {"still_eps": -0.2}, "still_eps"),
    (NaiveConfig, {"probe_n": -1}, "probe_n"),
    (NaiveConfig, {"grid_n": 65}, "grid_n"),
    (NaiveConfig, {"min_acc": 2.0}, "min_acc"),
    (BaseModelConfig, {"retrain_steps": 100}, "retrain_steps"),
    (BaseModelConfig, {"grid_n": -1}, "grid_n"),
    (BaseModelConfig, {"batch_size": 0}, "batch_size"),
    (NaiveConfig, {"generation_backend": "sglang"}, "generation_backend"),
    (NaiveConfig, {"generation_backend": "vllm", "device": "cpu"}, "generation_backend"),
    (BaseModelConfig, {"vllm_gpu_memory": 0.0}, "vllm_gpu_memory"),
    (BaseModelConfig, {"vllm_gpu_memory": 1.0}, "vllm_gpu_memory"),
    (configs.SFTStageConfig, {"grad_accum": 0}, "grad_accum"),
    (configs.SFTStageConfig, {"ours_max_steps": -2}, "ours_max_steps"),
    (configs.GRPOStageConfig, {"micro_batch": 0}, "micro_batch"),
    (configs.GRPOStageConfig, {"quantize_4bit": True, "generation_backend": "vllm", "device": "cuda"}, "quantize_4bit"),
]


@pytest.mark.parametrize("cls,kwargs,name", INVALID, ids=[f"{c.__name__}-{n}-{v}" for c, v, n in INVALID])
def test_invalid_value_raises_config_error_naming_parameter(cls, kwargs, name):
    with pytest.raises(ConfigError) as ei:
        cls(**kwargs)
    msg = str(ei.value)
    assert f"parameter {name}=" in msg, msg


def test_model_folder_without_config_json_is_rejected(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="parameter model="):
        StageConfig(model=str(tmp_path))


def test_model_folder_with_config_json_is_accepted(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    cfg = StageConfig(model=str(tmp_path))
    assert cfg.path("model") == tmp_path
    assert model_source(cfg.model) == str(tmp_path)


@pytest.mark.parametrize("kwargs", [
    {"split": "train"}, {"split": "validation"}, {"dtype": "bfloat16"}, {"dtype": "auto"}, {"device": "cpu"},
    {"device": "cuda"}, {"device": "cuda:1"}, {"coord_format": "qwen25"}, {"min_acc": 1.0}, {"n_samples": 5},
    *({"tier": t, **configs.TIER_FOLDERS[t]} for t in ("smoke", "paper", "paper_24gb")),
])
def test_valid_values_are_accepted(kwargs):
    cfg = StageConfig(**kwargs)
    for k, v in kwargs.items():
        assert getattr(cfg, k) == v


def test_hub_id_is_accepted_as_model():
    cfg = NaiveConfig(model=HUB_ID)
    assert cfg.model == HUB_ID
    assert model_source(cfg.model) == HUB_ID  # unchanged: from_pretrained resolves it on the hub


# ---------------------------------------------------------------------------------------------------------------
# from_params, paths, model_source
# ---------------------------------------------------------------------------------------------------------------


def test_from_params_ignores_unknown_keys_like_notebook_globals():
    notebook_globals = {"__name__": "__main__", "np": object(), "cfg": None, "In": [], "tier": "smoke",
                        **configs.TIER_FOLDERS["smoke"], "n_samples": 12, "T": 3, "T_curve": 5, "not_a_field": 1}
    cfg = NaiveConfig.from_params(notebook_globals)
    assert (cfg.tier, cfg.n_samples, cfg.T, cfg.T_curve) == ("smoke", 12, 3, 5)
    base = BaseModelConfig.from_params(notebook_globals)  # T belongs to NaiveConfig only
    assert not hasattr(base, "T") and base.n_samples == 12 and base.limit == 12


def test_from_params_still_validates():
    with pytest.raises(ConfigError, match="parameter batch_size="):
        StageConfig.from_params({"batch_size": 0, "unrelated": "x"})


def test_to_dict_round_trips():
    cfg = NaiveConfig(T=3, T_curve=6, n_samples=4)
    d = cfg.to_dict()
    assert set(d) == {f.name for f in fields(NaiveConfig)}
    assert NaiveConfig.from_params(d) == cfg


def test_resolve_path_relative_from_root_absolute_unchanged(tmp_path, project_root):
    assert resolve_path("data/scenes") == project_root / "data" / "scenes"
    assert resolve_path(Path("results")) == project_root / "results"
    assert resolve_path("data/scenes").is_absolute()
    assert resolve_path(tmp_path) == tmp_path
    assert resolve_path(str(tmp_path)) == tmp_path


def test_resolve_path_does_not_depend_on_cwd(tmp_path, monkeypatch, project_root):
    monkeypatch.chdir(tmp_path)  # e.g. JupyterLab runs notebooks from notebooks/
    assert resolve_path("data/scenes") == project_root / "data" / "scenes"
    cfg = StageConfig()  # relative defaults still validate from another cwd
    assert cfg.path("results_dir") == project_root / "results"


def test_resolve_path_uses_real_root_by_default(real_root):
    assert resolve_path("data/scenes") == REPO_ROOT / "data" / "scenes"


def test_model_source_local_and_hub(project_root):
    local = project_root / "data" / "base_model"
    assert model_source("data/base_model") == str(local)
    assert Path(model_source("data/base_model")).is_absolute()
    assert model_source(HUB_ID) == HUB_ID
    assert model_source(str(local)) == str(local)


# ---------------------------------------------------------------------------------------------------------------
# Tiers
# ---------------------------------------------------------------------------------------------------------------


def test_notebook_configs_registry(real_root):  # real tree: the notebooks folder
    from ivt_lib.reproduction.executor import notebooks

    assert NOTEBOOK_CONFIGS["00_base_model"] is BaseModelConfig
    assert NOTEBOOK_CONFIGS["01_naive_iteration_collapse"] is NaiveConfig
    assert set(NOTEBOOK_CONFIGS) == {p.stem for p in notebooks()}, "one config per numbered notebook"


@pytest.mark.parametrize("tier", ["smoke", "default", "full"])
def test_load_tier_sections_validate(tier):
    params = load_tier(tier)
    assert set(params) == set(NOTEBOOK_CONFIGS)
    for nb, section in params.items():
        cls = NOTEBOOK_CONFIGS[nb]
        cfg = cls.from_params(section)
        assert cfg.tier == tier
        for k, v in section.items():
            assert getattr(cfg, k) == v, (nb, k)


@needs_real_base_model
@pytest.mark.parametrize("tier", ["smoke", "default", "full"])
def test_load_tier_sections_validate_on_real_tree(tier, real_root):
    for nb, section in load_tier(tier).items():
        assert NOTEBOOK_CONFIGS[nb].from_params(section).tier == tier


@pytest.mark.parametrize("tier", configs.TIERS)
def test_tier_files_use_only_known_fields(tier):
    """from_params drops unknown keys silently, so a typo in a yaml file would be lost: every key must be a field."""
    for nb, section in load_tier(tier).items():
        assert nb in NOTEBOOK_CONFIGS, nb
        known = {f.name for f in fields(NOTEBOOK_CONFIGS[nb])}
        assert set(section) <= known, (tier, nb, set(section) - known)
        assert section["tier"] == tier


def test_smoke_tier_stays_small_and_off_committed_results():
    for nb, section in load_tier("smoke").items():
        cfg = NOTEBOOK_CONFIGS[nb].from_params(section)
        assert 0 < cfg.n_samples <= 20, nb
        for attr in ("results_dir", "figures_dir", "runs_dir"):
            assert cfg.path(attr).is_relative_to(configs.base.ROOT / "runs" / "smoke"), (nb, attr)


@pytest.mark.parametrize("tier", ["paper", "paper_24gb"])
def test_paper_tier_is_valid_apart_from_its_dataset(tier):
    """The paper dataset is built only with hub access; swapped for the local one, everything else validates."""
    for nb, section in load_tier(tier).items():
        cls = NOTEBOOK_CONFIGS[nb]
        assert section["model"] == HUB_ID
        cfg = cls.from_params({**section, "dataset": "data/scenes"})
        assert cfg.tier == tier and cfg.dtype == "bfloat16"
        if not resolve_path(section["dataset"]).exists():
            with pytest.raises(ConfigError, match="parameter dataset="):
                cls.from_params(section)


def test_full_tier_is_the_default_plus_its_documented_extras():
    """The full tier differs from the default only by its folders and the three things the default leaves out to fit
    its time budget, so the paper-recipe rows of both tiers come from the same settings."""
    extras = {"03_sft": {"ablation_jittered": True, "ours_max_steps": -1}, "04_grpo": {"single_step": True}}
    default, full = load_tier("default"), load_tier("full")
    for nb in NOTEBOOK_CONFIGS:
        d = NOTEBOOK_CONFIGS[nb].from_params(default[nb]).to_dict()
        f = NOTEBOOK_CONFIGS[nb].from_params(full[nb]).to_dict()
        diff = {k: f[k] for k in d if d[k] != f[k] and k not in configs.DERIVED_FROM_RUNS_DIR}  # follow runs_dir
        assert diff == {"tier": "full", "results_dir": "results/full", "figures_dir": "figures/full",
                        "runs_dir": "runs/full", **extras.get(nb, {})}, nb


def test_paper_tiers_keep_the_paper_ablations():
    for tier in ("paper", "paper_24gb"):
        p = load_tier(tier)
        assert p["03_sft"]["ablation_jittered"] and p["04_grpo"]["single_step"] and not p["03_sft"]["recipe_ours"]


def test_load_tier_unknown_raises():
    with pytest.raises(ConfigError, match="parameter tier="):
        load_tier("huge")


def test_generation_backend_is_a_field_of_every_generating_stage():
    from ivt_lib.configs import NOTEBOOK_CONFIGS, GenerationStageConfig

    generating = {n for n, c in NOTEBOOK_CONFIGS.items() if issubclass(c, GenerationStageConfig)}
    assert generating == {n for n in NOTEBOOK_CONFIGS if n[:2] in ("00", "01", "02", "03", "04", "05")}  # 05 fits rules
    cfg = NaiveConfig(generation_backend="vllm", device="cuda", vllm_gpu_memory=0.5, batch_size=8)
    assert cfg.policy_kwargs() == {"backend": "vllm", "device": "cuda", "dtype": "float32", "max_new_tokens": 32,
                                   "batch_size": 8, "vllm_gpu_memory": 0.5}


def test_paper_24gb_is_the_paper_recipe_with_less_memory():
    """Same model, data, steps and optimiser-step batch as the 80 GB tier; QLoRA and smaller forward batches."""
    big, small = load_tier("paper"), load_tier("paper_24gb")
    assert big.keys() == small.keys()
    memory_keys = {"tier", "batch_size", "train_batch_size", "grad_accum", "micro_batch", "quantize_4bit",
                   "results_dir", "figures_dir", "runs_dir"}
    for nb in big:
        b, s = big[nb], small[nb]
        assert {k: v for k, v in b.items() if k not in memory_keys} == {k: v for k, v in s.items() if k not in memory_keys}, nb
        if "batch_size" in b:
            assert s["batch_size"] <= b["batch_size"], nb
        for k in ("results_dir", "runs_dir"):
            assert "paper_24gb" in s[k], (nb, k)  # 4-bit numerics differ: never mixed with the 80 GB results
    assert big["03_sft"]["quantize_4bit"] is False and small["03_sft"]["quantize_4bit"] is True
    assert small["04_grpo"]["quantize_4bit"] is True and small["04_grpo"]["micro_batch"] < big["04_grpo"]["micro_batch"]
    step = lambda c: c["train_batch_size"] * c.get("grad_accum", 1)  # noqa: E731
    assert step(big["03_sft"]) == step(small["03_sft"]) == 16


@pytest.mark.parametrize("cls,bad", [(BaseModelConfig, {"batch_size": "32"}), (BaseModelConfig, {"retrain": "yes"}),
                                     (BaseModelConfig, {"n_samples": True}), (BaseModelConfig, {"model": 3}),
                                     (BaseModelConfig, {"min_acc": "0.4"})])
def test_every_field_is_type_checked(cls, bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        cls(**bad)


def test_a_float_field_accepts_an_int():
    assert BaseModelConfig(min_acc=0).min_acc == 0


def test_upstream_folders_are_derived_from_runs_dir():
    """A tier names its scratch folder once; an explicit value is kept."""
    from ivt_lib.configs import EvaluationConfig, GRPOStageConfig, SFTStageConfig, TeacherSynthConfig

    assert TeacherSynthConfig(runs_dir="runs/x").traces_dir == "runs/x/traces"
    assert SFTStageConfig(runs_dir="runs/x/").traces_dir == "runs/x/traces"
    assert GRPOStageConfig(runs_dir="runs/x").sft_model == "runs/x/sft/student/merged"
    assert EvaluationConfig(runs_dir="runs/x").trajectories_dir == "runs/x/trajectories"
    assert GRPOStageConfig(runs_dir="runs/x", sft_model="Qwen/Some-SFT").sft_model == "Qwen/Some-SFT"
    for tier in ("smoke", "paper", "paper_24gb"):  # the tier files no longer repeat them
        for nb, section in configs.load_tier(tier).items():
            assert not set(section) & set(configs.DERIVED_FROM_RUNS_DIR), (tier, nb)
            cfg = configs.tier_config(tier, nb) if tier == "smoke" else None
            if cfg is not None and hasattr(cfg, "traces_dir"):
                assert cfg.traces_dir == f"{section['runs_dir']}/traces"


def test_sft_run_config_from_stage():
    from dataclasses import fields as dc_fields

    from ivt_lib.configs import SFTStageConfig
    from ivt_lib.training.sft import SFTRunConfig

    stage = SFTStageConfig(lora_r=8, lora_alpha=16, learning_rate=1e-4, train_batch_size=3, grad_accum=2,
                           epochs=1.0, seed=4, dtype="bfloat16", device="cuda")
    run = SFTRunConfig.from_stage(stage)
    assert (run.lora_r, run.lora_alpha, run.learning_rate, run.train_batch_size, run.grad_accum, run.epochs,
            run.seed, run.bf16) == (8, 16, 1e-4, 3, 2, 1.0, 4, True)
    shared = {f.name for f in dc_fields(SFTRunConfig)} & set(SFTStageConfig().to_dict())
    assert {n: getattr(SFTRunConfig.from_stage(SFTStageConfig()), n) for n in shared} == \
        {n: getattr(SFTRunConfig(), n) for n in shared}, "the two layers' defaults disagree"


@pytest.mark.parametrize("tier", ["paper", "paper_24gb"])
def test_paper_tier_pins_the_grpo_sampling_recipe(tier):
    """The paper tiers state their rollout recipe instead of inheriting it from the dataclass defaults."""
    section = load_tier(tier)["04_grpo"]
    assert section["credit"] == "trajectory" and section["refine_credit_ablation"] is False
    assert section["temperature"] == 1.0 and section["top_p"] == 1.0


def test_ours_budget():
    """Ours' SFT step budget: -1 keeps the epochs, 0 takes the paper recipe's steps (same compute), N is N steps."""
    from ivt_lib.training.sft import SFTRunConfig, ours_budget

    cfg = SFTRunConfig(epochs=2.0)
    assert ours_budget(cfg, -1, 352) is cfg
    assert ours_budget(cfg, 0, 352).max_steps == 352 and ours_budget(cfg, 0, 352).epochs == 2.0
    assert ours_budget(cfg, 100, 352).max_steps == 100
    with pytest.raises(ValueError, match="ours_max_steps"):
        ours_budget(cfg, -2, 352)


# ---------------------------------------------------------------------------------------------------------------
# Tier files are a schema (issue 33): each probe of a careless or mistyped tier file, and the error that names it
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def tier_dir(project_root):
    """A writable copy of params/ in the stand-in root, so a test can break one tier file."""
    params = project_root / "params"
    params.unlink()
    params.mkdir()
    for f in (REPO_ROOT / "params").glob("*.yaml"):
        (params / f.name).write_text(f.read_text())
    return params


def _smoke_with(tier_dir, edit) -> None:
    """Rewrite params/smoke.yaml through ``edit(sections) -> sections`` (a plain dict of the file's sections)."""
    import yaml

    path = tier_dir / "smoke.yaml"
    path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text())), sort_keys=False))


def _error(tier="smoke") -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_tier(tier)
    return ei.value


def test_a_misspelt_section_names_file_section_and_the_notebook_it_meant(tier_dir):
    _smoke_with(tier_dir, lambda d: {("03_sfts" if k == "03_sft" else k): v for k, v in d.items()})
    e = _error()
    assert str(e).startswith("params/smoke.yaml, section 03_sfts: not a notebook (did you mean 03_sft?)"), e


def test_an_extra_section_is_refused(tier_dir):
    _smoke_with(tier_dir, lambda d: {**d, "07_new": {"tier": "smoke"}})
    assert str(_error()).startswith("params/smoke.yaml, section 07_new: not a notebook")


def test_a_section_given_twice_is_refused(tier_dir):
    path = tier_dir / "smoke.yaml"
    text = path.read_text()
    path.write_text(text + "03_sft:\n  tier: smoke\n")  # safe_load would keep this one, silently
    n = text.count("\n")
    assert str(_error()) == (f"params/smoke.yaml, section 03_sft: given twice (lines "
                             f"{text.splitlines().index('03_sft:') + 1} and {n + 1}): give it once")
    path.write_text(text.replace("  max_steps: 2\n", "  max_steps: 2\n  max_steps: -7\n"))
    assert str(_error()).startswith("params/smoke.yaml, section 03_sft, key max_steps: given twice (lines ")


def test_a_missing_section_is_refused(tier_dir):
    _smoke_with(tier_dir, lambda d: {k: v for k, v in d.items() if k != "04_grpo"})
    assert str(_error()).startswith("params/smoke.yaml, section 04_grpo: no section for 04_grpo")


@pytest.mark.parametrize("text,why", [("", "the file is empty"), ("# only a comment\n", "the file is empty"),
                                      ("- 00_base_model\n- 01_naive_iteration_collapse\n", "the top level is a list"),
                                      ("just text\n", "the top level is a str"),
                                      ("03_sft: [\n", "not valid YAML")])
def test_an_empty_or_odd_file_is_a_clear_config_error(tier_dir, text, why):
    """A top-level list used to crash with AttributeError: 'list' object has no attribute 'get'."""
    (tier_dir / "smoke.yaml").write_text(text)
    assert str(_error()).startswith(f"params/smoke.yaml: {why}")


def test_a_missing_tier_key_is_refused(tier_dir):
    _smoke_with(tier_dir, lambda d: {**d, "03_sft": {k: v for k, v in d["03_sft"].items() if k != "tier"}})
    e = _error()
    assert str(e) == ("params/smoke.yaml, section 03_sft, key tier: missing: every section names its tier "
                      "(`tier: smoke`)")
    assert (e.file, e.section, e.key) == ("params/smoke.yaml", "03_sft", "tier")


def test_another_tiers_name_in_a_section_is_refused(tier_dir):
    _smoke_with(tier_dir, lambda d: {**d, "05_evaluation": {**d["05_evaluation"], "tier": "default"}})
    assert str(_error()).startswith("params/smoke.yaml, section 05_evaluation, key tier: 'default' in the smoke")


def test_a_section_that_is_not_a_mapping_is_refused(tier_dir):
    _smoke_with(tier_dir, lambda d: {**d, "06_explore": None})
    assert str(_error()).startswith("params/smoke.yaml, section 06_explore: must be a mapping")


def test_an_unknown_key_names_file_section_and_key(tier_dir):
    _smoke_with(tier_dir, lambda d: {**d, "03_sft": {**d["03_sft"], "max_step": 2}})
    assert str(_error()) == ("params/smoke.yaml, section 03_sft, key max_step: not a parameter of 03_sft "
                             "(did you mean max_steps?)")


def test_missing_folders_are_the_tiers_own_never_the_default_tiers(tier_dir):
    """A smoke section without results_dir used to run on the notebook's defaults: results/ and runs/default."""
    drop = ("results_dir", "figures_dir", "runs_dir")
    _smoke_with(tier_dir, lambda d: {k: {p: v for p, v in s.items() if p not in drop} for k, s in d.items()})
    for section in load_tier("smoke").values():
        assert {k: section[k] for k in drop} == configs.TIER_FOLDERS["smoke"]
    cfg = configs.tier_config("smoke", "03_sft")
    assert cfg.results_dir == "runs/smoke/results" and cfg.traces_dir == "runs/smoke/traces"


@pytest.mark.parametrize("tier,key,value,owner", [
    ("smoke", "results_dir", "results", "default"), ("smoke", "results_dir", "results/sub", "default"),
    ("smoke", "figures_dir", "figures", "default"), ("smoke", "runs_dir", "runs/default", "default"),
    ("smoke", "results_dir", "results/full", "full"), ("default", "results_dir", "runs/smoke/results", "smoke"),
    ("full", "runs_dir", "runs/default/x", "default"), ("default", "results_dir", "results/paper", "paper")])
def test_a_tier_cannot_write_into_another_tiers_folders(tier_dir, tier, key, value, owner):
    import yaml

    path = tier_dir / f"{tier}.yaml"
    d = yaml.safe_load(path.read_text())
    d["01_naive_iteration_collapse"][key] = value
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    e = _error(tier)
    assert str(e).startswith(f"params/{tier}.yaml, section 01_naive_iteration_collapse, key {key}: {value!r} is "
                             f"inside the {owner} tier's folder"), e


def test_a_notebook_run_by_hand_cannot_write_into_another_tiers_folders():
    """The same check in the config itself: tier = "smoke" in JupyterLab, the folders left at results/..."""
    with pytest.raises(ConfigError) as ei:
        NaiveConfig(tier="smoke")
    assert str(ei.value).startswith("parameter results_dir='results': is inside the default tier's folder results/: "
                                    "a smoke-tier run writes only in its own folders (runs/smoke/results, ")
    NaiveConfig(tier="smoke", **configs.TIER_FOLDERS["smoke"])
    NaiveConfig(tier="smoke", results_dir="/tmp/anywhere", figures_dir="/tmp/f", runs_dir="/tmp/r")  # no tier's


def test_a_bad_value_names_file_section_and_key(tier_dir):
    """``T: "two"`` gave a clear ConfigError, but without the section or the file."""
    from ivt_lib.reproduction import executor

    _smoke_with(tier_dir, lambda d: {**d, "01_naive_iteration_collapse": {**d["01_naive_iteration_collapse"],
                                                                            "T": "two"}})
    with pytest.raises(ConfigError) as ei:
        executor.validate("smoke")
    assert str(ei.value) == ("params/smoke.yaml, section 01_naive_iteration_collapse, key T: parameter T='two': "
                             "must be of type int, got str")
    with pytest.raises(ConfigError, match="^params/smoke.yaml, section 01_naive_iteration_collapse, key T: "):
        configs.tier_config("smoke", "01_naive_iteration_collapse")


@pytest.mark.parametrize("value,ok", [(-7, False), (-2, False), (0, False), (-1, True), (1, True), (352, True)])
def test_max_steps_by_epochs_is_the_one_explicit_value_minus_1(tier_dir, value, ok):
    """``max_steps: -7`` was taken to mean "train by epochs"; now only -1 (BY_EPOCHS) says that."""
    from ivt_lib.reproduction import executor

    _smoke_with(tier_dir, lambda d: {**d, "03_sft": {**d["03_sft"], "max_steps": value}})
    if ok:
        executor.validate("smoke")
        return
    with pytest.raises(ConfigError) as ei:
        executor.validate("smoke")
    assert str(ei.value) == (f"params/smoke.yaml, section 03_sft, key max_steps: parameter max_steps={value}: "
                             f"must be -1 (train by epochs) or a step count >= 1")
    assert configs.BY_EPOCHS == -1


@pytest.mark.parametrize("cls,kwargs", [
    (configs.SFTStageConfig, {"lora_alpha": -128}), (configs.SFTStageConfig, {"ours_max_steps": -7}),
    (configs.SFTStageConfig, {"epochs": -2.0, "max_steps": 5}), (configs.GRPOStageConfig, {"lora_r": -16}),
    (configs.GRPOStageConfig, {"val_every": 0, "val_n": -3}), (StageConfig, {"seed": -1}),
    (configs.TeacherSynthConfig, {"max_trajectories": -1}), (BaseModelConfig, {"visual_probe_n": -5})])
def test_negative_counts_are_refused(cls, kwargs):
    with pytest.raises(ConfigError) as ei:
        cls(**kwargs)
    assert ei.value.key == next(k for k, v in kwargs.items() if v < 0), ei.value


# ---------------------------------------------------------------------------------------------------------------
# Fail before the work: output folders are checked when the config is built
# ---------------------------------------------------------------------------------------------------------------


def test_an_output_folder_that_cannot_be_written_fails_when_the_config_is_built(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"^parameter results_dir='.*afile/results': cannot be a folder: .*is a file"):
        configs.EvaluationConfig(results_dir=str(tmp_path / "afile" / "results"))
    with pytest.raises(ConfigError, match=r"^parameter figures_dir='/sys/ivt_figures': is not writable: /sys"):
        configs.EvaluationConfig(figures_dir="/sys/ivt_figures")  # read-only even for root
    with pytest.raises(ConfigError, match=r"^parameter traces_dir="):  # notebook 02 writes its traces there too
        configs.TeacherSynthConfig(traces_dir="/sys/ivt_traces")
    assert not (tmp_path / "results").exists(), "the check writes nothing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_results_folder_fails_when_the_config_is_built(tmp_path):
    ro = tmp_path / "results"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="^parameter results_dir=.*is not writable"):
            configs.EvaluationConfig(results_dir=str(ro))
    finally:
        ro.chmod(0o755)


def test_a_reproduction_with_an_unwritable_folder_runs_nothing(tier_dir, monkeypatch):
    """Notebook 05 used to compute for 157 s, rewrite 6 figures, then fail on a read-only results/."""
    import papermill

    from ivt_lib.reproduction import executor, reproduce

    ran = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: ran.append(a))
    _smoke_with(tier_dir, lambda d: {**d, "05_evaluation": {**d["05_evaluation"], "figures_dir": "/sys/ivt_figs"}})
    with pytest.raises(ConfigError, match="^params/smoke.yaml, section 05_evaluation, key figures_dir: .*not writable"):
        reproduce.run("smoke")
    assert ran == [] and executor.NB_DIR.exists()
