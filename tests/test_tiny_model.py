"""The compat shim, the tiny Qwen3-VL builder and the one loader."""
import json

import torch

import ivt_lib
from ivt_lib import compat
from ivt_lib.models import load_model
from ivt_lib.parsing import format_box
from ivt_lib.prompts import step0_messages, with_answer
from ivt_lib.tiny_model import TinyConfig, build_processor, build_tokenizer


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
