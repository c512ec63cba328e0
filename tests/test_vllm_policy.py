"""The optional vLLM backend: lazy import, a clear error without vLLM, and (with a fake ``vllm`` module that mimics
``LLM``, ``SamplingParams`` and the RequestOutput / CompletionOutput shape) prompts, images, Generations and the loop.
Real vLLM needs a GPU machine and is not exercised here."""
import subprocess
import sys
import types

import numpy as np
import torch
import pytest

from ivt_lib.core import boxes as bx
from ivt_lib.configs import ROOT
from ivt_lib.core.loop import Generation, run_loop
from ivt_lib.core.parsing import format_box, parse_box
from ivt_lib.core.prompts import refine_messages, step0_messages
from ivt_lib.core.render import draw_box

STEP0_BOX = (100, 100, 400, 400)  # 0-1000 frame
SHIFT = 100
EOS = 2


class FakeLogprob:
    def __init__(self, logprob: float, rank: int = 1):
        self.logprob, self.rank = logprob, rank


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeCompletion:
    def __init__(self, text, token_ids, logprobs, cumulative_logprob):
        self.index, self.text, self.token_ids = 0, text, token_ids
        self.logprobs, self.cumulative_logprob, self.finish_reason = logprobs, cumulative_logprob, "stop"


class FakeRequestOutput:
    def __init__(self, prompt, completion):
        self.prompt, self.outputs, self.finished = prompt, [completion], True


def fake_tokens(text: str) -> list[int]:
    return [3 + (ord(ch) % 500) for ch in text] + [EOS]


def fake_logprobs(ids: list[int]) -> list[dict]:
    # position i: the sampled token at -0.1*(i+1), plus a better top-1 alternative that must NOT be used
    return [{t: FakeLogprob(-0.1 * (i + 1), rank=2), 9999: FakeLogprob(-0.01, rank=1)} for i, t in enumerate(ids)]


def expected_mean(ids: list[int]) -> float:
    return float(np.mean([-0.1 * (i + 1) for i in range(len(ids))]))


class FakeLLM:
    """Step 0: a fixed box; a refine step: the box stated in the prompt, shifted right (like tests/test_loop.py)."""

    instances: list = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outs = []
        for p in prompts:
            assert set(p) == {"prompt", "multi_modal_data"} and set(p["multi_modal_data"]) == {"image"}
            prev = parse_box(p["prompt"])
            if "Refinement step" in p["prompt"] and prev.ok:
                x1, y1, x2, y2 = prev.box
                text = "Moving right. " + format_box((x1 + SHIFT, y1, x2 + SHIFT, y2))
            else:
                text = format_box(STEP0_BOX)
            ids = fake_tokens(text)
            lps = fake_logprobs(ids)
            outs.append(FakeRequestOutput(p["prompt"], FakeCompletion(text, ids, lps, sum(-0.1 * (i + 1) for i in range(len(ids))))))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    FakeLLM.instances = []
    return mod


def test_import_does_not_import_vllm():
    code = "import sys, ivt_lib.core.vllm_policy; assert 'vllm' not in sys.modules, 'vllm imported at module import'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_missing_vllm_raises_clear_import_error(monkeypatch):
    from ivt_lib.core.vllm_policy import VLLMPolicy

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(ImportError, match="pip install vllm") as e:
        VLLMPolicy("Qwen/Qwen3-VL-4B-Instruct")
    assert "GPU" in str(e.value)


def test_generations_prompts_and_images(fake_vllm, tiny_dir, test_samples):
    from ivt_lib.core.vllm_policy import VLLMPolicy

    pol = VLLMPolicy(str(tiny_dir), max_new_tokens=24, temperature=0.7, top_p=0.9, seed=5, gpu_memory_utilization=0.5)
    llm = FakeLLM.instances[-1]
    assert llm.model == str(tiny_dir)
    assert llm.kwargs == {"limit_mm_per_prompt": {"image": 2}, "seed": 5, "gpu_memory_utilization": 0.5}
    s = test_samples[:3]
    msgs = [step0_messages(x["expression"]) for x in s[:2]] + [refine_messages(s[2]["expression"], (10, 20, 300, 400), 1, 2)]
    imgs = [x["image"].convert("RGB") for x in s]
    gens = pol.generate(msgs, imgs)

    assert len(llm.calls) == 1  # one batched call
    prompts, sp = llm.calls[0]
    assert sp.kwargs == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 24, "logprobs": 1}
    for p, m, im in zip(prompts, msgs, imgs):
        assert p["multi_modal_data"]["image"] is im  # the very image, in order
        assert p["prompt"] == pol.processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        assert p["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == 1
        assert p["prompt"].endswith("<|im_start|>assistant\n") and m[0]["content"][1]["text"] in p["prompt"]

    assert all(isinstance(g, Generation) for g in gens)
    assert gens[0].text == gens[1].text == format_box(STEP0_BOX)
    assert gens[2].text == "Moving right. " + format_box((110, 20, 400, 400))
    for g in gens:
        assert g.token_ids == fake_tokens(g.text) and g.token_ids[-1] == EOS
        assert g.mean_logprob == pytest.approx(expected_mean(g.token_ids))  # the sampled token's, not the top-1's
    assert pol.generate([], []) == []
    with pytest.raises(ValueError, match="images"):
        pol.generate(msgs, imgs[:2])
    # the zoom view: a refine prompt with two images (the full image, then the window) gets both, in order
    from ivt_lib.core.feedback import ViewSettings, refine_view

    v = refine_view(imgs[2], s[2]["expression"], (10, 20, 60, 70), 1, 2, ViewSettings("zoom"))
    pol.generate([v.messages], [v.images])
    p = llm.calls[-1][0][0]
    assert p["multi_modal_data"]["image"] == v.images
    assert p["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == 2


def test_mean_logprob_fallbacks():
    from ivt_lib.core.vllm_policy import mean_logprob

    assert mean_logprob([5, 6], [{5: FakeLogprob(-1.0)}, {6: FakeLogprob(-3.0)}]) == -2.0
    assert mean_logprob([5, 6], None, cumulative_logprob=-5.0) == -2.5
    assert mean_logprob([5, 6], [{5: FakeLogprob(-1.0)}, {7: FakeLogprob(-3.0)}], -4.0) == -2.0  # sampled id missing
    assert np.isnan(mean_logprob([5], None)) and np.isnan(mean_logprob([], None))


def test_run_loop_end_to_end(fake_vllm, tiny, test_samples):
    from ivt_lib.core.vllm_policy import VLLMPolicy

    _, proc = tiny
    pol = VLLMPolicy("some/model", processor=proc)  # a given processor: nothing loaded from "some/model"
    samples = test_samples[:4]
    trajs = run_loop(pol, samples, T=2, show_progress=False, record_inputs=True)
    llm = FakeLLM.instances[-1]
    assert len(llm.calls) == 3 and all(len(c[0]) == 4 for c in llm.calls)  # one batched call per step
    assert llm.calls[0][1].kwargs["temperature"] == 0.0  # greedy by default
    for i, (tr, s) in enumerate(zip(trajs, samples)):
        w, h = s["image"].size
        assert len(tr.steps) == 3 and all(st.parse_ok for st in tr.steps)
        exp = bx.sanitize(bx.from_model_frame(STEP0_BOX, w, h, "qwen3"), w, h)
        assert tr.steps[0].box == pytest.approx(exp)
        for t in (1, 2):  # each refine step shifts the previous box right by SHIFT (0-1000 units)
            prev_m = bx.to_model_frame(tr.steps[t - 1].box, w, h, "qwen3")
            x1, y1, x2, y2 = prev_m
            exp = bx.sanitize(bx.from_model_frame((x1 + SHIFT, y1, x2 + SHIFT, y2), w, h, "qwen3"), w, h)
            assert tr.steps[t].box == pytest.approx(exp)
            # the prompt states the previous box; the image has it drawn
            p = llm.calls[t][0][i]
            assert f"Refinement step {t} of 2" in p["prompt"] and format_box(prev_m) in p["prompt"]
            drawn = draw_box(s["image"].convert("RGB"), tr.steps[t - 1].box)
            assert np.array_equal(np.asarray(p["multi_modal_data"]["image"]), np.asarray(drawn))
        assert np.array_equal(np.asarray(llm.calls[0][0][i]["multi_modal_data"]["image"]),
                              np.asarray(s["image"].convert("RGB")))  # step 0: the clean image
        for st in tr.steps:
            assert st.mean_logprob == pytest.approx(expected_mean(fake_tokens(st.text)))
        assert [r["token_ids"] for r in tr.rollout] == [fake_tokens(st.text) for st in tr.steps]


# ------------------------------------------------------------------------------------- GRPO rollouts through vLLM
class FakeRunnerModel:
    def __init__(self):
        self.loaded: list[tuple[str, object]] = []

    def load_weights(self, weights):
        self.loaded.extend((n, t.detach().clone()) for n, t in weights)


class FakeEngineLLM:
    """A colocated engine: answers with real tokenizer ids (so GRPO can score them) and a box that depends on the
    request's seed (so rewards vary within a group); records weight loads and prefix-cache resets."""

    instances: list = []

    def __init__(self, model, tokenizer=None, **kwargs):
        self.model, self.kwargs, self.calls, self.resets = model, kwargs, [], 0
        self.runner = FakeRunnerModel()
        worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=self.runner))
        self.llm_engine = types.SimpleNamespace(model_executor=types.SimpleNamespace(driver_worker=worker))
        FakeEngineLLM.instances.append(self)

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        tok = FakeEngineLLM.tokenizer
        outs = []
        for p, sp in zip(prompts, sampling_params):
            k = sp.kwargs["seed"] % 7
            text = format_box((60 * k, 60 * k, 1000 - 60 * k, 1000 - 60 * k))  # centred: IoU > 0 and varies
            ids = tok.encode(text, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
            lps = [{t: FakeLogprob(-0.5)} for t in ids]
            outs.append(FakeRequestOutput(p["prompt"], FakeCompletion(text, ids, lps, -0.5 * len(ids))))
        return outs


def test_grpo_rollouts_through_colocated_vllm_with_weight_sync(monkeypatch, tiny_dir, tiny, test_samples, tmp_path):
    from ivt_lib.training import grpo

    import importlib.machinery

    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeEngineLLM, FakeSamplingParams
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # trl's import checks look at the spec
    monkeypatch.setitem(sys.modules, "vllm", mod)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):  # colocate sets them; undone after
        monkeypatch.delenv(k, raising=False)
    FakeEngineLLM.instances, FakeEngineLLM.tokenizer = [], tiny[1].tokenizer
    cfg = grpo.GRPORunConfig(iterations=2, prompts_per_iter=2, group_size=3, T=1, max_new_tokens=24,
                             learning_rate=1e-2, save_every=2, generation_backend="vllm",
                             vllm_kwargs={"gpu_memory_utilization": 0.3})
    tr = grpo.MultiStepGRPO(str(tiny_dir), test_samples[:6], tmp_path / "g", cfg, device="cpu")
    before = {n: p.detach().clone() for n, p in tr.model.get_base_model().named_parameters()}
    logs = tr.train(show_progress=False)

    (llm,) = FakeEngineLLM.instances  # one engine, built once, on the starting model
    assert llm.model == str(tiny_dir) and llm.kwargs["gpu_memory_utilization"] == 0.3
    # in this process (trl's colocate mode), so that the weights can be reached: not vLLM's default engine process
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher" and llm.kwargs["seed"] == 0
    import os

    assert os.environ["RANK"] == "0" and os.environ["WORLD_SIZE"] == "1"
    assert len(llm.calls) == cfg.iterations * (cfg.T + 1)  # every rollout step went through vLLM
    seeds = [sp.kwargs["seed"] for sp in llm.calls[0][1]]
    assert len(seeds) == 6 and len(set(seeds)) == 6  # per-trajectory seeds: a group samples different answers
    assert all(sp.kwargs["temperature"] == 1.0 for sp in llm.calls[0][1])
    assert logs[0]["reward_std"] > 0 and logs[0]["rows"] == 12 and all(e["final_parse_rate"] == 1.0 for e in logs)

    # iteration 1 rolls out with the engine's own (starting) weights; iteration 2 after one push of the update
    assert llm.resets == 1
    names = [n for n, _ in llm.runner.loaded]
    base_names = {n for n, _ in tiny[0].named_parameters()}
    wrapped = {n for n in base_names if "language_model" in n and n.endswith("_proj.weight")}
    assert sorted(names) == sorted(wrapped) and len(names) >= 4  # only what LoRA changes, under HF names
    pushed = dict(llm.runner.loaded)
    q = next(n for n in names if n.endswith("self_attn.q_proj.weight") and "language_model" in n)
    assert not torch.equal(pushed[q], dict(tiny[0].named_parameters())[q])  # the merged update reached the engine
    # the push computes merged weights out of place: the trained model's base weights are bit-for-bit untouched
    after = dict(tr.model.get_base_model().named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)


def test_vllm_named_weights_equal_peft_merge(tiny):
    import copy

    from peft import LoraConfig, get_peft_model

    from ivt_lib.core.models import LLM_TARGETS
    from ivt_lib.core.vllm_policy import vllm_named_weights

    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(r=4, lora_alpha=8, target_modules=LLM_TARGETS))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)  # a trained-looking adapter (B starts at 0)
    ours = dict(vllm_named_weights(peft_model))
    merged = dict(copy.deepcopy(peft_model).merge_and_unload().named_parameters())
    assert ours.keys() == merged.keys()
    assert max(float((ours[k] - merged[k]).abs().max()) for k in ours) < 1e-6
    assert sum(not torch.equal(ours[k], dict(tiny[0].named_parameters())[k]) for k in ours) >= 4  # deltas applied
    only = dict(vllm_named_weights(peft_model, only_lora=True))
    assert only.keys() < ours.keys() and all(torch.equal(only[k], ours[k]) for k in only)
    assert {k for k in ours if not torch.equal(ours[k], dict(tiny[0].named_parameters())[k])} <= only.keys()
    plain = dict(vllm_named_weights(tiny[0]))  # a plain model: its own names and tensors
    assert all(plain[k].data_ptr() == p.data_ptr() for k, p in tiny[0].named_parameters())  # no copies


def test_load_policy_selects_the_backend(fake_vllm, tiny_dir):
    from ivt_lib.core.loop import HFPolicy
    from ivt_lib.core.models import load_policy
    from ivt_lib.core.vllm_policy import VLLMPolicy

    hf = load_policy(tiny_dir, "hf", device="cpu", max_new_tokens=7, batch_size=3)
    assert isinstance(hf, HFPolicy) and hf.max_new_tokens == 7 and hf.batch_size == 3
    assert FakeLLM.instances == []  # no engine for the hf backend
    v = load_policy(tiny_dir, "vllm", dtype="bfloat16", max_new_tokens=9, vllm_gpu_memory=0.4)
    assert isinstance(v, VLLMPolicy) and v.max_new_tokens == 9 and v.temperature == 0.0
    assert FakeLLM.instances[-1].kwargs == {"limit_mm_per_prompt": {"image": 2}, "gpu_memory_utilization": 0.4,
                                            "dtype": "bfloat16"}
    with pytest.raises(ValueError, match="backend"):
        load_policy(tiny_dir, "sglang")
