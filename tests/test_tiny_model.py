"""The compat shim, the tiny Qwen3-VL builder and the one loader."""
import json

import torch

import ivt_lib
from ivt_lib.core import compat
from ivt_lib.core.models import load_model
from ivt_lib.core.parsing import format_box
from ivt_lib.core.prompts import step0_messages, with_answer
from ivt_lib.embedded.tiny_model import TinyConfig, build_processor, build_tokenizer


def test_torchvision_imports_and_shim_is_idempotent():
    import torchvision  # noqa: F401
    import torchvision.transforms.v2  # noqa: F401

    first = compat.apply()
    assert compat.apply() is first  # second call is a no-op
    assert hasattr(torch.ops.torchvision, "nms")  # schema declared or compiled op loaded


def test_processor_built_from_scratch():
    from transformers import Qwen3VLProcessor

    tok = build_tokenizer(TinyConfig())
    proc = build_processor(tok)
    assert isinstance(proc, Qwen3VLProcessor)
    # digits are single tokens, as in the real Qwen tokenizer; the canonical answer is ~25 tokens
    assert all(len(tok(d, add_special_tokens=False)["input_ids"]) == 1 for d in "0123456789")
    assert 20 <= len(tok(format_box([78, 359, 219, 500]))["input_ids"]) <= 30
    assert tok.bos_token is None and tok.eos_token == "<|im_end|>"


def test_chat_template_marks_assistant_tokens(tiny, test_samples):
    _, proc = tiny
    conv = with_answer(step0_messages(test_samples[0]["expression"]), format_box([1, 2, 3, 4]))
    text = proc.apply_chat_template(conv, tokenize=False)
    assert text.count("<|image_pad|>") == 1 and text.endswith('{"bbox_2d": [1, 2, 3, 4]}<|im_end|>\n')
    inline = [{**conv[0], "content": [{"type": "image", "image": test_samples[0]["image"]}, conv[0]["content"][1]]},
              conv[1]]
    enc = proc.apply_chat_template([inline], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                   processor_kwargs={"padding": True})
    mask = torch.tensor(enc["assistant_masks"][0]).bool()
    ids = torch.tensor(enc["input_ids"][0])
    assert proc.tokenizer.decode(ids[mask]) == '{"bbox_2d": [1, 2, 3, 4]}<|im_end|>'


def test_saved_tiny_reloads_through_loader_and_runs(tiny_dir, tiny, test_samples):
    model, proc = tiny
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 20e6
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3VLForConditionalGeneration"]
    text = proc.apply_chat_template(step0_messages("the blue circle"), tokenize=False, add_generation_prompt=True)
    enc = proc(text=[text], images=[test_samples[0]["image"]], return_tensors="pt")
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) == 16  # 128 px -> 8x8 patches -> 4x4 merged
    with torch.no_grad():
        out = model(**enc)
    assert out.logits.shape[:2] == enc["input_ids"].shape and torch.isfinite(out.logits).all()


def test_loader_error_names_the_model(tmp_path):
    import pytest

    with pytest.raises((OSError, FileNotFoundError), match="nope"):
        load_model(str(tmp_path / "nope"))


def test_save_merged_qlora_path_merges_into_a_fresh_full_precision_base(tiny_dir, tmp_path, monkeypatch):
    """A QLoRA adapter must be merged into an unquantized copy of its base (merging into NF4 weights rounds the update
    away). bitsandbytes 4-bit needs a GPU, so the quantized flag is forced here: the path reloads the base from the
    adapter's ``base_model_name_or_path``, and the result equals the plain merge."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from ivt_lib.core import models
    from ivt_lib.core.models import LLM_TARGETS

    base, proc = models.load_model(tiny_dir, "cpu")
    assert not models.is_quantized(base)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LLM_TARGETS))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    expected = {k: v.clone() for k, v in copy.deepcopy(peft_model).merge_and_unload().state_dict().items()}
    monkeypatch.setattr(models, "is_quantized", lambda m: True)
    out = models.save_merged(peft_model, proc, tmp_path / "merged", dtype="float32")
    merged, _ = models.load_model(out, "cpu")
    got = merged.state_dict()
    assert got.keys() == expected.keys()
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) < 1e-6
    fresh, _ = models.load_model(tiny_dir, "cpu")
    assert any(not torch.equal(got[k], v) for k, v in fresh.state_dict().items())  # the adapter is in it


def test_adapter_checksum_handles_bf16(tmp_path):
    import torch
    from safetensors.torch import save_file

    from ivt_lib.core.models import adapter_checksum

    save_file({"a.lora_A.weight": torch.ones(2, 3, dtype=torch.bfloat16)}, str(tmp_path / "adapter_model.safetensors"))
    c = adapter_checksum(tmp_path)
    assert c["sum"] == 6.0 and c["n_params"] == 6 and len(c["sha256"]) == 64
